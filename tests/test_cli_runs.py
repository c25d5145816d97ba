"""`policylab train` as a job on a cluster would run it: piped progress, run specs, reruns and --fresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from policylab.core.checkpoint import list_checkpoints
from policylab.core.run import read_metrics


def train(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI with stdout and stderr piped (not a terminal), as under nohup or a scheduler."""
    return subprocess.run([sys.executable, "-m", "policylab", "train", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, **(env or {})})


def final_state(run: Path) -> dict:
    return torch.load(list_checkpoints(run / "checkpoints")[-1], weights_only=True)["state"]["algo"]


def same_records(a: Path, b: Path) -> bool:
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rs]
    return strip(read_metrics(a / "metrics.jsonl")) == strip(read_metrics(b / "metrics.jsonl"))


def test_piped_output_shows_progress_lines_with_rate_env_steps_and_eta(tmp_path):
    proc = train("ppo", "--steps", "8192", "--num-envs", "2", "--rollout-steps", "32", "--epochs", "1",
                 "--runs-root", str(tmp_path), cwd=tmp_path, env={"POLICYLAB_PROGRESS_SECONDS": "0.05"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("policylab: ppo ")]
    assert len(lines) >= 2, proc.stderr
    assert all("updates/s" in line and "env_steps" in line for line in lines)
    assert "eta" in lines[0] and "elapsed" in lines[-1] and "128/128 updates (100%)" in lines[-1]


def test_a_run_spec_reproduces_a_run_and_flags_override_it(tmp_path):
    spec = {"algo": "ppo", "env": "CartPole-v1", "steps": 1024, "seed": 3, "evals": 2, "eval_episodes": 2,
            "checkpoints": 2, "run_name": "from-spec", "runs_root": str(tmp_path / "runs"),
            "config": {"num_envs": 2, "rollout_steps": 64, "epochs": 1, "lr": 0.001}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(spec))
    first = train("--config", str(tmp_path / "run.yaml"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "runs" / "from-spec" / "main" / "seed3"
    written = json.loads((run / "run.json").read_text())
    assert written["config"]["lr"] == 0.001 and written["steps"] == 1024 and written["evals"] == 2
    evals = [r for r in read_metrics(run / "metrics.jsonl") if "eval/return" in r]
    assert len(evals) == 2  # the spec's schedule, not the default 10
    # the run's own run.json, with only the run name changed by a flag, is the same run again
    again = train("--config", str(run / "run.json"), "--run-name", "again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = tmp_path / "runs" / "again" / "main" / "seed3"
    assert same_records(run, rerun)
    assert all(torch.equal(a, b) for a, b in zip(final_state(run)["nets"].values(),
                                                 final_state(rerun)["nets"].values()))
    # flags beat the file
    flagged = train("--config", str(tmp_path / "run.yaml"), "--seed", "4", "--steps", "512", cwd=tmp_path)
    assert flagged.returncode == 0, flagged.stderr[-2000:]
    assert json.loads((tmp_path / "runs" / "from-spec" / "main" / "seed4" / "run.json").read_text())["steps"] == 512


def test_bad_run_specs_get_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"algo": "ppo", "stepz": 10}))
    proc = train("--config", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "unknown key 'stepz'" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"algo": "ppo", "evals": -1}))
    proc = train("--config", str(tmp_path / "bad.yaml"), "--runs-root", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "evals = -1 is not allowed" in proc.stderr


def test_a_finished_run_says_so_and_fresh_starts_it_over(tmp_path):
    args = ["ppo", "--steps", "512", "--num-envs", "2", "--rollout-steps", "64", "--epochs", "1",
            "--runs-root", str(tmp_path)]
    first = train(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "ppo-CartPole-v1" / "main" / "seed0"
    records = read_metrics(run / "metrics.jsonl")
    again = train(*args, cwd=tmp_path)
    assert again.returncode == 0 and "is already complete" in again.stderr and str(run) in again.stderr
    assert read_metrics(run / "metrics.jsonl") == records  # nothing trained twice
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rs]
    (run / "checkpoints" / "left-by-the-old-run").write_text("")
    fresh = train(*args, "--fresh", cwd=tmp_path)
    assert fresh.returncode == 0 and "already complete" not in fresh.stderr
    assert not (run / "checkpoints" / "left-by-the-old-run").exists()  # the old run's files went first
    assert strip(read_metrics(run / "metrics.jsonl")) == strip(records)  # then the same run, trained again
