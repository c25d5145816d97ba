"""Language-model RL throughput on CPU: a GRPO step in policylab vs TRL's GRPOTrainer, and decoding.

1. GRPO step (generation + update). The same small Llama-config model (saved once, loaded by both
   libraries), the same character tokenizer, the same gcd prompts, 16 prompts x G = 8 responses
   per generation round, exactly `NEW_TOKENS` new tokens (EOS is never sampled: it is masked out of
   the vocabulary, so both sides do equal work), two optimizer steps of 64 responses per round,
   beta = 0, one torch thread. Figure of merit: sampled responses per second of wall time, over
   rounds after a warm-up round, in alternating blocks within one process (the ratio per block
   pair, then the median).
2. Decoding: tokens per second of policylab's tiny GPT with and without its KV cache, and of HF
   `generate` on a GPT-2 of equal size, and policylab's decode loop on that same HF GPT-2.

    python benchmarks/lm_throughput.py [--rounds 3] [--blocks 5] [--out results]
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from policylab.core.atomic import atomic_write
from policylab.core.report import git_commit, write_benchmark
from policylab.core.seeding import set_threads
from policylab.lm import GRPOConfig
from policylab.lm.generate import SamplingConfig, generate
from policylab.lm.policy import HFPolicy, TinyGPT, TinyGPTConfig
from policylab.lm.rollout import RolloutSource
from policylab.lm.tasks import DEFAULT_MIX, CharTokenizer, get_task, prompt_ids
from policylab.lm.tasks.tokenizer import DEFAULT_CHARSET
from policylab.lm.trainer import RLVR

PROMPTS, GROUP, NEW_TOKENS, MINIBATCH = 16, 8, 24, 64
MODEL = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
         "num_key_value_heads": 4, "max_position_embeddings": 64}


def save_model(folder: Path) -> None:
    """A Llama-config model and a char-level fast tokenizer whose ids equal CharTokenizer's."""
    import tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    char = CharTokenizer()
    vocab = {"<pad>": char.pad_id, "<bos>": char.bos_id, "<eos>": char.eos_id}
    vocab.update({c: i + 3 for i, c in enumerate(DEFAULT_CHARSET)})
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    backend.decoder = tokenizers.decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                  eos_token="<eos>")
    tok.padding_side = "left"
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=char.vocab_size, pad_token_id=char.pad_id,
                                         bos_token_id=char.bos_id, eos_token_id=char.eos_id, **MODEL))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def never_eos(model: torch.nn.Module, eos_id: int) -> None:
    """Push the EOS logit to -inf (via the output bias or weights) so every response has NEW_TOKENS tokens."""
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight[eos_id] = 0.0
        if getattr(head, "bias", None) is None:
            head.bias = torch.nn.Parameter(torch.zeros(head.weight.shape[0]), requires_grad=False)
        head.bias[eos_id] = -1e9


def gcd_prompts(n: int) -> list:
    import random

    return get_task("gcd").sample(n, "train", random.Random(0))


