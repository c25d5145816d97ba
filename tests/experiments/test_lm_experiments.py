"""Language-model experiments run end to end at their quick budget and produce a report."""

import pytest

from policylab.core.registry import EXPERIMENTS
from policylab.core.report import build_report, write_report
from policylab.core.runner import execute


@pytest.mark.slow
def test_lite_ppo_quick_budget_writes_a_report(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYLAB_MODELS", str(tmp_path / "models"))
    import policylab.experiments  # noqa: F401

    exp = EXPERIMENTS.get("lite_ppo")
    results = execute(exp, "quick", exp.select_seeds("quick"), backend="local", workers=1,
                      runs_root=tmp_path / "runs")
    assert sorted(r["arm"] for r in results) == ["dapo", "grpo", "lite_ppo"]
    for r in results:
        assert 0.0 <= r["value"] <= 1.0 and r["curve"][0][0] == 0.0 and "pass@16" in r["extra"]
    report = build_report(exp, "quick", results, 1.0, "test")
    paths = write_report(report, tmp_path / "results")
    text = paths["md"].read_text()
    assert "Lite PPO vs GRPO" in text and "pass@16" in text and paths["png"].stat().st_size > 0
