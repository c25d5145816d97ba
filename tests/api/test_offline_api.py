"""The offline Python API, driven as a user would: numpy arrays with no env, D4RL and Minari files, save / load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import policylab
from policylab.data import DatasetError, episodes_of, save_dataset
from policylab.offline import IQL as IQLAlgorithm
from policylab.offline import IQLConfig, train_offline

sys.path.insert(0, str(Path(__file__).parent))
from envs import Reach  # noqa: E402


def logged_reach(n: int = 2000, seed: int = 0, expert_fraction: float = 0.5):
    """Logged data of the Reach task (no simulator in the loop): half near-optimal actions, half uniform."""
    rng = np.random.default_rng(seed)
    target = rng.uniform(-1, 1, n)
    obs = np.stack([target, (np.arange(n) % 5) / 5], 1).astype(np.float32)
    expert = rng.random(n) < expert_fraction
    actions = np.where(expert, 1.5 * target + rng.normal(0, 0.1, n), rng.uniform(-2, 2, n)).clip(-2, 2)
    rewards = -(actions - 1.5 * target) ** 2
    timeouts = (np.arange(n) % 5) == 4
    return obs, actions.astype(np.float32).reshape(n, 1), rewards.astype(np.float32), np.zeros(n, bool), timeouts


def test_numpy_arrays_with_no_env_fit_predict_and_save(tmp_path):
    obs, actions, rewards, terminals, timeouts = logged_reach()
    dataset = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts)
    assert dataset.num_episodes == 400 and len(dataset) == 1600  # each episode's last transition has no successor
    assert "env_id" not in dataset.metadata and not dataset.has_reference_scores
    model = policylab.IQL(hidden=(32, 32), batch_size=64, seed=0).fit(dataset, 300)
    assert model.last_summary["eval"] == {} and model.last_summary["steps"] == 300
    assert model.predict(obs[0]).shape == (1,) and model.predict(obs[:7]).shape == (7, 1)
    assert np.all(np.abs(model.predict(obs[:50])) <= 2.0 + 1e-5)  # back in the data's action units
    loaded = policylab.IQL.load(model.save(tmp_path / "iql.pt"))
    assert np.array_equal(loaded.predict(obs[:20]), model.predict(obs[:20]))
    with pytest.raises(Exception, match="written by algorithm 'iql'"):
        policylab.CQL.load(tmp_path / "iql.pt")


def test_offline_learning_beats_the_behaviour_it_learned_from():
    """Margin fixed before the run: BC and IQL on half-random data must beat the data's own mean reward by 0.3."""
    obs, actions, rewards, terminals, timeouts = logged_reach()
    dataset = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts)
    behaviour = float(rewards.mean())
    test = np.random.default_rng(1).uniform(-1, 1, 500)
    test_obs = np.stack([test, np.zeros(500)], 1).astype(np.float32)
    for cls in (policylab.BC, policylab.IQL):
        model = cls(hidden=(64, 64), batch_size=128, seed=0).fit(dataset, 1500)
        achieved = float(np.mean(-(model.predict(test_obs)[:, 0] - 1.5 * test) ** 2))
        assert achieved > behaviour + 0.3, (cls.__name__, achieved, behaviour)


def test_the_api_is_the_training_path_bitwise(tmp_path):
    obs, actions, rewards, terminals, timeouts = logged_reach(500)
    dataset = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts, env_id="Pendulum-v1",
                                            ref_min_score=-10.0, ref_max_score=0.0)
    path = save_dataset(tmp_path / "reach", episodes_of(dataset), dataset.metadata)
    cfg = dict(hidden=(16, 16), batch_size=32)
    model = policylab.IQL(seed=2, **cfg).fit(policylab.Dataset.load(path), 50)
    ref = train_offline(IQLAlgorithm, IQLConfig(**cfg), env_id=path, seed=2, steps=50, eval_episodes=0,
                        progress=False)
    for key, value in model.algo.actor.state_dict().items():
        assert torch.equal(value, ref["algorithm"].actor.state_dict()[key]), key


def test_evaluation_and_normalized_scores_only_when_asked_and_possible():
    obs, actions, rewards, terminals, timeouts = logged_reach(500)
    plain = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts)
    model = policylab.BC(hidden=(8,)).fit(plain, 20, eval_env=Reach, eval_episodes=3, evals=1)
    assert set(model.last_summary["eval"]) == {"eval/return", "eval/return_std"}
    scored = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts, ref_min_score=-20.0,
                                           ref_max_score=0.0)
    model = policylab.BC(hidden=(8,)).fit(scored, 20, eval_env=Reach(), eval_episodes=3, evals=1)
    ret = model.last_summary["eval"]["eval/return"]
    assert model.last_summary["eval"]["eval/normalized_score"] == pytest.approx(100 * (ret + 20) / 20)
    with pytest.raises(DatasetError, match="has no ref_min_score / ref_max_score"):
        plain.normalized_score(-3.0)