class PolicylabGRPO:
    def __init__(self, folder: Path):
        from policylab.lm.pretrain import load_policy

        policy, tok = load_policy(f"hf:{folder}")
        never_eos(policy.model, tok.eos_id)
        cfg = GRPOConfig(base_model=f"hf:{folder}", prompts_per_step=PROMPTS, group_size=GROUP,
                         max_new_tokens=NEW_TOKENS, minibatches=PROMPTS * GROUP // MINIBATCH, lr=1e-6)
        self.algo = RLVR(policy, cfg, name="grpo")
        self.source = RolloutSource(get_task("gcd"), tok, cfg, seed=0)

    def round(self) -> None:
        self.algo.update(self.source.next_batch(self.algo))


class TRLGRPO:
    """TRL's GRPOTrainer, stepped one generation round (= two optimizer steps) at a time."""

    def __init__(self, folder: Path):
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import GRPOConfig as TRLConfig
        from trl import GRPOTrainer

        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        never_eos(model, tok.eos_token_id)
        problems = gcd_prompts(4096)
        data = Dataset.from_dict({"prompt": ["<bos>" + p.prompt for p in problems],
                                  "answer": [p.answer for p in problems]})

        def exact(completions, answer, **_):
            return [float(c.strip() == a) for c, a in zip(completions, answer)]

        args = TRLConfig(output_dir=tempfile.mkdtemp(prefix="trl-bench-"), use_cpu=True, bf16=False,
                         per_device_train_batch_size=MINIBATCH, num_generations=GROUP,
                         steps_per_generation=PROMPTS * GROUP // MINIBATCH, max_completion_length=NEW_TOKENS,
                         num_iterations=1, beta=0.0, loss_type="grpo", learning_rate=1e-6, max_steps=10_000,
                         logging_steps=10_000, report_to="none", save_strategy="no", seed=0,
                         dataloader_num_workers=0, disable_tqdm=True)
        self.times: list[float] = []
        times = self.times

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                times.append(time.perf_counter())

        self.trainer = GRPOTrainer(model=model, reward_funcs=exact, args=args, train_dataset=data,
                                   processing_class=tok, callbacks=[Clock()])

    def run(self, rounds: int) -> list[float]:
        """Seconds per generation round; training stops after `rounds` + 1 rounds."""
        steps_per_round = PROMPTS * GROUP // MINIBATCH
        self.trainer.args.max_steps = (rounds + 1) * steps_per_round
        start = time.perf_counter()
        self.trainer.train()
        marks = [start] + self.times[steps_per_round - 1::steps_per_round]
        return list(np.diff(marks))


def grpo_step(folder: Path, rounds: int, blocks: int) -> dict:
    """`blocks` pairs of (policylab block, TRL block) of `rounds` rounds each, alternating, so that
    both libraries see the same machine state; the speedup is the median of the per-pair ratios."""
    ours = PolicylabGRPO(folder)
    ours.round()  # warm-up
    ours_s, trl_s, ratios = [], [], []
    for _ in range(blocks):
        block = []
        for _ in range(rounds):
            t = time.perf_counter()
            ours.round()
            block.append(time.perf_counter() - t)
        theirs = TRLGRPO(folder).run(rounds)[1:]  # drop TRL's warm-up round
        ours_s += block
        trl_s += theirs
        ratios.append(float(np.median(theirs) / np.median(block)))
    samples = PROMPTS * GROUP
    return {"policylab_s_per_round": ours_s, "trl_s_per_round": trl_s, "block_speedups": ratios,
            "policylab_samples_per_s": samples / float(np.median(ours_s)),
            "trl_samples_per_s": samples / float(np.median(trl_s)),
            "speedup": float(np.median(ratios))}


def tokens_per_s(fn, tokens: int, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return tokens / best


def decoding(batch: int = 64, new_tokens: int = 64) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = CharTokenizer()
    prompts = [prompt_ids(tok, p.prompt) for p in gcd_prompts(batch)]
    torch.manual_seed(0)
    tiny = TinyGPT(TinyGPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=4, n_head=4, d_model=128)).eval()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=128, n_embd=128, n_layer=4, n_head=4,
                                      pad_token_id=tok.pad_id)).eval()
    sampling = SamplingConfig(max_new_tokens=new_tokens)
    no_eos = tok.vocab_size  # an id that is never sampled: every row decodes new_tokens tokens
    total = batch * new_tokens

    def ours(policy, cache=True):
        return lambda: generate(policy, prompts, sampling, no_eos, tok.pad_id, torch.Generator().manual_seed(0),
                                use_cache=cache)

    from policylab.lm.generate import left_pad

    ids, mask = left_pad(prompts, tok.pad_id)

    def hf_generate():
        with torch.no_grad():
            gpt2.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=new_tokens,
                          min_new_tokens=new_tokens, use_cache=True, pad_token_id=tok.pad_id, eos_token_id=None)

    result = {"batch": batch, "new_tokens": new_tokens,
              "params_tiny_gpt": sum(p.numel() for p in tiny.parameters()),
              "params_hf_gpt2": sum(p.numel() for p in gpt2.parameters()),
              "tiny_gpt_kv_cache": tokens_per_s(ours(tiny), total),
              "tiny_gpt_no_cache": tokens_per_s(ours(tiny, False), total, repeats=1),
              "hf_gpt2_generate": tokens_per_s(hf_generate, total),
              "hf_gpt2_policylab_loop": tokens_per_s(ours(HFPolicy(gpt2)), total)}
    result["cache_speedup"] = result["tiny_gpt_kv_cache"] / result["tiny_gpt_no_cache"]
    result["tiny_vs_hf_generate"] = result["tiny_gpt_kv_cache"] / result["hf_gpt2_generate"]
    return result


