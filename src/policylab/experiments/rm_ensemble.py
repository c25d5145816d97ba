"""Claim check: Reward Model Ensembles Help Mitigate Overoptimization (Coste et al., ICLR 2024) — optimizing a
single proxy reward model overoptimizes (gold rises, then falls as KL from the initial policy grows), while
the conservative ensemble objectives WCO and UWO keep the gold score higher; with label noise, conservatism
(not averaging) is what matters.

Written before any run. Policy: the tiny-mix base on the five-task mix; gold: `GoldReward`. Per seed:
1000 train prompts x 8 samples of the base, up to 4 pairs of distinct responses per prompt, argmax gold
labels, the first 2000 pairs; with 25% of the labels flipped (the paper's noisy setting) for the main
claim, and without noise for best-of-n as a second setting. Five members (Bradley-Terry MLP heads on the
base's frozen features, seeds differ), normalized. Arms: `single` (member 0), `mean`, `wco`, `uwo`
(lambda 0.5 for best-of-n, 0.1 with the unbiased variance for RL, the official configs).
(a) Best-of-n: 100 fixed test prompts x a pool of 64 base samples, unbiased estimator at n = 1 .. 64
    (KL_BoN up to 3.2 nats). Reported per noise level: gold at n = 64 and the drop from the curve's peak.
(b) RL (the metric): RLOO against the arm's proxy (25% noise members) with a KL penalty 0.01 to the
    initial policy (k3, in the loss), 100 updates of 16 prompts x 8 responses, lr 2e-4; every 10 updates
    gold, proxy and KL(pi || pi_init) (k1, nats per response) on 100 test prompts x 4 samples. Metric: gold
    score at the end of training; the curve is gold against KL.
Comparisons (direction higher): wco vs single and uwo vs single on the final RL gold; the same on best-of-64
gold with 25% noise; wco vs mean on the final RL gold (conservatism vs averaging under noise); and lower
overoptimization (peak - final RL gold) for wco and uwo vs single.
Pilot (disclosed): with these settings but 60 RL updates, 1000 fit steps and an 8-sample pool, seed 0's `single`
arm went from gold 0.655 at KL 0 to a peak of 0.694 at KL 0.8 and back to 0.644 at KL 1.7 (400 s on a loaded
machine); after it only the budget moved (100 updates, 600 fit steps, a 64-sample pool) to fit 15 minutes.
Seeds: full 0, 1, 2; quick 0.
"""

from __future__ import annotations

import numpy as np
import torch

from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir, read_metrics
from policylab.lm.baselines import GRPOConfig
from policylab.lm.preference import GoldReward, RewardFitConfig, label_pairs, sample_responses, train_samples
from policylab.lm.preference.plots import overoptimization
from policylab.lm.preference.rm_ensemble import RewardEnsemble, best_of_n_curve, train_members
from policylab.lm.pretrain import load_policy
from policylab.lm.tasks import distinct_problems, get_task
from policylab.lm.trainer import TEST_SET_SEED, train_rlvr

TASK = "mix"
MEMBERS = 5
NOISE = 0.25
FIT = RewardFitConfig(steps=600, lr=1e-3, hidden=(64,))
RL = {"advantage": "rloo", "kl_coef": 0.01, "lr": 2e-4, "eval_ks": (1,)}
BUDGETS = {
    "quick": {"base_model": "tiny-gcd", "task": "gcd", "prompts": 100, "pairs": 200, "fit_steps": 100,
              "bon_prompts": 20, "pool": 16, "steps": 6, "evals": 2, "eval_prompts": 20, "eval_samples": 2},
    "full": {"base_model": "tiny-mix", "task": TASK, "prompts": 1000, "pairs": 2000, "fit_steps": FIT.steps,
             "bon_prompts": 100, "pool": 64, "steps": 100, "evals": 10, "eval_prompts": 100, "eval_samples": 4},
}
ARMS = ("single", "mean", "wco", "uwo")


