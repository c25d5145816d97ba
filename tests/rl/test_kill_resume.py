"""A run killed (SIGKILL) right after a checkpoint resumes to the same parameters, bitwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from policylab.core.checkpoint import list_checkpoints, load_checkpoint
from policylab.core.run import read_metrics
from policylab.core.trainer import state_leaves

SCRIPT = Path(__file__).with_name("train_and_maybe_kill.py")


def launch(algo, root, name, kill_at=-1):
    return subprocess.run([sys.executable, str(SCRIPT), algo, str(root), name, str(kill_at)],
                          capture_output=True, text=True, timeout=300)


def final_state(root, name):
    folder = Path(root) / name / "main" / "seed3" / "checkpoints"
    return load_checkpoint(list_checkpoints(folder)[-1])


def flatten(tree):
    """(path, tensor) for every tensor of a nested state."""
    return ((path, leaf) for path, leaf in state_leaves(tree) if isinstance(leaf, torch.Tensor))


@pytest.mark.parametrize("algo,kill_at", [("ppo", 4), ("sac", 200)])
def test_killed_run_resumes_bitwise(tmp_path, algo, kill_at):
    straight = launch(algo, tmp_path, "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = launch(algo, tmp_path, "killed", kill_at)
    assert killed.returncode == -9, f"expected SIGKILL, got {killed.returncode}: {killed.stderr[-2000:]}"
    assert [p.name for p in list_checkpoints(tmp_path / "killed" / "main" / "seed3" / "checkpoints")] \
        == [f"step{kill_at:010d}.pt"]
    resumed = launch(algo, tmp_path, "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = final_state(tmp_path, "straight"), final_state(tmp_path, "killed")
    assert a["step"] == b["step"] > kill_at
    tensors_a = dict(flatten(a["state"]["algo"]))
    tensors_b = dict(flatten(b["state"]["algo"]))
    assert tensors_a.keys() == tensors_b.keys() and len(tensors_a) > 4
    for key in tensors_a:
        assert torch.equal(tensors_a[key], tensors_b[key]), f"{algo}: {key} differs after resume"
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    metrics = lambda name: strip(read_metrics(tmp_path / name / "main" / "seed3" / "metrics.jsonl"))
    assert metrics("killed") == metrics("straight")