def render(result: dict) -> str:
    g, d = result["grpo_step"], result["decoding"]
    lines = ["# Language-model RL throughput (CPU, one torch thread)", "",
             f"GRPO step: Llama-config model ({result['model_params']:,} parameters), {PROMPTS} gcd prompts x "
             f"G = {GROUP}, {NEW_TOKENS} new tokens each, {PROMPTS * GROUP // MINIBATCH} optimizer steps of "
             f"{MINIBATCH} responses per round; {len(g['block_speedups'])} alternating blocks of "
             f"{len(g['policylab_s_per_round']) // len(g['block_speedups'])} rounds per library, each after a "
             "warm-up round.", "",
             "| library | s per round (median) | sampled responses / s |", "|---|---|---|",
             f"| policylab | {np.median(g['policylab_s_per_round']):.3f} | {g['policylab_samples_per_s']:.1f} |",
             f"| TRL {result['versions']['trl']} GRPOTrainer | {np.median(g['trl_s_per_round']):.3f} | "
             f"{g['trl_samples_per_s']:.1f} |", "",
             f"**policylab / TRL: {g['speedup']:.2f}x** (median of the blocks' ratios "
             f"{', '.join(f'{r:.2f}' for r in g['block_speedups'])}; target >= 1.5x).", "",
             f"Decoding, batch {d['batch']}, {d['new_tokens']} new tokens, sampled at T = 1 (tokens / s):", "",
             "| decoder | tokens / s |", "|---|---|",
             f"| policylab tiny GPT ({d['params_tiny_gpt']:,} params), KV cache | {d['tiny_gpt_kv_cache']:.0f} |",
             f"| policylab tiny GPT, no cache | {d['tiny_gpt_no_cache']:.0f} |",
             f"| HF GPT-2 ({d['params_hf_gpt2']:,} params), `generate` | {d['hf_gpt2_generate']:.0f} |",
             f"| HF GPT-2, policylab's decode loop | {d['hf_gpt2_policylab_loop']:.0f} |", "",
             f"KV cache speedup {d['cache_speedup']:.1f}x; tiny GPT vs HF generate {d['tiny_vs_hf_generate']:.2f}x.",
             "", f"Commit `{result['git_commit']}`, {result['machine']}.", "", "Reproduce:", "", "```",
             result["command"], "```", "", "![throughput](lm_throughput.png)"]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g, d = result["grpo_step"], result["decoding"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar(["policylab", "TRL"], [g["policylab_samples_per_s"], g["trl_samples_per_s"]], color=["C0", "C1"])
    a.set_ylabel("sampled responses / s")
    a.set_title(f"GRPO step ({g['speedup']:.2f}x)")
    names = ["tiny GPT\nKV cache", "tiny GPT\nno cache", "HF GPT-2\ngenerate", "HF GPT-2\npolicylab loop"]
    keys = ["tiny_gpt_kv_cache", "tiny_gpt_no_cache", "hf_gpt2_generate", "hf_gpt2_policylab_loop"]
    b.bar(names, [d[k] for k in keys], color=["C0", "C7", "C1", "C2"])
    b.set_ylabel("tokens / s")
    b.set_title("decoding")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="generation rounds per block")
    parser.add_argument("--blocks", type=int, default=5, help="alternating policylab / TRL blocks")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    set_threads(1)
    import transformers
    import trl

    with tempfile.TemporaryDirectory() as folder:
        save_model(Path(folder))
        params = sum(p.numel() for p in HFPolicy.from_pretrained(folder).parameters())
        grpo = grpo_step(Path(folder), args.rounds, args.blocks)
    result = {"grpo_step": grpo, "decoding": decoding(), "model": MODEL, "model_params": params,
              "tasks": list(DEFAULT_MIX[:1]),
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "trl": trl.__version__},
              "machine": f"{platform.processor() or platform.machine()}, 1 torch thread",
              "git_commit": git_commit(), "command": shlex.join([sys.executable.split("/")[-1], *sys.argv])}
    write_benchmark(args.out, "lm_throughput", result, render(result), plot)
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
