"""What every offline claim check reports for one (arm, seed): the final normalized score and its curve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policylab.core.experiment import ArmResult
from policylab.core.run import RunDir, read_metrics

REBUILT_DATASETS = ("The issue-20 rerun read datasets built anew on this machine (their hashes are in the result). "
                    "The earlier run's builds, whose hashes no result recorded, need not have had the same bytes (a "
                    "behaviour policy trained where float rounding differs ends elsewhere), and arms whose code did "
                    "not change moved too.")
"""A caveat for the offline checks rerun in issue 20 on datasets rebuilt on another machine than their first run."""


def offline_arm_result(summary: dict[str, Any], run: RunDir, extra: dict[str, float] | None = None,
                       from_records: Callable[[list[dict[str, Any]]], dict[str, float]] | None = None) -> ArmResult:
    """Final normalized score, its curve over gradient steps, the raw return, `extra`, and whatever
    `from_records` reads from the run's logged metrics."""
    records = read_metrics(run.metrics_path)
    curve = [(r["gradient_steps"], r["eval/normalized_score"]) for r in records if "eval/normalized_score" in r]
    out = {"return": float(summary["eval"]["eval/return"]), **(extra or {})}
    if from_records is not None:
        out.update(from_records(records))
    return ArmResult(float(summary["eval"]["eval/normalized_score"]), curve, out)