def test_discrete_actions_from_integer_arrays():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(600, 3)).astype(np.float32)
    actions = (obs[:, 0] > 0).astype(np.int64) * 2  # actions 0 or 2 of 3
    rewards = np.ones(600, np.float32)
    terminals = (np.arange(600) % 20) == 19
    dataset = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, num_actions=3)
    assert dataset.discrete and dataset.metadata["num_actions"] == 3 and len(dataset) == 600
    for cls in (policylab.BC, policylab.DiscreteCQL, policylab.DQNOffline):
        model = cls(hidden=(16,), seed=0).fit(dataset, 30)
        assert model.predict(obs[0]).shape == () and model.predict(obs[:5]).dtype.kind == "i"
    bc = policylab.BC(hidden=(32,), seed=0).fit(dataset, 400)
    assert (bc.predict(obs) == actions).mean() > 0.9


def test_d4rl_files_and_dicts(tmp_path):
    h5py = pytest.importorskip("h5py")
    obs, actions, rewards, terminals, timeouts = logged_reach(100)
    with h5py.File(tmp_path / "logged.hdf5", "w") as f:
        for key, value in dict(observations=obs, actions=actions, rewards=rewards, terminals=terminals,
                               timeouts=timeouts).items():
            f[key] = value
    from_file = policylab.Dataset.from_d4rl(tmp_path / "logged.hdf5")
    from_dict = policylab.Dataset.from_dict(dict(observations=obs, actions=actions, rewards=rewards,
                                                 terminals=terminals, timeouts=timeouts))
    assert from_file.metadata["name"] == "logged"
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        assert torch.equal(getattr(from_file, key), getattr(from_dict, key)), key
    with_next = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts,
                                              next_observations=np.roll(obs, -1, 0))
    assert len(with_next) == 100  # with successors given, no transition is dropped


def test_minari_datasets(tmp_path):
    pytest.importorskip("minari")
    from policylab.data.minari_io import export_minari

    obs, actions, rewards, terminals, timeouts = logged_reach(200)
    obs = np.concatenate([obs, np.zeros((200, 1), np.float32)], 1)  # Pendulum's 3 dimensions, for the env spec
    dataset = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts, env_id="Pendulum-v1",
                                            ref_min_score=-10.0, ref_max_score=0.0)
    export_minari(dataset, "user/reach-v0", root=tmp_path / "minari")
    back = policylab.Dataset.from_minari("user/reach-v0", root=tmp_path / "minari")
    assert torch.equal(back.observations, dataset.observations) and torch.equal(back.actions, dataset.actions)
    assert back.metadata["action_low"] == dataset.metadata["action_low"]  # the data's bounds travel with it
    model = policylab.TD3BC(hidden=(8,), batch_size=16).fit(back, 10)
    assert model.predict(obs[0]).shape == (1,)


def test_bad_datasets_get_one_line():
    obs, actions, rewards, terminals, timeouts = logged_reach(50)
    cases = [
        (dict(actions=actions[:-1]), "actions has 49 rows, observations has 50"),
        (dict(observations=np.where(np.arange(50)[:, None] == 7, np.nan, obs)),
         r"observations has a non-finite value \(NaN or inf\) at row 7"),
        (dict(rewards=np.full(50, np.inf)), "rewards has a non-finite value"),
        (dict(observations=obs[:, :, None]), r"observations has shape \(50, 2, 1\): expected \(n, obs_dim\)"),
        (dict(observations=np.array(["a"] * 50)), "observations: cannot be read as an array of numbers"),
        (dict(actions=-np.ones(50, np.int64)), "discrete actions count from 0"),
        (dict(actions=np.ones((50, 1), np.float32)), "action dimension 0 has low 1.0 >= high 1.0"),
    ]
    for change, message in cases:
        fields = dict(observations=obs, actions=actions, rewards=rewards, terminals=terminals, timeouts=timeouts)
        fields.update(change)
        with pytest.raises(DatasetError, match=message):
            policylab.Dataset.from_arrays(**fields)
    with pytest.raises(DatasetError, match="ref_min_score and ref_max_score come together"):
        policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts, ref_min_score=0.0)
    with pytest.raises(DatasetError, match="the dict lacks rewards"):
        policylab.Dataset.from_dict({"observations": obs, "actions": actions, "terminals": terminals})
    model = policylab.BC(hidden=(8,))
    with pytest.raises(Exception, match="not fitted yet"):
        model.predict(obs[0])
    model.fit(policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts), 5)
    with pytest.raises(Exception, match=r"obs has shape \(3,\)"):
        model.predict(np.zeros(3))
    with pytest.raises(Exception, match="not an offline algorithm the Python API can drive"):
        policylab.model_class("mbrcsl")


LOAD_PROGRAM = """
import sys, numpy as np, policylab
model = policylab.OfflineAlgorithm.load(sys.argv[1])
print(type(model).__name__, repr(model.predict(np.array([[0.5, 0.2]], np.float32)).tolist()))
"""


def test_any_saved_model_loads_by_its_file_alone(tmp_path):
    obs, actions, rewards, terminals, timeouts = logged_reach(200)
    dataset = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts)
    model = policylab.RCSL(hidden=(8,)).fit(dataset, 20)
    path = model.save(tmp_path / "rcsl.pt")
    proc = subprocess.run([sys.executable, "-c", LOAD_PROGRAM, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, values = proc.stdout.split(" ", 1)
    assert name == "RCSL" and eval(values) == model.predict(np.array([[0.5, 0.2]], np.float32)).tolist()
