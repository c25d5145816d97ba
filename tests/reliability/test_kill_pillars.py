"""Kills aimed right after checkpoint writes, in an offline (IQL) and a language-model (GRPO) run: after four
kills and a last rerun, parameters, metrics.jsonl and summary.json equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from policylab.core.checkpoint import list_checkpoints, load_checkpoint
from policylab.core.trainer import state_leaves

SCRIPT = Path(__file__).with_name("kill_pillar.py")
KILLS = {"iql": (50, 150, 250, 300), "grpo": (2, 4, 6, 8)}  # checkpoint steps; the last one comes before
# the final evaluation, which the rerun must then log exactly once


def launch(algo: str, root: Path, kill_at: int, models: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "POLICYLAB_MODELS": str(models), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, str(SCRIPT), algo, str(root), str(kill_at)], env=env,
                          capture_output=True, text=True, timeout=600)


def outcome(root: Path, algo: str) -> tuple[list[dict], dict, dict]:
    folder = root / algo / "main" / "seed0"
    records = [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
               for line in (folder / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("elapsed_s")
    summary["last"].pop("time/elapsed_s", None)
    state = load_checkpoint(list_checkpoints(folder / "checkpoints")[-1])["state"]["algo"]
    return records, summary, state


def tensors(tree):
    """(path, tensor) for every tensor of a nested state."""
    return ((path, leaf) for path, leaf in state_leaves(tree) if isinstance(leaf, torch.Tensor))


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["iql", "grpo"])
def test_four_kills_then_a_rerun_equal_an_uninterrupted_run(algo, tmp_path):
    models = tmp_path / "models"
    straight = launch(algo, tmp_path / "straight", -1, models)
    assert straight.returncode == 0, straight.stderr[-2000:]
    for kill_at in KILLS[algo]:
        killed = launch(algo, tmp_path / "killed", kill_at, models)
        assert killed.returncode == -9, (kill_at, killed.returncode, killed.stderr[-2000:])
    final = launch(algo, tmp_path / "killed", -1, models)
    assert final.returncode == 0, final.stderr[-2000:]
    a, b = outcome(tmp_path / "straight", algo), outcome(tmp_path / "killed", algo)
    assert a[0] == b[0], "metrics.jsonl differs from the uninterrupted run's"
    assert a[1] == b[1], "summary.json differs from the uninterrupted run's"
    ta, tb = dict(tensors(a[2])), dict(tensors(b[2]))
    assert ta.keys() == tb.keys() and len(ta) > 4
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
