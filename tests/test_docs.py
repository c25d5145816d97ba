"""The code in docs/ runs: the add-an-algorithm example trains."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "core.md"


def example_code() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- example:add-algorithm -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/core.md lost its add-algorithm example"
    return match.group(1)


def test_add_algorithm_example_registers_and_trains(tmp_path):
    code = example_code()
    assert len(code.strip().splitlines()) <= 40
    check = code + """
import torch
from policylab.core.run import RunDir
from policylab.core.registry import ALGORITHMS
spec = ALGORITHMS.get("a2c")
run = RunDir(RUNS, "a2c", "main", 0)
summary = spec.train(spec.config(), env_id="CartPole-v1", seed=0, steps=2000, run=run, progress=False)
assert summary["steps"] == 2000 // 40, summary["steps"]
assert summary["algorithm"].updates == 50
assert all(torch.isfinite(torch.tensor(v)) for k, v in summary["last"].items() if k.startswith("loss"))
assert list(run.checkpoints.glob("*.pt")), "no checkpoint written"
print("ok", summary["eval"]["eval/return"])
"""
    proc = subprocess.run([sys.executable, "-c", f"RUNS = {str(tmp_path)!r}\n" + check],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


def test_add_lm_method_example_trains(tmp_path):
    text = (DOC.parent / "lm.md").read_text()
    match = re.search(r"<!-- example:add-lm-method -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/lm.md lost its add-lm-method example"
    code = match.group(1) + """
assert summary["steps"] == 3 and summary["algo"] == "median"
assert torch.isfinite(torch.tensor(summary["last"]["loss"]))
print("ok")
"""
    env = {**os.environ, "POLICYLAB_MODELS": str(tmp_path / "models")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_the_plugin_example_package_holds_the_docs_example():
    plugin = DOC.parents[1] / "examples" / "policylab-a2c" / "src" / "policylab_a2c" / "__init__.py"
    assert plugin.read_text() == example_code()
