"""The training loop: resume equality, non-finite abort, budgets, metric records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from policylab.core.checkpoint import list_checkpoints, load_checkpoint
from policylab.core.errors import CheckpointError, NonFiniteLossError
from policylab.core.run import RunDir, read_metrics
from policylab.core.seeding import seed_everything
from policylab.core.trainer import Trainer, TrainerConfig

# the toy regression (Adam with dropout noise: every update draws from the global RNG) and its noisy source
_spec = importlib.util.spec_from_file_location("toy_train", Path(__file__).parents[1] / "reliability" / "toy_train.py")
toy = importlib.util.module_from_spec(_spec)
sys.modules["toy_train"] = toy
_spec.loader.exec_module(toy)
Regression, RegressionConfig, NoisySource = toy.Toy, toy.ToyConfig, toy.Source


def make_trainer(tmp_path, name, steps, checkpoint_every=5, nan_at=-1, evaluate=None, callbacks=()):
    seed_everything(0)
    algo = Regression(RegressionConfig(nan_at=nan_at))
    run = RunDir(tmp_path, name, "main", 0)
    cfg = TrainerConfig(max_steps=steps, log_every=3, checkpoint_every=checkpoint_every, progress=False)
    return Trainer(algo, NoisySource(), cfg, run, evaluate, callbacks, tensorboard=False)


def params(trainer):
    return [p.detach().clone() for p in trainer.algo.model.parameters()]


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    evaluate = lambda algo: {"score": float(torch.rand(()))}  # uses RNG: must not shift training
    straight = make_trainer(tmp_path, "straight", 20, evaluate=evaluate)
    straight.fit()

    first = make_trainer(tmp_path, "resumed", 10, evaluate=evaluate)
    first.fit()
    # a new process would start from scratch: new objects, different global RNG state
    torch.manual_seed(12345)
    second = make_trainer(tmp_path, "resumed", 20, evaluate=evaluate)
    second.cfg = TrainerConfig(max_steps=20, log_every=3, checkpoint_every=5, progress=False)
    seed_everything(999)
    second.fit()

    assert second.source.batches == straight.source.batches == 20
    for a, b in zip(params(straight), params(second)):
        assert torch.equal(a, b)
    losses = lambda run: [(r["step"], r["loss"]) for r in read_metrics(run.metrics_path) if "loss" in r]
    assert losses(second.run) == losses(straight.run)


def test_non_finite_loss_aborts_and_keeps_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, "nan", 30, checkpoint_every=5, nan_at=13)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss = nan .*last good checkpoint: .*step0000000010"):
        trainer.fit()
    kept = list_checkpoints(trainer.run.checkpoints)
    assert kept[-1].name == "step0000000010.pt"
    state = load_checkpoint(kept[-1], "toy-regression")["state"]["algo"]["model"]
    assert all(torch.isfinite(v).all() for v in state.values())


def test_seconds_budget_stops_the_run(tmp_path):
    trainer = make_trainer(tmp_path, "timed", 10**9, checkpoint_every=0)
    trainer.cfg = TrainerConfig(max_steps=10**9, max_seconds=0.3, log_every=50, progress=False)
    summary = trainer.fit()
    assert summary["stopped_by"] == "seconds"
    assert 0 < summary["steps"] < 10**9
    assert json.loads((trainer.run.path / "summary.json").read_text())["steps"] == summary["steps"]


def test_checkpoint_of_another_algorithm_is_refused(tmp_path):
    make_trainer(tmp_path, "shared", 5).fit()
    other = make_trainer(tmp_path, "shared", 10)
    other.algo.name = "another-algo"
    with pytest.raises(CheckpointError, match="written by algorithm 'toy-regression'.*'another-algo'"):
        other.fit()


def test_records_have_steps_and_counters(tmp_path):
    trainer = make_trainer(tmp_path, "records", 9, checkpoint_every=0)
    trainer.fit()
    records = [r for r in read_metrics(trainer.run.metrics_path) if "loss" in r]
    assert [r["step"] for r in records] == [3, 6, 9]
    assert [r["batches"] for r in records] == [3.0, 6.0, 9.0]


def test_tensorboard_events_mirror_the_jsonl_when_installed(tmp_path):
    pytest.importorskip("tensorboard")  # installed by `make test` (the tensorboard extra)
    seed_everything(0)
    run = RunDir(tmp_path, "tb", "main", 0)
    cfg = TrainerConfig(max_steps=6, log_every=3, progress=False)
    Trainer(Regression(RegressionConfig()), NoisySource(), cfg, run, tensorboard=True).fit()
    events = list((run.path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_resume_with_another_config_is_refused_and_nothing_is_overwritten(tmp_path):
    make_trainer(tmp_path, "cfg", 5).fit()
    ckpt = list_checkpoints(tmp_path / "cfg" / "main" / "seed0" / "checkpoints")[-1]
    before = ckpt.read_bytes()
    other = make_trainer(tmp_path, "cfg", 10)
    other.algo.cfg = RegressionConfig(lr=0.5)
    with pytest.raises(CheckpointError, match=r"another config \(lr: 0.05 -> 0.5\)"):
        other.fit()
    assert ckpt.read_bytes() == before


def test_resume_from_a_state_of_another_shape_is_a_clear_error(tmp_path):
    make_trainer(tmp_path, "shape", 5).fit()
    other = make_trainer(tmp_path, "shape", 10)
    other.algo.model = torch.nn.Linear(4, 2)  # same algorithm name and config, different network
    other.algo.opt = torch.optim.Adam(other.algo.model.parameters())
    with pytest.raises(CheckpointError, match=r"its state does not fit this toy-regression \(RuntimeError"):
        other.fit()
