"""Claim check: Lite PPO vs GRPO and DAPO ("Part I: Tricks or Traps?", arXiv 2508.08221, §5).

Claim (the paper's, on Qwen3 base models): a critic-free vanilla PPO loss with only group-mean /
batch-std advantages and token-level aggregation beats GRPO and DAPO on held-out reasoning
accuracy. Scaled down here: a 0.8M-parameter char GPT pretrained by policylab on the five-task
mix (base model `tiny-mix`, held-out greedy pass rate ~0.27), every arm from the same base,
the same prompts per step, group size, learning rate and step count; only the objective slots
differ (see `policylab.lm.baselines` and `policylab.lm.lite_ppo`).

Written before the first full run: metric = final held-out greedy accuracy on 200 test-split
questions of the mix; direction higher; comparisons Lite PPO - GRPO and Lite PPO - DAPO, paired
by seed; seeds 0, 1, 2; no minimum effect. pass@1/4/16 are reported as secondary metrics.
"""

from __future__ import annotations

from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir, read_metrics
from policylab.lm import DAPOConfig, GRPOConfig, LitePPOConfig, train_rlvr
from policylab.lm.trainer import accuracy_curve

BUDGETS = {
    "quick": {"base_model": "tiny-gcd", "task": "gcd", "steps": 12, "eval_prompts": 50},
    "full": {"base_model": "tiny-mix", "task": "mix", "steps": 200, "eval_prompts": 200},
}
ARMS = {"lite_ppo": LitePPOConfig, "grpo": GRPOConfig, "dapo": DAPOConfig}


def arm_config(arm: str, budget: str):
    b = BUDGETS[budget]
    return ARMS[arm](base_model=b["base_model"], eval_prompts=b["eval_prompts"])


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    b = BUDGETS[budget]
    summary = train_rlvr(arm_config(arm, budget), env_id=b["task"], seed=seed, steps=b["steps"], run=run,
                         evals=10, progress=False, name=arm)
    curve = accuracy_curve(summary, read_metrics(run.metrics_path))
    final = summary["eval"]
    extra = {k.removeprefix("eval/"): v for k, v in final.items() if k.startswith("eval/pass@")}
    extra["base_greedy_acc"] = summary["initial_eval"]["eval/greedy_acc"]
    extra["samples"] = float(summary["samples"])
    return ArmResult(final["eval/greedy_acc"], curve, extra)


EXPERIMENTS.add("lite_ppo", Experiment(
    id="lite_ppo",
    claim="Lite PPO (group-mean/batch-std advantages + token-level loss aggregation on the vanilla clipped "
          "loss) reaches higher held-out accuracy than GRPO and than DAPO from the same base model.",
    arms={arm: to_dict(arm_config(arm, "full")) for arm in ARMS},
    comparisons=(Comparison("lite_ppo", "grpo", "Lite PPO vs GRPO"),
                 Comparison("lite_ppo", "dapo", "Lite PPO vs DAPO")),
    metric="held-out greedy exact-match accuracy after training (200 test-split questions of the task mix)",
    metric_label="held-out greedy accuracy", direction="higher",
    seeds={"quick": (0,), "full": (0, 1, 2)},
    run_arm=run_arm,
    curve_x="sampled responses",
    budgets_note={"quick": "tiny-gcd base on gcd, 12 updates (smoke run)",
                  "full": "tiny-mix base on the five-task mix, 200 updates of 16 prompts x 8 responses"},
    paper="Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning (2025)",
    pillar="lm",
    fidelity="faithful",
    caveats=("No arm moved held-out greedy accuracy far from the base model's {lite_ppo/base_greedy_acc} within the "
             "budget, so this check cannot separate the objectives. The follow-up lite_ppo_skew therefore tests the "
             "paper's mechanism, batch-std normalization under concentrated rewards, where it should act."),
))
