"""Nothing is lost: after any sequence of kills and reruns a run ends exactly as an uninterrupted one.

Each case is one an audit of issue 21 found broken; the kill loop is bounded in count and time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from policylab.core.checkpoint import list_checkpoints, load_checkpoint
from policylab.core.errors import NonFiniteLossError, RunDirError
from policylab.core.trainer import first_non_finite

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("toy_train", HERE / "toy_train.py")
toy = importlib.util.module_from_spec(_spec)
sys.modules["toy_train"] = toy  # dataclasses look their module up while the file executes
_spec.loader.exec_module(toy)

TIMING = ("time/elapsed_s",)


def run_dir(root: Path) -> Path:
    return root / "toy" / "main" / "seed0"


def metrics(root: Path) -> list[dict]:
    lines = (run_dir(root) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def summary(root: Path) -> dict:
    s = json.loads((run_dir(root) / "summary.json").read_text())
    s.pop("elapsed_s")
    s["last"].pop("time/elapsed_s", None)
    return s


def final_parameters(root: Path) -> dict:
    return load_checkpoint(list_checkpoints(run_dir(root) / "checkpoints")[-1])["state"]["algo"]["model"]


def script(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(HERE / "toy_train.py"), str(root), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    toy.train(str(root))
    return root


def assert_same_run(root: Path, reference: Path) -> None:
    assert metrics(root) == metrics(reference)
    assert summary(root) == summary(reference)
    for name, tensor in final_parameters(reference).items():
        assert torch.equal(final_parameters(root)[name], tensor), name
    leftovers = [p.name for p in run_dir(root).rglob("*.tmp")]
    assert not leftovers, leftovers


def test_kill_loop_resumes_to_the_uninterrupted_result(tmp_path, reference):
    # a fixed kill schedule, at most 8 kills and about a minute; 0.05 s per update makes a run last longer than
    # any window, so that every window ends in a kill wherever the machine's load puts it
    rng = random.Random(20)
    kills, deadline = 0, time.monotonic() + 90
    while kills < 8 and time.monotonic() < deadline:
        proc = script(tmp_path, "--sleep", "0.05")
        try:
            proc.wait(timeout=rng.uniform(0.5, 3.0))
            break  # finished before the kill
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    final = script(tmp_path, "--sleep", "0.05")
    assert final.wait(timeout=120) == 0, final.stderr.read()
    assert kills >= 3  # the schedule must actually have interrupted the run
    assert_same_run(tmp_path, reference)


def test_rerunning_a_finished_run_changes_nothing(tmp_path, reference):
    toy.train(str(tmp_path))
    before = {name: (run_dir(tmp_path) / name).read_bytes() for name in ("metrics.jsonl", "summary.json")}
    again = toy.train(str(tmp_path))
    assert again["last"], "a rerun must report the run's last record, not {}"
    for name, data in before.items():
        assert (run_dir(tmp_path) / name).read_bytes() == data, f"a rerun changed {name}"
    assert_same_run(tmp_path, reference)


def test_records_of_a_run_killed_before_its_first_checkpoint_are_not_kept_twice(tmp_path, reference):
    folder = run_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n{"step": 10, "loss": 0.5}\n')
    toy.train(str(tmp_path))
    assert_same_run(tmp_path, reference)


def test_kill_after_the_final_evaluation_logs_it_once(tmp_path, reference):
    # the state a kill between the final evaluation's record and the final checkpoint leaves behind:
    # the newest checkpoint is the in-loop one at the last step, and the evaluation is already logged
    toy.train(str(tmp_path))
    folder = run_dir(tmp_path)
    records = (folder / "metrics.jsonl").read_text()
    toy.train(str(tmp_path / "partial"), steps=60)
    newest = list_checkpoints(folder / "checkpoints")[-1]
    payload = torch.load(newest, weights_only=True)
    payload["state"]["trainer"]["stopped_by"] = None  # as the in-loop checkpoint at step 60 was written
    payload["state"]["trainer"]["metric_records"] -= 1  # before the final evaluation's record
    torch.save(payload, newest)
    (folder / "summary.json").unlink()
    toy.train(str(tmp_path))
    assert (folder / "metrics.jsonl").read_text().count('"eval/mse"') == records.count('"eval/mse"')
    assert_same_run(tmp_path, reference)


def test_temp_files_of_killed_writes_are_removed(tmp_path, reference):
    folder = run_dir(tmp_path)
    (folder / "checkpoints").mkdir(parents=True)
    for stale in (folder / "checkpoints" / ".step0000000010.pt.abc123.tmp", folder / ".summary.json.x9.tmp"):
        stale.write_bytes(b"\0" * 1000)
    toy.train(str(tmp_path))
    assert_same_run(tmp_path, reference)


def test_a_checkpoint_with_a_string_step_falls_back_and_keeps_every_record(tmp_path, reference, capsys):
    toy.train(str(tmp_path), steps=50)  # stops at 50 with checkpoints at 40 and 50
    newest = list_checkpoints(run_dir(tmp_path) / "checkpoints")[-1]
    payload = torch.load(newest, weights_only=True)
    payload["step"] = "50"
    torch.save(payload, newest)
    size = (run_dir(tmp_path) / "metrics.jsonl").stat().st_size
    toy.train(str(tmp_path))  # on to 60, from the older checkpoint
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is unusable" in err and "its step is '50'" in err
    assert (run_dir(tmp_path) / "metrics.jsonl").stat().st_size > size * 0.5  # never emptied
    assert_same_run(tmp_path, reference)


@pytest.mark.parametrize("damage", ["no rng", "no trainer", "bad count", "zeroed source", "wrong shape"])
def test_damaged_checkpoint_states_fall_back(tmp_path, reference, damage, capsys):
    toy.train(str(tmp_path), steps=50)
    newest = list_checkpoints(run_dir(tmp_path) / "checkpoints")[-1]
    payload = torch.load(newest, weights_only=True)
    if damage == "no rng":
        del payload["state"]["rng"]
    elif damage == "no trainer":
        del payload["state"]["trainer"]
    elif damage == "bad count":
        payload["state"]["trainer"]["metric_records"] = -3
    elif damage == "zeroed source":  # as a zeroed env blob: the source's state no longer loads
        payload["state"]["source"] = {}
    else:
        payload["state"]["algo"]["model"]["weight"] = torch.zeros(3, 3)
    torch.save(payload, newest)
    toy.train(str(tmp_path))
    assert f"checkpoint {newest} is unusable" in capsys.readouterr().err
    assert_same_run(tmp_path, reference)


def test_a_state_with_inf_is_never_checkpointed(tmp_path):
    # the loss stays finite while Adam's second moments are inf (IQL with an infinite weight clip did this)
    with pytest.raises(NonFiniteLossError, match=r"exp_avg_sq.*last good checkpoint: .*step0000000020\.pt"):
        toy.train(str(tmp_path), blowup_at=25)
    for path in list_checkpoints(run_dir(tmp_path) / "checkpoints"):
        assert first_non_finite(load_checkpoint(path)["state"]) is None, path


def test_first_non_finite_names_the_tensor():
    state = {"a": torch.ones(3), "b": {"c": [torch.zeros(2), torch.tensor([1.0, float("nan")])]},
             "n": torch.tensor([1, 2]), "x": 1.5}
    assert first_non_finite(state) == "state.b.c.1"
    assert first_non_finite({"x": float("inf")}) == "state.x"
    assert first_non_finite({"rng": torch.zeros(5, dtype=torch.uint8), "y": 2}) is None


def test_a_second_process_on_the_same_run_directory_fails_at_once(tmp_path):
    proc = script(tmp_path, "--sleep", "0.05", "--steps", "400")
    try:
        lock = run_dir(tmp_path) / ".lock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(RunDirError, match=rf"in use by process {proc.pid}\b"):
            toy.train(str(tmp_path))
        assert time.monotonic() - start < 5
        other = script(tmp_path)
        assert other.wait(timeout=60) == 2 and f"in use by process {proc.pid}" in other.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    from policylab.core.run import RunDir

    with RunDir(tmp_path, "toy", "main", 0).owned():  # the holder died (SIGKILL): its lock went with it
        assert (run_dir(tmp_path) / ".lock").read_text() == str(os.getpid())


FILE_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:200]),
    "zeroed": lambda p: p.write_bytes(b"\0" * p.stat().st_size),
    "empty": lambda p: p.write_bytes(b""),
    "random bytes": lambda p: p.write_bytes(bytes(range(256)) * 40),
    "JSON text": lambda p: p.write_text('{"step": 50}'),
    "no format tag": lambda p: torch.save({"step": 50, "state": {}}, p),
    "other format": lambda p: torch.save({"format": "sb3-v2", "step": 50}, p),
    "a tensor": lambda p: torch.save(torch.zeros(3), p),
}


@pytest.mark.parametrize("case", sorted(FILE_DAMAGE))
def test_a_damaged_newest_checkpoint_file_falls_back(tmp_path, reference, case, capsys):
    toy.train(str(tmp_path), steps=50)
    newest = list_checkpoints(run_dir(tmp_path) / "checkpoints")[-1]
    FILE_DAMAGE[case](newest)
    toy.train(str(tmp_path))
    assert f"checkpoint {newest} is unusable" in capsys.readouterr().err
    assert_same_run(tmp_path, reference)


@pytest.mark.parametrize("case", ["zeroed", "JSON text"])
def test_when_every_checkpoint_is_damaged_the_error_is_one_line(tmp_path, case):
    from policylab.core.errors import CheckpointError

    toy.train(str(tmp_path), steps=50)
    for path in list_checkpoints(run_dir(tmp_path) / "checkpoints"):
        FILE_DAMAGE[case](path)
    with pytest.raises(CheckpointError) as info:
        toy.train(str(tmp_path))
    assert "no loadable checkpoint" in str(info.value) and "\n" not in str(info.value)


def test_a_checkpoint_of_another_algorithm_is_refused_not_passed_over(tmp_path):
    from policylab.core.checkpoint import CheckpointMismatch

    toy.train(str(tmp_path), steps=50)
    newest = list_checkpoints(run_dir(tmp_path) / "checkpoints")[-1]
    payload = torch.load(newest, weights_only=True)
    payload["algo"] = "sac"
    torch.save(payload, newest)
    with pytest.raises(CheckpointMismatch, match="was written by algorithm 'sac'"):
        toy.train(str(tmp_path))
