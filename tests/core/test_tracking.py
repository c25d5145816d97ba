"""Trackers beside metrics.jsonl: each library's own writer is called, with environment steps on the x-axis."""

from __future__ import annotations

import sys
import types

import pytest

import policylab
from policylab.core.errors import ConfigError
from policylab.core.run import read_metrics
from policylab.core.tracking import parse


class FakeWandbRun:
    def __init__(self, calls, **kwargs):
        self.calls = calls
        calls.append(("init", kwargs))

    def define_metric(self, name, step_metric=None):
        self.calls.append(("define_metric", name, step_metric))

    def log(self, values):
        self.calls.append(("log", values))

    def finish(self):
        self.calls.append(("finish",))


def fake_wandb(calls):
    module = types.ModuleType("wandb")
    module.init = lambda **kwargs: FakeWandbRun(calls, **kwargs)
    return module


def fake_mlflow(calls):
    module = types.ModuleType("mlflow")
    state = {"active": None}
    run = types.SimpleNamespace(info=types.SimpleNamespace(run_id="r1"))

    def start_run(run_name=None, nested=False):
        calls.append(("start_run", run_name))
        state["active"] = run
        return run

    def end_run():
        calls.append(("end_run",))
        state["active"] = None

    module.start_run = start_run
    module.end_run = end_run
    module.active_run = lambda: state["active"]
    module.log_params = lambda params, run_id=None: calls.append(("log_params", params))
    module.log_metrics = lambda metrics, step=None, run_id=None: calls.append(("log_metrics", metrics, step))
    module.tracking = types.SimpleNamespace(MlflowClient=lambda: None)
    return module


def test_wandb_and_mlflow_get_every_record_keyed_by_environment_steps(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(calls))
    agent = policylab.PPO("CartPole-v1", seed=0, num_envs=2, rollout_steps=32, epochs=1, lr=0.002)
    agent.learn(640, run_dir=tmp_path / "run", log="wandb,mlflow", eval_env="CartPole-v1", eval_episodes=2, evals=2)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    init = next(c for c in calls if c[0] == "init")[1]
    assert init["config"]["lr"] == 0.002 and init["config"]["env_id"] == "CartPole-v1"
    assert ("define_metric", "*", "x/step") in calls
    logged = [c[1] for c in calls if c[0] == "log"]
    assert [v["x/step"] for v in logged] == [int(r["env_steps"]) for r in records]
    steps = [c[2] for c in calls if c[0] == "log_metrics"]
    assert steps == [int(r["env_steps"]) for r in records]
    assert next(c for c in calls if c[0] == "log_params")[1]["lr"] == "0.002"
    assert calls[-2:] in ([("finish",), ("end_run",)], [("end_run",), ("finish",)])


def test_a_tracker_that_is_not_installed_is_skipped_with_one_line(tmp_path, monkeypatch, capfd):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    policylab.PPO("CartPole-v1", seed=0, num_envs=1, rollout_steps=32, epochs=1).learn(
        64, run_dir=tmp_path / "run", log=["wandb"])
    err = capfd.readouterr().err
    assert "W&B logging was asked for but wandb is not installed" in err
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")


def test_tensorboard_x_axis_is_environment_steps(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    agent = policylab.PPO("CartPole-v1", seed=0, num_envs=2, rollout_steps=32, epochs=1)
    agent.learn(640, run_dir=tmp_path / "run", log="tensorboard")
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("loss/policy")]
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss/policy" in r]
    assert steps == [int(r["env_steps"]) for r in records] and steps[-1] == 640


def test_a_tracker_that_fails_to_start_costs_a_line_not_the_run(tmp_path, monkeypatch, capfd):
    module = types.ModuleType("wandb")

    def refuse(**kwargs):
        raise PermissionError("not logged in")

    module.init = refuse
    monkeypatch.setitem(sys.modules, "wandb", module)
    policylab.PPO("CartPole-v1", seed=0, num_envs=1, rollout_steps=32, epochs=1).learn(
        64, run_dir=tmp_path / "run", log="wandb")
    assert "W&B could not start (PermissionError: not logged in)" in capfd.readouterr().err
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")


def test_tracker_names_are_checked():
    assert parse("tensorboard, wandb") == ("tensorboard", "wandb") and parse("none") == ()
    with pytest.raises(ConfigError, match="log = 'wandbb' is not allowed: must be a comma list of tensorboard, "
                                          "wandb, mlflow, or none"):
        parse("wandbb")


def test_the_real_mlflow_store_holds_the_metrics_by_environment_step(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the file store needs no database package
    agent = policylab.PPO("CartPole-v1", seed=0, num_envs=2, rollout_steps=32, epochs=1)
    agent.learn(640, run_dir=tmp_path / "run", log="mlflow")
    client = mlflow.tracking.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "loss/policy")
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss/policy" in r]
    assert [m.step for m in history] == [int(r["env_steps"]) for r in records]
    assert runs[0].data.params["algo"] == "ppo"


def test_the_real_wandb_writes_an_offline_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    agent = policylab.PPO("CartPole-v1", seed=0, num_envs=2, rollout_steps=32, epochs=1)
    agent.learn(320, run_dir=tmp_path / "run", log="wandb")
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
