"""Claim check: entropy-modulated policy gradients beat GRPO on long-horizon agent tasks, with steadier
gradients (EMPG, Wang et al., arXiv 2509.09265; method in `policylab.lm.multiturn.empg`).

Claim (abstract and experiments, Qwen2.5 agents on WebShop, ALFWorld and Deep Search): rescaling each step's
share of the outcome advantage by the step's confidence and adding a bonus for steps that lead to a confident
next step raises success over GRPO, and the paper argues it stabilizes training (uncertain steps no longer
drive large, noisy updates).

Two settings, both registered, both with the same arms and comparisons:
- `empg` (the issue's long horizon): a hidden 5-digit code, up to 8 turns, each query showing every digit
  found so far (`reveal="board"`), base `tiny-search-long` (sampled success 0.21 at the start, episodes of
  6-7 turns); 150 updates.
- `empg_short` (the first design): a 3-digit code, up to 5 turns, each query showing its digit, base
  `tiny-search` (sampled success about 0.05); 60 updates.
Every arm starts from its setting's base with the same codes per update (16), group size (8), learning rate
(1e-4, the notes' testbed value), update count and outcome reward (1 when the final answer is the code); they
differ only in the advantage transform.

Written before the first run of each setting:
- arms: `grpo` (GRPO's group-normalized episode advantage on every agent token), `empg` (k = k_f = 1,
  zeta = 0.1, the pseudocode's defaults), and the ablations `empg_g_only` (no future-clarity bonus) and
  `empg_f_only` (g = 1, bonus only);
- every arm is judged on the same 200 held-out (test-split) codes, 4 sampled episodes (T = 1) per code;
- comparisons, paired by seed: empg vs grpo on success within the turn limit (higher, the main metric), on
  the coefficient of variation of the update's gradient norm over training (lower: "more stable
  gradients"), and on turns to success among solved episodes (lower); each ablation vs grpo on success
  (higher);
- seeds 0, 1, 2; no minimum effect.

Disclosed, in order:
1. A first long-horizon base (5-digit codes, 8 turns, each query showing only its digit, the same 2-layer
   model) reached validation success 0 after 3,000 SFT steps (it never learned to look each position's
   query up when answering) and was dropped before any RL run.
2. `empg_short` was then designed and run at full budget (60 updates, sized from 10-update timing pilots on
   seed 100: held-out success 0.071 grpo, 0.063 empg, base 0.032; the update count was raised from 40 to 60
   before the full run because runs were cheap, not from any result). Its results are committed.
3. Because the issue asks for long horizons, `empg` was designed afterwards on the board-revealing search,
   whose base learns in 500 SFT steps (greedy validation success 0.31; the 5-digit/8-turn size and the
   demonstration noise, skip 0.2 and redundant 0.3, were fixed before its build). Its 150 updates were
   sized from a 5-update timing pilot of grpo and empg on seed 100 (about 0.5 s per update); no success
   number of that pilot was looked at.
"""

from __future__ import annotations

import numpy as np

from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir, read_metrics
from policylab.experiments.lm_common import CLAIM_DEFAULTS
from policylab.lm.multiturn import MultiTurnConfig, train_multiturn
from policylab.lm.multiturn.empg import EMPGConfig
from policylab.lm.trainer import accuracy_curve

SETTINGS = {
    "empg": {
        "shared": {"base_model": "tiny-search-long", "env": "search", "code_length": 5, "max_turns": 8,
                   "reveal": "board", "max_new_tokens": 8, "lr": 1e-4, "eval_samples": 4},
        "budgets": {"quick": {"steps": 4, "eval_prompts": 40, "evals": 1},
                    "full": {"steps": 150, "eval_prompts": 200, "evals": 5}},
        "what": "5-digit codes, up to 8 turns, each query showing every digit found so far",
    },
    "empg_short": {
        "shared": {"base_model": "tiny-search", "env": "search", "code_length": 3, "max_turns": 5,
                   "max_new_tokens": 6, "lr": 1e-4, "eval_samples": 4},
        "budgets": {"quick": {"steps": 4, "eval_prompts": 40, "evals": 1},
                    "full": {"steps": 60, "eval_prompts": 200, "evals": 2}},
        "what": "3-digit codes, up to 5 turns, each query showing its digit",
    },
}
ARMS = {
    "grpo": (MultiTurnConfig, {"advantage": "grpo"}),
    "empg": (EMPGConfig, {}),
    "empg_g_only": (EMPGConfig, {"empg_bonus": False}),
    "empg_f_only": (EMPGConfig, {"empg_scale": False}),
}
METRIC = "eval/sampled_success"


def arm_config(setting: str, arm: str, budget: str):
    config, settings = ARMS[arm]
    spec = SETTINGS[setting]
    return config(eval_prompts=spec["budgets"][budget]["eval_prompts"], **spec["shared"], **settings)