def ensemble_for(arm: str, members: list, for_rl: bool):
    if arm == "single":
        return RewardEnsemble(members[:1], "mean")
    return RewardEnsemble(members, arm, uwo_weight=0.1 if for_rl else 0.5, unbiased_variance=for_rl)


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    b = BUDGETS[budget]
    policy, tokenizer = load_policy(b["base_model"], progress=False)
    task = get_task(b["task"])
    gold = GoldReward(task)
    fit = RewardFitConfig(steps=b["fit_steps"], lr=FIT.lr, hidden=FIT.hidden)
    samples = train_samples(policy, tokenizer, task, b["prompts"], seed)
    members = {}
    for noise in (0.0, NOISE):
        pairs = label_pairs(samples, gold, 4, seed=seed, temperature=0.0, noise=noise).shuffled(seed)
        members[noise] = train_members(policy, tokenizer, pairs.subset(range(min(b["pairs"], len(pairs)))), MEMBERS,
                                       fit, seed)

    # (a) best-of-n from one fixed pool of base samples per test prompt
    test = distinct_problems(task, b["bon_prompts"], "test", seed=TEST_SET_SEED)
    pool = sample_responses(policy, tokenizer, test, b["pool"], 12, seed=TEST_SET_SEED)
    ns = [2 ** i for i in range(int(np.log2(b["pool"])) + 1)]
    extra: dict[str, float] = {}
    pool_problems, pool_responses, _ = pool.flat()
    features = members[0.0][0].all_features(pool_problems, pool_responses)  # every member's trunk is the base
    for noise, tag in ((0.0, "clean"), (NOISE, "noisy")):
        ensemble = ensemble_for(arm, members[noise], for_rl=False)
        scores = torch.stack([m.score_features(features) for m in ensemble.members])
        curve = best_of_n_curve(ensemble, gold, pool, ns, scores)
        golds = [c["gold"] for c in curve]
        extra[f"bon_{tag}_gold"] = golds[-1]
        extra[f"bon_{tag}_drop"] = max(golds) - golds[-1]
        extra[f"bon_{tag}_proxy"] = curve[-1]["proxy"]
        extra[f"bon_{tag}_gold_curve"] = [(c["kl"], c["gold"]) for c in curve]
        extra[f"bon_{tag}_proxy_curve"] = [(c["kl"], c["proxy"]) for c in curve]
    extra["bon_gold_n1"] = curve[0]["gold"]

    # (b) RL against the noisy-label proxy with a small KL penalty
    proxy = ensemble_for(arm, members[NOISE], for_rl=True)
    eval_problems = distinct_problems(task, b["eval_prompts"], "test", seed=TEST_SET_SEED)
    base = load_policy(b["base_model"], progress=False)[0].eval()

    def gold_and_kl(algo) -> dict[str, float]:
        # one sampling seed for every evaluation: a resumed run evaluates as a fresh one would
        s = sample_responses(algo.policy, tokenizer, eval_problems, b["eval_samples"], 12,
                             seed=TEST_SET_SEED, reference=base)
        p, r, c = s.flat()
        return {"gold": float(gold.score(p, r, c).mean()), "proxy": float(proxy.score(p, r).mean()), "kl": s.kl()}

    cfg = GRPOConfig(base_model=b["base_model"], eval_prompts=b["eval_prompts"], **RL)
    summary = train_rlvr(cfg, env_id=b["task"], seed=seed, steps=b["steps"], run=run, evals=b["evals"],
                         checkpoints=1, progress=False, name=f"rm_ensemble-{arm}", reward_model=proxy,
                         extra_eval=gold_and_kl)
    evals = [summary["initial_eval"]] + [r for r in read_metrics(run.metrics_path) if "eval/gold" in r]
    points = [(r["eval/kl"], r["eval/gold"]) for r in evals]
    extra["rl_gold_curve"] = points
    extra["rl_proxy_curve"] = [(r["eval/kl"], r["eval/proxy"]) for r in evals]
    golds = [g for _, g in points]
    final = summary["eval"]
    extra.update(rl_kl=final["eval/kl"], rl_proxy=final["eval/proxy"], rl_gold_peak=max(golds),
                 rl_overoptimization=max(golds) - final["eval/gold"], rl_pass1=final["eval/pass@1"],
                 base_gold=points[0][1])
    return ArmResult(final["eval/gold"], points, extra)


EXPERIMENTS.add("rm_ensemble", Experiment(
    id="rm_ensemble",
    claim="Optimizing one proxy reward model overoptimizes (gold falls behind as KL grows); the conservative "
          "ensemble objectives WCO (min over members) and UWO (mean - lambda variance) keep the gold score higher "
          "for best-of-n and for RL with a small KL penalty, and under 25% label noise conservatism beats averaging.",
    arms={arm: {"base_model": "tiny-mix", "task": TASK, "members": 1 if arm == "single" else MEMBERS,
                "objective": "mean" if arm == "single" else arm, "label_noise_rl": NOISE, "rl": RL,
                "uwo_weight": {"best_of_n": 0.5, "rl": 0.1}} for arm in ARMS},
    comparisons=(Comparison("wco", "single", "RL: WCO vs single RM, final gold"),
                 Comparison("uwo", "single", "RL: UWO vs single RM, final gold"),
                 Comparison("wco", "mean", "RL: WCO vs mean ensemble, final gold"),
                 Comparison("wco", "single", "RL: overoptimization (peak - final gold), WCO vs single",
                            metric="rl_overoptimization", metric_label="gold peak - final", direction="lower"),
                 Comparison("uwo", "single", "RL: overoptimization (peak - final gold), UWO vs single",
                            metric="rl_overoptimization", metric_label="gold peak - final", direction="lower"),
                 Comparison("wco", "single", "best-of-64, 25% noise: WCO vs single", metric="bon_noisy_gold",
                            metric_label="best-of-64 gold (25% noise)"),
                 Comparison("uwo", "single", "best-of-64, 25% noise: UWO vs single", metric="bon_noisy_gold",
                            metric_label="best-of-64 gold (25% noise)")),
    metric="held-out gold score after RL against the arm's proxy (25% label noise), 100 test prompts x 4 samples",
    metric_label="gold score after RL",
    direction="higher",
    seeds={"quick": (0,), "full": (0, 1, 2)},
    run_arm=run_arm,
    curve_x="KL from the initial policy (nats)",
    figures=(overoptimization,),
    budgets_note={"quick": "tiny-gcd base on gcd, 200 pairs, pool 16, 6 RL updates (smoke run)",
                  "full": "tiny-mix base on the mix; 2000 pairs, 5 members; best-of-n from 64 samples x 100 prompts; "
                          "RLOO 100 updates x 128 responses, KL penalty 0.01, lr 2e-4"},
    paper="Reward Model Ensembles Help Mitigate Overoptimization (2023)",
    pillar="lm",
    fidelity="faithful",
    caveats=("Overoptimization itself appears in every arm: in RL the single model's gold rises from "
             "{single/base_gold} to a peak of {single/rl_gold_peak} and falls back by {single/rl_overoptimization} "
             "by the end (KL {single/rl_kl} nats) while the proxy keeps rising, and best-of-n gold with 25% noise "
             "peaks and then falls as n grows ([figure](../results/rm_ensemble.overoptimization.png)). The ensembles "
             "do not prevent it here. A likely cause: the members share the trunk's frozen features and the same "
             "pairs, so their errors are correlated (the Eisenstein et al. pitfall in the notes)."),
))
