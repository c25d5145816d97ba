"""A seconds-long experiment that exercises the runner, the backends and the report.

UCB1 (Auer et al. 2002) against uniform random arm choice on a 10-armed Bernoulli bandit; the
metric is the mean reward over the horizon. Not a paper's claim: it exists so that every
backend can be tested end to end without training a network.
"""

from __future__ import annotations

import numpy as np

from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir

HORIZON = {"quick": 500, "full": 5000}
ARMS = 10


def play(strategy: str, seed: int, horizon: int) -> tuple[float, list[tuple[float, float]]]:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(10_000 + seed).uniform(0, 1, ARMS)  # the same bandit for both arms
    counts, sums, total, curve = np.zeros(ARMS), np.zeros(ARMS), 0.0, []
    for t in range(1, horizon + 1):
        if strategy == "random":
            arm = int(rng.integers(ARMS))
        elif t <= ARMS:
            arm = t - 1
        else:
            arm = int(np.argmax(sums / counts + np.sqrt(2 * np.log(t) / counts)))
        reward = float(rng.random() < means[arm])
        counts[arm] += 1
        sums[arm] += reward
        total += reward
        if t % max(horizon // 10, 1) == 0:
            curve.append((float(t), total / t))
    return total / horizon, curve


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    value, curve = play(arm, seed, HORIZON[budget])
    return ArmResult(value, curve)


EXPERIMENTS.add("selftest", Experiment(
    id="selftest",
    claim="UCB1 earns more reward than uniform random choice on a 10-armed Bernoulli bandit.",
    arms={"ucb1": {"strategy": "ucb1"}, "random": {"strategy": "random"}},
    comparisons=(Comparison("ucb1", "random"),),
    metric="mean reward per pull", direction="higher",
    seeds={"quick": (0, 1, 2), "full": (0, 1, 2, 3, 4)},
    run_arm=run_arm, curve_x="pulls", kind="selftest",
    budgets_note={b: f"{h} pulls" for b, h in HORIZON.items()},
))
