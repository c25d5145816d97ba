"""The language-model engine on a GPU: the same code paths as on CPU, checked and timed.

1. TinyGPT and an HF Llama on the device: cached generation's log-probs equal a full forward's;
   the lean Llama decode gives the same tokens as HF's own forward and cache; beam search runs.
2. GRPO from the `tiny-gcd` base on the device (`RLVRConfig.device`): held-out pass@1 before and
   after, every logged metric finite.
3. One GRPO round (generation + two optimizer steps) on a 25M-parameter Llama-config model,
   64 prompts x 8 responses x 64 new tokens: sampled responses per second, lean decode vs HF's.

    python benchmarks/lm_gpu_check.py [--device cuda] [--out results]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from policylab.core.atomic import atomic_write_json, atomic_write_text
from policylab.core.report import git_commit
from policylab.core.seeding import set_threads
from policylab.lm import GRPOConfig, train_rlvr
from policylab.lm.generate import SamplingConfig, beam_search, generate
from policylab.lm.policy import HFPolicy, TinyGPT, TinyGPTConfig
from policylab.lm.rollout import RolloutSource
from policylab.lm.tasks import CharTokenizer, get_task, prompt_ids
from policylab.lm.trainer import RLVR


def llama(vocab: int, hidden: int, layers: int, device: str, seed: int = 0) -> HFPolicy:
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                      num_attention_heads=max(hidden // 64, 4), num_key_value_heads=max(hidden // 128, 2),
                      max_position_embeddings=128)
    return HFPolicy.from_config(cfg, seed=seed).to(device)


def prompts(tok: CharTokenizer, n: int) -> list[list[int]]:
    import random

    return [prompt_ids(tok, p.prompt) for p in get_task("mix").sample(n, "train", random.Random(0))]


def equivalence(device: str) -> dict:
    tok = CharTokenizer()
    ps = prompts(tok, 32)
    out = {}
    torch.manual_seed(0)
    tiny = TinyGPT(TinyGPTConfig(vocab_size=tok.vocab_size, block_size=64)).to(device).eval()
    hf = llama(tok.vocab_size, 128, 2, device).eval()
    hf.fast_decode = True  # the lean loop, also on a GPU, to check it there
    for name, policy in (("tiny_gpt", tiny), ("hf_llama", hf)):
        gen = generate(policy, ps, SamplingConfig(max_new_tokens=16), tok.eos_id, tok.pad_id,
                       torch.Generator(device=device).manual_seed(0))
        with torch.no_grad():
            full = policy.response_outputs(gen.input_ids, gen.attention_mask, gen.prompt_len)
        out[f"{name}_max_logprob_gap"] = float(((full.logprobs - gen.logprobs) * gen.response_mask).abs().max())
        beams = beam_search(policy, ps[:4], 4, 8, tok.eos_id, tok.pad_id)
        out[f"{name}_beam_search_ok"] = len(beams) == 4
    slow = HFPolicy(hf.model, fast_decode=False)
    a, b = (generate(p, ps, SamplingConfig(max_new_tokens=16, greedy=True), tok.eos_id, tok.pad_id) for p in (hf, slow))
    out["lean_vs_hf_decode_same_tokens"] = bool(torch.equal(a.input_ids, b.input_ids))
    out["lean_vs_hf_decode_max_logprob_gap"] = float((a.logprobs - b.logprobs).abs().max())
    return out


def grpo_learning(device: str, steps: int) -> dict:
    cfg = GRPOConfig(base_model="tiny-gcd", device=device, eval_ks=(1, 16))
    start = time.perf_counter()
    summary = train_rlvr(cfg, env_id="gcd", seed=0, steps=steps, evals=2, progress=False, name="grpo")
    finite = all(math.isfinite(v) for v in summary["last"].values())
    return {"steps": steps, "seconds": time.perf_counter() - start, "all_metrics_finite": finite,
            "pass@1_before": summary["initial_eval"]["eval/pass@1"], "pass@1_after": summary["eval"]["eval/pass@1"],
            "greedy_before": summary["initial_eval"]["eval/greedy_acc"],
            "greedy_after": summary["eval"]["eval/greedy_acc"]}


def grpo_round_speed(device: str, rounds: int = 5, small: bool = False) -> dict:
    tok = CharTokenizer()
    result = {}
    hidden, layers, prompts_per_step, new_tokens = (128, 2, 8, 8) if small else (512, 8, 64, 64)
    for fast in (True, False):  # forced either way; by default HFPolicy uses the lean loop on CPU only
        policy = llama(tok.vocab_size, hidden, layers, device)
        policy.fast_decode = fast
        cfg = GRPOConfig(base_model="unused", prompts_per_step=prompts_per_step, group_size=8,
                         max_new_tokens=new_tokens, device=device, lr=1e-6)
        algo = RLVR(policy, cfg, name="grpo")
        source = RolloutSource(get_task("mix"), tok, cfg, seed=0)
        with torch.no_grad():  # EOS never sampled: every response has 64 tokens
            policy.model.lm_head.weight[tok.eos_id] = 0.0
        algo.update(source.next_batch(algo))
        times = []
        for _ in range(rounds):
            torch.cuda.synchronize() if device.startswith("cuda") else None
            t = time.perf_counter()
            algo.update(source.next_batch(algo))
            torch.cuda.synchronize() if device.startswith("cuda") else None
            times.append(time.perf_counter() - t)
        key = "lean_decode" if fast else "hf_decode"
        result[f"{key}_s_per_round"] = sorted(times)[len(times) // 2]
        result[f"{key}_samples_per_s"] = prompts_per_step * 8 / result[f"{key}_s_per_round"]
        result["params"] = sum(p.numel() for p in policy.parameters())
    return result


def render(result: dict) -> str:
    e, g, r = result["equivalence"], result["grpo_learning"], result["grpo_round"]
    return "\n".join([
        f"# Language-model engine on {result['device_name']} ({result['device']})", "",
        f"torch {result['torch']}, Python {result['python']}, commit `{result['git_commit']}`.", "",
        "| check | result |", "|---|---|",
        f"| tiny GPT: cached generation vs full forward, max log-prob gap | {e['tiny_gpt_max_logprob_gap']:.1e} |",
        f"| HF Llama (lean decode): same, max gap | {e['hf_llama_max_logprob_gap']:.1e} |",
        f"| lean decode vs HF forward + DynamicCache: same greedy tokens | {e['lean_vs_hf_decode_same_tokens']} "
        f"(max gap {e['lean_vs_hf_decode_max_logprob_gap']:.1e}) |",
        f"| beam search (tiny GPT, HF Llama) | {e['tiny_gpt_beam_search_ok']}, {e['hf_llama_beam_search_ok']} |",
        f"| GRPO from tiny-gcd, {g['steps']} updates on the device: held-out pass@1 | {g['pass@1_before']:.3f} -> "
        f"{g['pass@1_after']:.3f} (greedy {g['greedy_before']:.3f} -> {g['greedy_after']:.3f}); metrics finite: "
        f"{g['all_metrics_finite']}; {g['seconds']:.1f} s |",
        f"| GRPO round, {r['params']:,}-parameter Llama, lean decode | {r['lean_decode_s_per_round']:.3f} s, "
        f"{r['lean_decode_samples_per_s']:.0f} responses/s |",
        f"| GRPO round, HF decode | {r['hf_decode_s_per_round']:.3f} s, "
        f"{r['hf_decode_samples_per_s']:.0f} responses/s |",
        "", "Reproduce:", "", "```", result["command"], "```", ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="results")
    parser.add_argument("--small", action="store_true", help="a tiny timing model (a dry run on CPU)")
    args = parser.parse_args()
    set_threads(1)
    os.environ.setdefault("POLICYLAB_MODELS", tempfile.mkdtemp(prefix="models-"))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
    result = {"device": args.device, "device_name": name, "torch": torch.__version__,
              "python": sys.version.split()[0], "equivalence": equivalence(args.device),
              "grpo_learning": grpo_learning(args.device, args.steps),
              "grpo_round": grpo_round_speed(args.device, small=args.small),
              "git_commit": os.environ.get("POLICYLAB_COMMIT") or git_commit(),
              "command": shlex.join(["python", *sys.argv])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "lm_gpu_check.json", result)
    atomic_write_text(out / "lm_gpu_check.md", render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
