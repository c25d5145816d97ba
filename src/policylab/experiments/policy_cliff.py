"""Claim check: the Policy Cliff (Xu 2025, arXiv 2507.20150) — regularization makes the reward-policy
map Lipschitz where tied optima make it jump.

Written before any full run.
(a) Exact part (Props. 2.5 and 4.5, `policylab.lm.policy_cliff`): for the tied bandit R = [1, 1, 0.6, 0]
    and the two-step token MDP with two tied optimal sequences, perturbed by +eps on one tied optimum
    versus +eps on the other, for every eps in EPS_GRID and every alpha in ALPHA_GRID the measured
    max-state TV between the two soft optima never exceeds the bound eps / (2 alpha) (H eps / (2 alpha)
    for the MDP, H = 2), with entropy and with KL to a fixed non-uniform reference; and at alpha = 0
    the TV is 0 at eps = 0 and jumps to 1 at every eps > 0. Reported as extras: `exact_hard_tv_eps0`,
    `exact_hard_tv_min` (no_reg), `exact_tv_over_bound_max`, `exact_violations` (entropy; kl with the
    reference). These numbers are exact; the unit tests hold them to the claim.
(b) Tiny-LM part: two RLOO runs from the same base and seed that differ only in which tied answer
    format earns the bonus eps = 0.1 (reward = exact match + eps [format A]; A = plain "6" in one
    run, leading space " 6" in the other; base `tiny-tied-gcd`, which writes both, see
    `GCDTwoFormats` for why the stock `tiny-gcd` cannot be used). Metric: `policy_distance(...)
    ["tv_max"]` between the two trained policies on held-out gcd questions (exact next-token TV on
    the states of both formats' answer paths, worst state per question, mean over questions).
    Claim: that distance is lower with regularization than without (ent_coef = kl_coef = 0).
    Coefficients fixed before the check ran, by one rule: coefficient = eps, so that Prop. 4.5 bounds
    the soft optima's TV by eps / (2 coef) = 0.5 (against 1 for the hard optima): `entropy` has
    ent_coef = 0.1, `kl` has kl_coef = 0.1 (KL to the initial policy; the bound holds with beta for
    alpha). RLOO advantages (no std division) keep eps on the scale the regularizer sees; GRPO's
    group std would divide an all-correct group's eps differences back to O(1).
    Disclosed: sizing runs before this file was written (seed 0, 200 updates, otherwise these settings)
    gave no_reg 0.90, ent_coef 0.01 0.87 and kl_coef 0.1 0.43; the rule above was set after those and
    before the one run with ent_coef 0.1 (0.18; both runs went to plain, pass@1 fell from 0.7 to 0.3).
Expected: both comparisons "lower". Seeds: full (0, 1, 2), quick (0,).
"""

from __future__ import annotations

import copy

import numpy as np

from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir
from policylab.lm.policy_cliff import (
    TIED_FORMATS,
    FormatBonusConfig,
    format_probability,
    perturbed_pair_tv,
    policy_distance,
)
from policylab.lm.tasks import distinct_problems, get_task
from policylab.lm.trainer import TEST_SET_SEED, train_rlvr

EPS = 0.1
EPS_GRID = (0.001, 0.01, 0.1, 0.5, 1.0)
ALPHA_GRID = (0.01, 0.1, 1.0)
REFERENCES = {"bandit": np.array([0.4, 0.3, 0.2, 0.1]), "token_mdp": np.array([0.5, 0.3, 0.2])}
"""Fixed non-uniform references of the exact KL check (favouring one tied optimum on purpose)."""
ARMS = {"no_reg": {"ent_coef": 0.0, "kl_coef": 0.0}, "entropy": {"ent_coef": EPS, "kl_coef": 0.0},
        "kl": {"ent_coef": 0.0, "kl_coef": EPS}}
BUDGETS = {"quick": {"steps": 20, "evals": 2, "eval_prompts": 20, "distance_prompts": 50},
           "full": {"steps": 250, "evals": 5, "eval_prompts": 100, "distance_prompts": 200}}
BASE_MODEL = "tiny-tied-gcd"


def arm_config(arm: str, budget: str, bonus_format: str = TIED_FORMATS[0]) -> FormatBonusConfig:
    return FormatBonusConfig(base_model=BASE_MODEL, advantage="rloo", bonus=EPS, bonus_format=bonus_format,
                             shaping=("format_bonus",), eval_prompts=BUDGETS[budget]["eval_prompts"], eval_ks=(1,),
                             **ARMS[arm])


