"""Atomic writes survive a crash mid-write; checkpoints prune, refuse bad files, fall back."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from policylab.core import atomic
from policylab.core.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from policylab.core.checkpoint import (
    FORMAT,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from policylab.core.errors import CheckpointError


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_json_writes_readable_json(tmp_path):
    path = tmp_path / "deep" / "er" / "out.json"
    obj = {"a": 1, "b": [1.5, "x"], "t": (1, 2), "arr": np.arange(3), "p": tmp_path / "f"}
    assert atomic_write_json(path, obj) == path
    assert json.loads(path.read_text()) == {
        "a": 1, "b": [1.5, "x"], "t": [1, 2], "arr": [0, 1, 2], "p": str(tmp_path / "f"),
    }
    assert _hidden(path.parent) == []


def test_atomic_write_json_refuses_unstorable_values_and_keeps_old(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError, match="cannot store object as JSON"):
        atomic_write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert _hidden(tmp_path) == []


def test_crash_mid_write_keeps_previous_content_and_removes_temp(tmp_path):
    path = tmp_path / "state.bin"
    old = b"old content that must survive\n" * 10
    atomic_write_bytes(path, old)
    new = bytes(range(256)) * 8

    def half_then_die(f):
        f.write(new[: len(new) // 2])
        f.flush()
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_die)
    assert path.read_bytes() == old
    assert _hidden(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_failed_rename_keeps_previous_content_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"version": 1})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_json(path, {"version": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"version": 1}
    assert _hidden(tmp_path) == []


def test_successful_overwrite_replaces_content(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert _hidden(tmp_path) == []


def _state(value: float) -> dict:
    return {"w": torch.full((4,), value), "n": int(value), "nested": {"lr": 0.1}}


def test_save_and_load_checkpoint_round_trip(tmp_path):
    path = save_checkpoint(tmp_path, 42, "sac", _state(3.0))
    assert path.name == "step0000000042.pt"
    payload = load_checkpoint(path, "sac")
    assert payload["format"] == FORMAT
    assert payload["algo"] == "sac"
    assert payload["step"] == 42
    assert torch.equal(payload["state"]["w"], torch.full((4,), 3.0))
    assert payload["state"]["n"] == 3
    assert payload["state"]["nested"] == {"lr": 0.1}
    assert _hidden(tmp_path) == []


def test_keep_last_prunes_to_k_in_step_order(tmp_path):
    for step in (5, 100, 20, 7, 60):  # saved out of order on purpose
        save_checkpoint(tmp_path, step, "ppo", _state(step), keep_last=3)
    # after each save the 3 highest steps seen so far stay
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step0000000020.pt", "step0000000060.pt", "step0000000100.pt",
    ]
    assert [load_checkpoint(p)["step"] for p in list_checkpoints(tmp_path)] == [20, 60, 100]


def test_keep_last_zero_keeps_everything(tmp_path):
    for step in range(4):
        save_checkpoint(tmp_path, step, "ppo", _state(step), keep_last=0)
    assert len(list_checkpoints(tmp_path)) == 4


def test_list_checkpoints_ignores_temp_and_other_files(tmp_path):
    save_checkpoint(tmp_path, 1, "dqn", _state(1))
    (tmp_path / ".step0000000002.pt.abc.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "step3.pt.bak").write_text("x")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step0000000001.pt"]
    assert list_checkpoints(tmp_path / "missing") == []


def test_truncated_checkpoint_raises_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path, 10, "sac", _state(1.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "truncated" in str(info.value)
    assert str(path) in str(info.value)


def test_missing_checkpoint_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "step0000000001.pt")


def test_random_bytes_raise_checkpoint_error(tmp_path):
    path = tmp_path / "step0000000001.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a policylab checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"hello", b"\x80"])
def test_short_foreign_files_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "step0000000001.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_plain_torch_dict_without_format_tag_is_refused(tmp_path):
    path = tmp_path / "step0000000001.pt"
    torch.save({"algo": "sac", "step": 1, "state": {"w": torch.ones(2)}}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "is not a policylab checkpoint" in str(info.value)
    assert FORMAT in str(info.value)


def test_loading_with_another_algo_names_both(tmp_path):
    path = save_checkpoint(tmp_path, 3, "sac", _state(1.0))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, algo="td3")
    message = str(info.value)
    assert "'sac'" in message
    assert "'td3'" in message


def test_load_latest_returns_the_newest(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, "sac", _state(step))
    payload = load_latest(tmp_path, "sac")
    assert payload["step"] == 3
    assert torch.equal(payload["state"]["w"], torch.full((4,), 3.0))


def test_load_latest_falls_back_when_newest_is_corrupted(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, "sac", _state(step))
    newest = list_checkpoints(tmp_path)[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    payload = load_latest(tmp_path, "sac")
    assert payload["step"] == 2
    assert torch.equal(payload["state"]["w"], torch.full((4,), 2.0))


def test_load_latest_when_all_are_corrupted_raises(tmp_path):
    for step in (1, 2):
        path = save_checkpoint(tmp_path, step, "sac", _state(step))
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_latest(tmp_path, "sac")


def test_load_latest_does_not_fall_back_past_an_algo_mismatch(tmp_path):
    save_checkpoint(tmp_path, 1, "sac", _state(1))
    save_checkpoint(tmp_path, 2, "sac", _state(2))
    with pytest.raises(CheckpointError, match="'sac'.*'ppo'"):
        load_latest(tmp_path, "ppo")


def test_load_latest_on_empty_or_missing_folder_returns_none(tmp_path):
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "never-created") is None
    os.mkdir(tmp_path / "ck")
    (tmp_path / "ck" / ".step0000000001.pt.x.tmp").write_bytes(b"torn")
    assert load_latest(tmp_path / "ck") is None
