"""Run directories, JSONL metric logging, truncation on resume."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from policylab.core.config import Config, param
from policylab.core.errors import RunDirError
from policylab.core.run import MetricLogger, RunDir, read_metrics, truncate_metrics


@dataclass(frozen=True)
class Small(Config):
    lr: float = param(0.1, gt=0)


def test_run_dir_layout(tmp_path):
    run = RunDir(tmp_path / "runs", "sac-hopper", "ablation_1", seed=3)
    assert run.path == tmp_path / "runs" / "sac-hopper" / "ablation_1" / "seed3"
    assert run.path.is_dir()
    assert run.checkpoints == run.path / "checkpoints"
    assert run.metrics_path == run.path / "metrics.jsonl"


def test_run_dir_default_arm_and_seed(tmp_path):
    run = RunDir(tmp_path, "demo")
    assert run.path == tmp_path / "demo" / "main" / "seed0"
    assert run.path.is_dir()


def test_run_dir_can_be_reopened(tmp_path):
    first = RunDir(tmp_path, "x", "a", 1)
    (first.path / "marker").write_text("kept")
    second = RunDir(tmp_path, "x", "a", 1)
    assert (second.path / "marker").read_text() == "kept"


@pytest.mark.parametrize(
    ("name", "arm", "label"),
    [
        ("a/b", "main", "run name"),
        ("a b", "main", "run name"),
        ("", "main", "run name"),
        ("ok", "x/y", "arm"),
        ("ok", "has space", "arm"),
        ("ok", "tab\t", "arm"),
    ],
)
def test_run_dir_rejects_unsafe_names(tmp_path, name, arm, label):
    with pytest.raises(RunDirError) as info:
        RunDir(tmp_path, name, arm)
    assert str(info.value).startswith(f"{label} {(name if label == 'run name' else arm)!r}")
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_run_dir_rejects_dot_dot(tmp_path):
    root = tmp_path / "a" / "b" / "runs"  # deep, so that the escape stays inside tmp_path
    with pytest.raises(RunDirError):
        RunDir(root, "..", "..")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_run_dir_in_non_writable_root_raises(tmp_path):
    root = tmp_path / "locked"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(RunDirError, match="cannot create run directory"):
            RunDir(root, "exp", "arm", 0)
    finally:
        root.chmod(0o700)


def test_run_dir_with_a_file_as_root_raises(tmp_path):
    root = tmp_path / "not-a-dir"
    root.write_text("I am a file")
    with pytest.raises(RunDirError) as info:
        RunDir(root, "exp", "arm", 0)
    assert "cannot create run directory" in str(info.value)
    assert str(root / "exp" / "arm" / "seed0") in str(info.value)


def test_run_dir_when_seed_path_is_a_file_raises(tmp_path):
    (tmp_path / "exp" / "arm").mkdir(parents=True)
    (tmp_path / "exp" / "arm" / "seed0").write_text("")
    with pytest.raises(RunDirError, match="cannot create run directory"):
        RunDir(tmp_path, "exp", "arm", 0)


def test_run_dir_saves_config_and_summary(tmp_path):
    run = RunDir(tmp_path, "exp")
    run.save_config(Small(lr=0.5), algo="sac")
    stored = json.loads((run.path / "config.json").read_text())
    assert stored["values"] == {"lr": 0.5}
    assert stored["algo"] == "sac"
    assert stored["type"].endswith(":Small")
    run.save_summary({"return": 12.5, "steps": 100})
    assert json.loads((run.path / "summary.json").read_text()) == {"return": 12.5, "steps": 100}


def test_metric_logger_writes_jsonl_records_with_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricLogger(path)
    logger.log(1, {"loss": 0.5, "return": 3})
    logger.log(2.0, {"loss": 0.25})
    logger.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "loss": 0.5, "return": 3.0},
        {"step": 2, "loss": 0.25},
    ]
    assert isinstance(json.loads(lines[1])["step"], int)
    assert logger.records == [{"step": 1, "loss": 0.5, "return": 3.0}, {"step": 2, "loss": 0.25}]
    logger.close()  # closing twice is harmless


def test_metric_logger_appends_to_an_existing_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = MetricLogger(path)
    first.log(1, {"a": 1.0})
    first.close()
    second = MetricLogger(path)
    second.log(2, {"a": 2.0})
    second.close()
    assert read_metrics(path) == [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0}]
    assert second.records == [{"step": 2, "a": 2.0}]


def test_metric_logger_without_path_keeps_records_in_memory(tmp_path):
    logger = MetricLogger(None)
    logger.log(5, {"x": 1})
    logger.close()
    assert logger.records == [{"step": 5, "x": 1.0}]
    assert list(tmp_path.iterdir()) == []


def test_truncate_metrics_keeps_steps_up_to_k_and_drops_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricLogger(path)
    for step in (10, 20, 30, 40, 50):
        logger.log(step, {"v": step / 10})
    logger.close()
    with open(path, "a") as f:
        f.write('{"step": 60, "v"')  # torn by a kill mid-write
    truncate_metrics(path, 30)
    assert read_metrics(path) == [
        {"step": 10, "v": 1.0}, {"step": 20, "v": 2.0}, {"step": 30, "v": 3.0},
    ]
    assert path.read_text().endswith("\n")


def test_truncate_metrics_keeps_what_it_cannot_prove_is_after_the_checkpoint(tmp_path):
    # issue 21: a record whose step cannot be read is kept (it may predate the checkpoint); lines that are not
    # records at all (torn, a bare list, an empty line, bytes that are not UTF-8) are dropped
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "v": 1}\n{"v": 2}\n[1, 2]\n\n\xff\xfe\n{"step": "3"}\n'
                     b'{"step": 2}\n{"step": 9}\n{"st')
    assert truncate_metrics(path, 5) == 4
    assert read_metrics(path) == [{"step": 1, "v": 1}, {"v": 2}, {"step": "3"}, {"step": 2}]


def test_truncate_metrics_to_a_record_count_keeps_exactly_those(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 2, "eval/x": 1}\n{"step": 3}\n')
    assert truncate_metrics(path, keep_records=3) == 3
    assert read_metrics(path) == [{"step": 1}, {"step": 2}, {"step": 2, "eval/x": 1}]
    assert truncate_metrics(path, keep_records=0) == 0 and path.read_text() == ""


def test_truncate_metrics_before_first_step_empties_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 4}\n{"step": 8}\n')
    truncate_metrics(path, 0)
    assert path.read_text() == ""
    assert read_metrics(path) == []


def test_truncate_metrics_on_missing_file_does_nothing(tmp_path):
    path = tmp_path / "metrics.jsonl"
    truncate_metrics(path, 3)
    assert not path.exists()


def test_read_metrics_round_trip_and_missing_file(tmp_path):
    path = tmp_path / "m.jsonl"
    assert read_metrics(path) == []
    logger = MetricLogger(path)
    records = [{"loss": 1.5, "acc": 0.25}, {"loss": 0.75, "acc": 0.5}, {"loss": 0.5, "acc": 0.75}]
    for step, rec in enumerate(records):
        logger.log(step * 100, rec)
    logger.close()
    assert read_metrics(path) == [{"step": i * 100, **rec} for i, rec in enumerate(records)]
    with open(path, "a") as f:
        f.write("\n   \n")
    assert len(read_metrics(path)) == 3  # blank lines are skipped


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "v": 1.0}\n{"step": 2, "v"')
    assert read_metrics(path) == [{"step": 1, "v": 1.0}]
