"""A rerun of an experiment whose runs exist gives the same report as its first run (one per pillar).

Seen before issue 21: `policylab run iq_lm --budget quick` a second time in one folder crashed with
KeyError 'loss/td' (the finished trainer's summary had `"last": {}`).
"""

from __future__ import annotations

import pytest

from policylab.cli import load_registries
from policylab.core.registry import EXPERIMENTS
from policylab.core.report import build_report
from policylab.core.runner import execute

load_registries()

TIMING = ("wall_s", "wall_time_s", "created")
ONE_PER_PILLAR = ["mdpo", "ssorl", "iq_lm", "mamql", "karl"]  # rl, offline, lm, irl, vision


def _strip(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k not in TIMING}
    out["arms"] = {name: {k: v for k, v in arm.items() if k not in TIMING} for name, arm in report["arms"].items()}
    return out


@pytest.mark.slow
@pytest.mark.parametrize("exp_id", ONE_PER_PILLAR)
def test_a_rerun_gives_the_same_report(exp_id, tmp_path):
    exp = EXPERIMENTS.get(exp_id)
    seeds = exp.select_seeds("quick")[:1]
    reports = []
    for _ in range(2):
        results = execute(exp, "quick", seeds, runs_root=tmp_path, progress=False)
        reports.append(_strip(build_report(exp, "quick", results, wall_s=0.0, command="cmd", commit="c")))
    assert reports[0] == reports[1]