def gradient_statistics(run: RunDir) -> dict[str, float]:
    """Mean and coefficient of variation of the update's gradient norm over the whole run."""
    grad = np.array([r["grad_norm"] for r in read_metrics(run.metrics_path) if "grad_norm" in r])
    mean = float(grad.mean()) if grad.size else 0.0
    return {"grad_norm_mean": mean, "grad_norm_cv": float(grad.std() / mean) if mean > 0 else 0.0,
            "grad_norm_max": float(grad.max()) if grad.size else 0.0}


def run_setting_arm(setting: str, arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    b = SETTINGS[setting]["budgets"][budget]
    cfg = arm_config(setting, arm, budget)
    summary = train_multiturn(cfg, seed=seed, steps=b["steps"], run=run, evals=b["evals"], progress=False, name=arm)
    final = {k.removeprefix("eval/"): v for k, v in summary["eval"].items()}
    extra = {key: final[key] for key in ("sampled_turns", "sampled_repeat_rate", "greedy_success", "greedy_turns")}
    # turns to success exists only when something was solved; a run that solves nothing counts the turn limit
    extra["sampled_turns_to_success"] = final.get("sampled_turns_to_success", float(cfg.max_turns))
    extra["base_sampled_success"] = summary["initial_eval"][METRIC]
    extra.update(gradient_statistics(run))
    return ArmResult(final["sampled_success"], accuracy_curve(summary, read_metrics(run.metrics_path), METRIC), extra)


def run_long_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    return run_setting_arm("empg", arm, seed, budget, run)


def run_short_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    return run_setting_arm("empg_short", arm, seed, budget, run)


RUN_ARM = {"empg": run_long_arm, "empg_short": run_short_arm}


_REBUILT = ("The issue-20 rerun (step-level centring) started from base models pretrained anew on this machine: "
            "their pretraining stops at a target pass rate, and float rounding that differs between machines stopped "
            "them elsewhere, so the GRPO arm, whose code did not change, moved too and the earlier run is no control "
            "for the centring change. Controls with the token-level centring on the same bases "
            "(`results/issue20_controls/`) give the same success verdicts, so those changed with the base.")


def _experiment(setting: str) -> Experiment:
    spec = SETTINGS[setting]
    turns, full = spec["shared"]["max_turns"], spec["budgets"]["full"]
    return Experiment(
        id=setting,
        claim=f"On multi-turn search episodes ({spec['what']}) with an outcome reward, EMPG (step-entropy-scaled "
              "episode advantage plus a future-clarity bonus) reaches higher success than GRPO, with a steadier "
              "gradient norm and fewer turns to success.",
        arms={arm: {"method": "multiturn_grpo" if arm == "grpo" else "empg",
                    **to_dict(arm_config(setting, arm, "full"))} for arm in ARMS},
        comparisons=(
            Comparison("empg", "grpo", f"EMPG vs GRPO: success within {turns} turns"),
            Comparison("empg", "grpo", "EMPG vs GRPO: gradient-norm coefficient of variation", metric="grad_norm_cv",
                       metric_label="gradient-norm CV over training", direction="lower"),
            Comparison("empg", "grpo", "EMPG vs GRPO: turns to success", metric="sampled_turns_to_success",
                       metric_label="turns to success (solved episodes)", direction="lower"),
            Comparison("empg_g_only", "grpo", f"EMPG g only (no bonus) vs GRPO: success within {turns} turns"),
            Comparison("empg_f_only", "grpo", f"EMPG f only (bonus, g = 1) vs GRPO: success within {turns} turns"),
        ),
        metric=f"held-out success within {turns} turns (200 test-split codes x 4 sampled episodes at T = 1)",
        metric_label=f"held-out success within {turns} turns",
        run_arm=RUN_ARM[setting],
        **{**CLAIM_DEFAULTS, "curve_x": "sampled episodes"},
        budgets_note={"quick": "4 updates, 40 test codes (smoke run)",
                      "full": f"{spec['shared']['base_model']} base ({spec['what']}), {full['steps']} updates of 16 "
                              "codes x 8 episodes; 200 test codes x 4 sampled episodes"},
        paper="Entropy-Modulated Policy Gradients for Long-Horizon LLM Agents (2025)",
        pillar="lm",
        method="" if setting == "empg" else "empg",
        fidelity="reconstructed",
        fidelity_note="no training code was released: Eqs. 10-12 follow the project page's pseudocode; the A_mod line "
                      "and the final zero-mean centring (Eq. 7, over steps, no std division) are reconstructed",
        caveats={
            "empg": ("Designed after empg_short for the long horizon the issue asks for. Queries reveal the whole "
                     "board because a first long-horizon base whose queries showed only their own digit never learned "
                     "the task in supervised warm-up; it was dropped before any RL run. Turns to success count solved "
                     "episodes only, and a run that solves nothing counts the turn limit. The gradient-norm CV is "
                     "taken over every update of the run. " + _REBUILT),
            "empg_short": ("The first design, run before the long-horizon empg check. Its update count was raised "
                           "from 40 to 60 before the full run because runs were cheap, not because of any result. "
                           + _REBUILT),
        }[setting],
    )


for _setting in SETTINGS:
    EXPERIMENTS.add(_setting, _experiment(_setting))
