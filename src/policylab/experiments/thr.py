"""Claim check: THR reweighting steers GRPO toward exploitation or exploration (Token Hidden Reward,
Deng et al., arXiv 2510.03669, ICLR 2026; method in `policylab.lm.losses.thr`).

Claim (the paper's abstract, on Qwen2.5 / Llama math RL): amplifying tokens with positive THR and
weakening negative ones (p > 0) improves greedy-decoding accuracy; the reverse (p < 0) improves
pass@K. Scaled down here: the 0.8M-parameter char GPT `tiny-mix` on the five-task mix, every arm
from the same base with the same prompts, group size, learning rate and step count; only the
advantage transform differs.

Written before the first run:
- arms: `grpo` (GRPOConfig), `thr_pos` (THR, p = +0.5, exploitation), `thr_neg` (THR, p = -0.5,
  exploration); |p| = 0.5 is the notes' testbed value, the paper's |p| was not recovered;
- exploitation: final held-out greedy exact-match accuracy on 200 test-split questions of the mix,
  thr_pos higher than grpo (the experiment's main metric);
- exploration: final held-out pass@16 (16 samples at T = 1 per question, same questions and runs),
  thr_neg higher than grpo;
- seeds 0, 1, 2, paired by seed; no minimum effect.
Secondary, per arm: pass@1/4/16 and greedy accuracy, the base model's greedy accuracy and pass@16,
the policy entropy at the end and its ratio to the start (exploration should keep it higher).
"""

from __future__ import annotations

from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir
from policylab.experiments.lm_common import CLAIM_DEFAULTS, run_rlvr_arm
from policylab.lm import GRPOConfig, THRConfig

BUDGETS = {
    "quick": {"base_model": "tiny-gcd", "task": "gcd", "steps": 8, "eval_prompts": 40, "evals": 1},
    "full": {"base_model": "tiny-mix", "task": "mix", "steps": 160, "eval_prompts": 200, "evals": 4},
}
ARMS = {"grpo": (GRPOConfig, {}), "thr_pos": (THRConfig, {"thr_p": 0.5}), "thr_neg": (THRConfig, {"thr_p": -0.5})}


def arm_config(arm: str, budget: str):
    config, settings = ARMS[arm]
    b = BUDGETS[budget]
    return config(base_model=b["base_model"], eval_prompts=b["eval_prompts"], **settings)


def base_pass16(summary: dict) -> dict[str, float]:
    return {"base_pass@16": summary["initial_eval"]["eval/pass@16"]}


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    b = BUDGETS[budget]
    return run_rlvr_arm(arm_config(arm, budget), b["task"], seed, b["steps"], run, arm, metric="eval/greedy_acc",
                        evals=b["evals"], after=base_pass16)


EXPERIMENTS.add("thr", Experiment(
    id="thr",
    claim="Reweighting GRPO's token advantages by the sign of the Token Hidden Reward steers training: p > 0 "
          "(amplify positive-THR tokens) raises held-out greedy accuracy over GRPO, p < 0 raises pass@16.",
    arms={arm: {"method": "thr" if arm != "grpo" else "grpo", **to_dict(arm_config(arm, "full"))} for arm in ARMS},
    comparisons=(Comparison("thr_pos", "grpo", "THR p = +0.5 vs GRPO: greedy accuracy (exploitation)"),
                 Comparison("thr_neg", "grpo", "THR p = -0.5 vs GRPO: pass@16 (exploration)",
                            metric_label="held-out pass@16", metric="pass@16")),
    metric="held-out greedy exact-match accuracy after training (200 test-split questions of the task mix); "
           "the exploration comparison reads pass@16 (16 samples at T = 1) of the same runs",
    metric_label="held-out greedy accuracy",
    run_arm=run_arm,
    **CLAIM_DEFAULTS,
    budgets_note={"quick": "tiny-gcd base on gcd, 8 updates, 40 test questions (smoke run)",
                  "full": "tiny-mix base on the five-task mix, 160 updates of 16 prompts x 8 responses"},
    paper="Token Hidden Reward: Steering Exploration-Exploitation in Group Relative Deep RL (2025)",
    pillar="lm",
    fidelity="reconstructed",
    fidelity_note="the THR paper's body was unreadable: the score follows its predecessor NTHR; THR = A s and the "
                  "1 + p sign(THR) reweighting are reconstructions, |p| = 0.5 the notes' value",
    caveats=("The p = +0.5 reweighting also raises the mean gradient norm ({thr_pos/grad_norm_mean} vs GRPO's "
             "{grpo/grad_norm_mean}), so part of its accuracy gain may be a step-size effect rather than better "
             "credit. See `lm/losses/thr.py` for which formulas come from NTHR and which are reconstructed."),
))
