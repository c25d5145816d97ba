"""Minari import/export: exact round trips (continuous and discrete), metadata carried, clear errors."""

import numpy as np
import pytest
import torch

minari = pytest.importorskip("minari")

from policylab.data import DatasetError, Episode, load_dataset, save_dataset  # noqa: E402
from policylab.data.minari_io import export_minari, import_minari  # noqa: E402


def episode(T, obs_dim, terminated, seed, discrete=False, act_dim=1):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T + 1, obs_dim)).astype(np.float32)
    actions = (rng.integers(0, 2, size=T) if discrete
               else rng.uniform(-2, 2, size=(T, act_dim)).astype(np.float32))
    done, trunc = np.zeros(T, dtype=bool), np.zeros(T, dtype=bool)
    (done if terminated else trunc)[-1] = True
    return Episode(obs, actions, rng.normal(size=T).astype(np.float32), done, trunc)


def assert_same(a, b):
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                 "episode_starts"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name


@pytest.mark.parametrize("env_id, obs_dim, discrete", [("Pendulum-v1", 3, False), ("CartPole-v1", 4, True)])
def test_round_trip_is_exact(tmp_path, env_id, obs_dim, discrete):
    eps = [episode(5, obs_dim, terminated=True, seed=1, discrete=discrete),
           episode(3, obs_dim, terminated=False, seed=2, discrete=discrete),
           episode(7, obs_dim, terminated=True, seed=3, discrete=discrete)]
    meta = {"env_id": env_id, "ref_min_score": -1234.5, "ref_max_score": -150.25, "kind": "hand-made",
            "seeds": {"envs": 7}}
    original = load_dataset(save_dataset(tmp_path / "orig", eps, meta))

    exported = export_minari(tmp_path / "orig", "policylab/toy-v0", root=tmp_path / "minari")
    assert (tmp_path / "minari" / "policylab" / "toy-v0" / "data").is_dir()
    assert exported.total_episodes == 3 and exported.total_steps == 15
    assert exported.env_spec.id == env_id
    ep = exported[1]  # Minari's own view: truncated episode keeps its final observation
    assert ep.truncations[-1] and not ep.terminations.any() and len(ep.observations) == 4
    assert minari.get_normalized_score(exported, np.array([-150.25])) == pytest.approx(1.0)

    path = import_minari("policylab/toy-v0", tmp_path / "back", root=tmp_path / "minari")
    back = load_dataset(path)
    assert_same(original, back)
    assert back.metadata["ref_min_score"] == -1234.5 and back.metadata["ref_max_score"] == -150.25
    assert back.metadata["env_id"] == env_id and back.metadata["source"] == "minari:policylab/toy-v0"
    assert back.metadata["kind"] == "hand-made" and back.metadata["seeds"] == {"envs": 7}
    assert back.discrete == discrete

    # the same dataset read by directory, and exported from an in-memory OfflineData
    assert_same(original, load_dataset(import_minari(exported.storage.data_path.parent, tmp_path / "by_dir")))
    export_minari(original, "toy-v1", root=tmp_path / "minari")
    assert_same(original, load_dataset(import_minari("toy-v1", tmp_path / "v1", root=tmp_path / "minari")))


def test_unknown_env_keeps_data_spaces_and_refs(tmp_path):
    eps = [episode(4, 2, terminated=True, seed=4, act_dim=3)]
    data = load_dataset(save_dataset(tmp_path / "d", eps, {"env_id": "NotAnEnv-v0", "ref_min_score": 0.0,
                                                           "ref_max_score": 1.0}))
    exported = export_minari(data, "unknown-v0", root=tmp_path)
    assert exported.env_spec is None and exported.action_space.shape == (3,)
    back = load_dataset(import_minari("unknown-v0", tmp_path / "back", root=tmp_path))
    assert_same(data, back)
    assert back.metadata["env_id"] == "NotAnEnv-v0"


def test_unsupported_observation_space_errors(tmp_path):
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    obs_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,), np.float32)})
    buffer = EpisodeBuffer(observations={"pos": np.zeros((3, 2), np.float32)}, actions=np.zeros((2, 1), np.float32),
                           rewards=[0.0, 1.0], terminations=[False, True], truncations=[False, False])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tmp_path))
        with pytest.warns(UserWarning):
            minari.create_dataset_from_buffers("dicty-v0", [buffer], observation_space=obs_space,
                                               action_space=gym.spaces.Box(-1, 1, (1,), np.float32),
                                               data_format="arrow")
    with pytest.raises(DatasetError, match=r"observation space Dict\('pos'.*not supported"):
        import_minari("dicty-v0", tmp_path / "out", root=tmp_path)


def test_clear_errors(tmp_path):
    save_dataset(tmp_path / "d", [episode(2, 3, terminated=True, seed=5)],
                 {"env_id": "Pendulum-v1", "ref_min_score": 0.0, "ref_max_score": 1.0})
    export_minari(tmp_path / "d", "dup-v0", root=tmp_path / "m")
    with pytest.raises(DatasetError, match="already exists"):
        export_minari(tmp_path / "d", "dup-v0", root=tmp_path / "m")
    with pytest.raises(DatasetError, match="never downloads"):
        import_minari("missing-v0", tmp_path / "out", root=tmp_path / "m")
    save_dataset(tmp_path / "wide", [episode(2, 5, terminated=True, seed=6)],
                 {"env_id": "Pendulum-v1", "ref_min_score": 0.0, "ref_max_score": 1.0})
    with pytest.raises(DatasetError, match="5-dim observations"):
        export_minari(tmp_path / "wide", "wide-v0", root=tmp_path / "m")


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    """The dataset is built in a staging folder and renamed into place: a crash mid-export leaves neither
    a half-written dataset under its id nor the staging folder."""
    meta = {"env_id": "Pendulum-v1", "ref_min_score": -1.0, "ref_max_score": 0.0}
    save_dataset(tmp_path / "orig", [episode(4, 3, terminated=True, seed=1)], meta)
    real = minari.create_dataset_from_buffers

    def crash_after_writing(*args, **kwargs):
        real(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(minari, "create_dataset_from_buffers", crash_after_writing)
    with pytest.raises(OSError, match="disk full"):
        export_minari(tmp_path / "orig", "toy-v0", root=tmp_path / "minari")
    assert list((tmp_path / "minari").iterdir()) == []
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real)
    exported = export_minari(tmp_path / "orig", "toy-v0", root=tmp_path / "minari")
    assert exported.total_episodes == 1 and [p.name for p in (tmp_path / "minari").iterdir()] == ["toy-v0"]
