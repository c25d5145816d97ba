"""What every language-model claim check does with one (arm, seed): train, then summarize the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from policylab.core.experiment import ArmResult
from policylab.core.run import RunDir, read_metrics
from policylab.lm import train_rlvr
from policylab.lm.trainer import RLVRConfig, accuracy_curve

CLAIM_DEFAULTS = {"direction": "higher", "seeds": {"quick": (0,), "full": (0, 1, 2)}, "curve_x": "sampled responses"}
"""What the language-model claim checks share: held-out metrics (higher is better), seeds fixed before any run,
learning curves against sampled responses."""


def pass_at_1_metric(task: str) -> str:
    return f"held-out pass@1 after training (16 samples at T = 1 on 200 test-split {task} questions)"


def run_rlvr_arm(cfg: RLVRConfig, task: str, seed: int, steps: int, run: RunDir, name: str,
                 metric: str = "eval/pass@1", evals: int = 5, extra: dict[str, float] | None = None,
                 after: Callable[[dict[str, Any]], dict[str, float]] | None = None) -> ArmResult:
    """Train `cfg` on `task`; the value is the final held-out `metric`, the curve its trajectory.

    Extras reported for every arm: the final held-out greedy accuracy and pass@k, the base model's
    value of the metric, the policy entropy over the last tenth of updates and its ratio to the first
    tenth (collapse shows as a ratio well below 1), and the mean and coefficient of variation of the
    update's gradient norm. `after(summary)` may add more.
    """
    summary = train_rlvr(cfg, env_id=task, seed=seed, steps=steps, run=run, evals=evals, progress=False, name=name)
    records = [r for r in read_metrics(run.metrics_path) if "entropy" in r]
    tenth = max(len(records) // 10, 1)
    entropy = np.array([r["entropy"] for r in records])
    grad = np.array([r["grad_norm"] for r in records])
    out = {k.removeprefix("eval/"): v for k, v in summary["eval"].items() if k.count("/") == 1}
    out.update({
        f"base_{metric.removeprefix('eval/')}": summary["initial_eval"][metric],
        "entropy_end": float(entropy[-tenth:].mean()),
        "entropy_ratio": float(entropy[-tenth:].mean() / max(entropy[:tenth].mean(), 1e-12)),
        "grad_norm_mean": float(grad.mean()),
        "grad_norm_cv": float(grad.std() / grad.mean()) if grad.mean() > 0 else 0.0,
        **(extra or {}),
    })
    if after is not None:
        out.update(after(summary))
    return ArmResult(summary["eval"][metric], accuracy_curve(summary, read_metrics(run.metrics_path), metric), out)
