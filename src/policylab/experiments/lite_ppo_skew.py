"""Claim check: Lite PPO's batch-std normalization under concentrated rewards (Tricks or Traps, §4.1).

Why a second check (written after `lite_ppo` and before this one ran): in `lite_ppo` no arm moved
held-out greedy accuracy off the base model within 200 updates, so that check could not separate
the objectives. The paper gives a mechanism for its advantage normalization: group-level std
explodes the advantages of near-uniform groups, and the batch-level std is more robust when
rewards are concentrated (easy or hard prompt sets). This check tests it where it should act:
- easy regime: gcd alone, where the base model answers most questions (most groups all correct);
- hard regime: lcm alone, where the base model rarely succeeds (most groups all wrong).
Arms: Lite PPO and GRPO (the paper's own baseline), same base `tiny-mix`, same settings as
`lite_ppo` otherwise. Metric (fixed before the run): held-out pass@1 (16 samples at T = 1 on 200
test questions of the regime's task), higher is better, paired by seed, seeds 0-2. Expected
(notes §2(f), from the paper's findings): Lite PPO >= GRPO on both skewed regimes. Secondary:
the coefficient of variation and the maximum of the per-update gradient norm (the paper's
"fewer spikes") and the mean of max |advantage|, reported per arm.
"""

from __future__ import annotations

import numpy as np

from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir, read_metrics
from policylab.lm import GRPOConfig, LitePPOConfig, train_rlvr
from policylab.lm.trainer import accuracy_curve

BUDGETS = {"quick": {"base_model": "tiny-gcd", "steps": 10, "eval_prompts": 40},
           "full": {"base_model": "tiny-mix", "steps": 200, "eval_prompts": 200}}
REGIMES = {"easy": "gcd", "hard": "lcm"}
METHODS = {"lite_ppo": LitePPOConfig, "grpo": GRPOConfig}
ARMS = {f"{method}-{regime}": (method, regime) for regime in REGIMES for method in METHODS}


def arm_config(arm: str, budget: str):
    method, _ = ARMS[arm]
    b = BUDGETS[budget]
    return METHODS[method](base_model=b["base_model"], eval_prompts=b["eval_prompts"])


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    _, regime = ARMS[arm]
    summary = train_rlvr(arm_config(arm, budget), env_id=REGIMES[regime], seed=seed, steps=BUDGETS[budget]["steps"],
                         run=run, evals=5, progress=False, name=arm)
    records = read_metrics(run.metrics_path)
    grad = np.array([r["grad_norm"] for r in records if "grad_norm" in r])
    extra = {"grad_norm_cv": float(grad.std() / grad.mean()) if grad.size and grad.mean() > 0 else 0.0,
             "grad_norm_max": max(r["grad_norm_max"] for r in records if "grad_norm_max" in r),
             "adv_abs_max_mean": float(np.mean([r["adv_abs_max"] for r in records if "adv_abs_max" in r])),
             "greedy_acc": summary["eval"]["eval/greedy_acc"],
             "base_pass@1": summary["initial_eval"]["eval/pass@1"]}
    return ArmResult(summary["eval"]["eval/pass@1"], accuracy_curve(summary, records, "eval/pass@1"), extra)


EXPERIMENTS.add("lite_ppo_skew", Experiment(
    id="lite_ppo_skew",
    claim="With rewards concentrated (an easy and a hard prompt set), Lite PPO's group-mean / batch-std "
          "advantages reach at least GRPO's held-out accuracy, with fewer gradient-norm spikes.",
    arms={arm: {"method": m, "task": REGIMES[r], **to_dict(arm_config(arm, "full"))} for arm, (m, r) in ARMS.items()},
    comparisons=(Comparison("lite_ppo-easy", "grpo-easy", "Lite PPO vs GRPO, easy (gcd)"),
                 Comparison("lite_ppo-hard", "grpo-hard", "Lite PPO vs GRPO, hard (lcm)")),
    metric="held-out pass@1 after training (16 samples at T = 1 on up to 200 distinct test-split questions of the "
           "regime's task; lcm's small problem space holds 81)",
    metric_label="held-out pass@1", direction="higher",
    seeds={"quick": (0,), "full": (0, 1, 2)},
    run_arm=run_arm,
    curve_x="sampled responses",
    budgets_note={"quick": "tiny-gcd base, 10 updates (smoke run)",
                  "full": "tiny-mix base, 200 updates of 16 prompts x 8 responses per regime"},
    paper="Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning (2025)",
    pillar="lm",
    method="lite_ppo",
    fidelity="faithful",
    caveats=("Designed after lite_ppo, where no arm moved off the base. In the hard regime the batch std gives the "
             "rare success a larger advantage than the group std does (mean max |advantage| "
             "{lite_ppo-hard/adv_abs_max_mean} vs {grpo-hard/adv_abs_max_mean}) and larger gradient-norm peaks "
             "({lite_ppo-hard/grad_norm_max} vs {grpo-hard/grad_norm_max}), the opposite of the paper's fewer spikes."),
))