def exact_part(arm: str) -> dict[str, float]:
    """The arm's side of claim (a): the hard jump for no_reg, the soft (or KL) bound check otherwise."""
    kinds = ("bandit", "token_mdp")
    if arm == "no_reg":
        return {"exact_hard_tv_eps0": max(perturbed_pair_tv(k, 0.0, 0.0)[0] for k in kinds),
                "exact_hard_tv_min": min(perturbed_pair_tv(k, e, 0.0)[0] for k in kinds for e in EPS_GRID)}
    pairs = [perturbed_pair_tv(k, e, a, REFERENCES[k] if arm == "kl" else None)
             for k in kinds for e in EPS_GRID for a in ALPHA_GRID]
    return {"exact_tv_over_bound_max": max(tv / bound for tv, bound in pairs),
            "exact_violations": float(sum(tv > bound + 1e-12 for tv, bound in pairs))}


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    b = BUDGETS[budget]
    test = distinct_problems(get_task("gcd"), b["distance_prompts"], "test", seed=TEST_SET_SEED)
    finals, snapshots, extra = {}, {}, {}
    for label, fmt in zip("ab", TIED_FORMATS):
        states: dict[int, dict] = {}

        def snapshot(event, step, trainer, states=states):
            if event == "eval":
                states[step] = {k: v.detach().clone() for k, v in trainer.algo.policy.state_dict().items()}

        summary = train_rlvr(arm_config(arm, budget, fmt), env_id="gcd", seed=seed, steps=b["steps"],
                             run=RunDir(run.path, f"bonus_{fmt}", "main", seed), evals=b["evals"], checkpoints=1,
                             progress=False, callbacks=(snapshot,), name=f"{arm}-{fmt}")
        finals[fmt], snapshots[fmt], tokenizer = summary["algorithm"].policy, states, summary["tokenizer"]
        plain, spaced = (format_probability(finals[fmt], tokenizer, test, f) for f in TIED_FORMATS)
        extra[f"plain_share_{label}"] = float((plain / (plain + spaced)).mean())
        extra[f"greedy_acc_{label}"] = summary["eval"]["eval/greedy_acc"]
        extra[f"pass@1_{label}"] = summary["eval"]["eval/pass@1"]
    fmt_a, fmt_b = TIED_FORMATS
    distance = policy_distance(finals[fmt_a], finals[fmt_b], tokenizer, test)
    curve = [(0.0, 0.0)]  # both runs start from the same base
    first, second = copy.deepcopy(finals[fmt_a]), copy.deepcopy(finals[fmt_b])
    for step in sorted(set(snapshots[fmt_a]) & set(snapshots[fmt_b])):
        first.load_state_dict(snapshots[fmt_a][step])
        second.load_state_dict(snapshots[fmt_b][step])
        curve.append((float(step), policy_distance(first, second, tokenizer, test)["tv_max"]))
    extra.update(tv_first=distance["tv_first"], tv_mean=distance["tv_mean"], **exact_part(arm))
    return ArmResult(distance["tv_max"], curve, extra)


EXPERIMENTS.add("policy_cliff", Experiment(
    id="policy_cliff",
    claim="Where optima tie, a small reward perturbation moves an unregularized policy a lot (a policy cliff); "
          "entropy or KL regularization bounds the move by eps / (2 alpha) (Prop. 4.5), so two runs that differ "
          "only in which tied answer format earns +eps end closer together with regularization than without.",
    arms={arm: {"eps": EPS, "formats": list(TIED_FORMATS),
               **{k: v for k, v in to_dict(arm_config(arm, "full")).items() if k != "bonus_format"}} for arm in ARMS},
    comparisons=(Comparison("entropy", "no_reg", "entropy (0.1) vs no regularization"),
                 Comparison("kl", "no_reg", "KL to the base (0.1) vs no regularization")),
    metric="policy distance between the +eps-on-plain and +eps-on-leading-space runs: exact next-token TV on "
           "the states of both formats' answer paths, worst state per held-out gcd question, mean over questions",
    metric_label="policy distance (TV)", direction="lower",
    seeds={"quick": (0,), "full": (0, 1, 2)},
    run_arm=run_arm,
    curve_x="updates",
    budgets_note={"quick": "tiny-tied-gcd base, 20 updates per run (smoke run)",
                  "full": "tiny-tied-gcd base, 250 RLOO updates of 16 prompts x 8 responses per run, two runs per "
                          "arm and seed; distance on 200 test questions"},
    paper="The Policy Cliff: reward-policy maps in LLMs (2025)",
    pillar="lm",
    fidelity="faithful",
    caveats=("Exact part: on a tied bandit and a 2-step token MDP the soft-optimal TV never exceeds Prop. 4.5's "
             "eps / (2 alpha) over the 15 (eps, alpha) pairs (largest ratio to the bound "
             "{entropy/exact_tv_over_bound_max}, {entropy/exact_violations} violations), while the hard optimum jumps "
             "from TV {no_reg/exact_hard_tv_eps0} to {no_reg/exact_hard_tv_min} at any eps > 0. In the tiny-LM part "
             "the entropy arm pays for its smaller distance in accuracy (pass@1 {entropy/pass@1_a} / "
             "{entropy/pass@1_b} in its two runs vs {no_reg/pass@1_a} / {no_reg/pass@1_b} unregularized); the KL arm "
             "does not ({kl/pass@1_a} / {kl/pass@1_b})."),
))
