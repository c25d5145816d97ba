"""The dataset format: round trips, transitions, validation errors, D4RL importers, samplers."""

import json

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.data import (
    DatasetError,
    Episode,
    TrajectorySegments,
    UniformTransitions,
    episodes_from_d4rl,
    episodes_of,
    import_d4rl,
    load_dataset,
    save_dataset,
)
from policylab.data.format import dataset_paths

META = {"env_id": "Toy-v0", "ref_min_score": -10.0, "ref_max_score": 10.0}


def episode(T, obs_dim=3, act_dim=2, terminated=False, seed=0, discrete=False):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T + 1, obs_dim)).astype(np.float32)
    actions = rng.integers(0, 3, size=T) if discrete else rng.normal(size=(T, act_dim)).astype(np.float32)
    done = np.zeros(T, dtype=bool)
    trunc = np.zeros(T, dtype=bool)
    (done if terminated else trunc)[-1] = True
    return Episode(obs, actions, rng.normal(size=T).astype(np.float32), done, trunc)


@pytest.fixture
def eps():
    return [episode(4, terminated=True, seed=1), episode(3, seed=2), episode(5, terminated=True, seed=3)]


def test_round_trip_and_transitions(tmp_path, eps):
    path = save_dataset(tmp_path / "toy", eps, META)
    data = load_dataset(path)
    assert len(data) == 12 and data.num_episodes == 3
    assert data.episode_starts.tolist() == [0, 4, 7, 12]
    assert all(t.is_contiguous() for t in (data.observations, data.actions, data.next_observations))
    # next observation of the last transition of episode 1 is its final observation (bootstrap kept)
    assert torch.equal(data.next_observations[6], torch.from_numpy(eps[1].observations[-1]))
    assert torch.equal(data.observations[4], torch.from_numpy(eps[1].observations[0]))
    assert data.terminals.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert data.timeouts.tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert torch.allclose(data.episode_returns().float(), torch.tensor([e.ret for e in eps]), atol=1e-5)
    for a, b in zip(episodes_of(data), eps):
        assert np.array_equal(a.observations, b.observations) and np.array_equal(a.actions, b.actions)
    meta = data.metadata
    assert meta["num_transitions"] == 12 and meta["observation_dim"] == 3 and meta["action_type"] == "continuous"
    assert data.normalized_score(0.0) == pytest.approx(50.0)


def test_discrete_actions_round_trip(tmp_path):
    eps = [episode(4, discrete=True, seed=s) for s in range(3)]
    data = load_dataset(save_dataset(tmp_path / "d", eps, META))
    assert data.discrete and data.actions.dtype == torch.int64 and data.actions.shape == (12,)
    assert data.metadata["num_actions"] == max(int(e.actions.max()) for e in eps) + 1


def corrupt(tmp_path, eps, change_meta=None, change_table=None):
    import io

    import pyarrow.parquet as pq

    path = save_dataset(tmp_path / "bad", eps, META)
    parquet, sidecar = dataset_paths(path)
    meta = json.loads(sidecar.read_text())
    if change_table:
        table = change_table(pq.read_table(parquet))
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        parquet.write_bytes(buffer.getvalue())
        import hashlib

        meta["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    if change_meta:
        change_meta(meta)
    sidecar.write_text(json.dumps(meta))
    return path


def test_damaged_bytes_are_caught_by_the_hash(tmp_path, eps):
    path = save_dataset(tmp_path / "toy", eps, META)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="does not match the sha256"):
        load_dataset(path)


@pytest.mark.parametrize("change,pattern", [
    (lambda m: m.pop("ref_max_score"), "lacks ref_max_score"),
    (lambda m: m.update(ref_max_score=-20.0), r"ref_max_score \(-20.0\) must be a number above"),
    (lambda m: m.update(format="other"), "has format 'other'"),
    (lambda m: m.update(num_episodes=5), "metadata says 5 episodes"),
])
def test_bad_metadata(tmp_path, eps, change, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(corrupt(tmp_path, eps, change_meta=change))


def test_bad_tables_name_the_column(tmp_path, eps):
    import pyarrow as pa

    with pytest.raises(DatasetError, match="column 'reward' is missing"):
        load_dataset(corrupt(tmp_path, eps, change_table=lambda t: t.drop(["reward"])))

    def shuffle_steps(t):
        steps = t.column("step").to_numpy().copy()
        steps[1], steps[2] = steps[2], steps[1]
        return t.set_column(t.column_names.index("step"), "step", pa.array(steps))

    with pytest.raises(DatasetError, match="column 'step' is 2 at row 1"):
        load_dataset(corrupt(tmp_path, eps, change_table=shuffle_steps))

    def nan_reward(t):
        rewards = t.column("reward").to_numpy(zero_copy_only=False).copy()
        rewards[1] = np.nan
        mask = ~t.column("reward").is_valid().to_numpy(zero_copy_only=False)
        return t.set_column(t.column_names.index("reward"), "reward", pa.array(rewards, mask=mask))

    with pytest.raises(DatasetError, match="column 'reward' has a non-finite value"):
        load_dataset(corrupt(tmp_path, eps, change_table=nan_reward))


def test_episode_boundaries_are_checked(tmp_path):
    inner = episode(4, seed=0)
    inner.terminations[1] = True
    with pytest.raises(DatasetError, match="termination or truncation inside an episode"):
        load_dataset(save_dataset(tmp_path / "a", [inner], META))
    open_end = episode(4, seed=0)
    open_end.truncations[-1] = False
    with pytest.raises(DatasetError, match="neither terminated nor truncated"):
        load_dataset(save_dataset(tmp_path / "b", [open_end], META))
    with pytest.raises(DatasetError, match="one more observation than actions"):
        Episode(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros(3), np.zeros(3, bool), np.zeros(3, bool))


def test_d4rl_import_keeps_terminals_and_timeouts_apart(tmp_path):
    n = 10
    obs = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    d = {"observations": obs, "next_observations": obs + 100, "actions": np.ones((n, 1), np.float32),
         "rewards": np.arange(n, dtype=np.float32), "terminals": np.zeros(n), "timeouts": np.zeros(n)}
    d["terminals"][3] = 1
    d["timeouts"][6] = 1  # and the file ends mid-episode after transition 9
    eps = episodes_from_d4rl(d)
    assert [e.length for e in eps] == [4, 3, 3]
    assert eps[0].terminations[-1] and eps[1].truncations[-1] and eps[2].truncations[-1]
    assert np.array_equal(eps[1].observations[-1], obs[6] + 100)
    without_next = episodes_from_d4rl({k: v for k, v in d.items() if k != "next_observations"})
    assert [e.length for e in without_next] == [3, 2, 2]  # the last transition of each has no successor
    np.savez(tmp_path / "d4rl.npz", **d)
    data = load_dataset(import_d4rl(tmp_path / "d4rl.npz", tmp_path / "imported", META))
    assert len(data) == 10 and data.terminals[3] == 1 and data.timeouts[6] == 1 and data.timeouts[9] == 1
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d4rl.hdf5", "w") as f:
        for k, v in d.items():
            f[k] = v
    again = load_dataset(import_d4rl(tmp_path / "d4rl.hdf5", tmp_path / "imported2", META))
    assert torch.equal(again.next_observations, data.next_observations)
    with pytest.raises(DatasetError, match="lacks rewards"):
        episodes_from_d4rl({k: v for k, v in d.items() if k != "rewards"})


def test_samplers(tmp_path, eps):
    data = load_dataset(save_dataset(tmp_path / "toy", eps, META))
    a, b = UniformTransitions(data, 64, seed=3), UniformTransitions(data, 64, seed=3)
    first = a.sample()
    assert first["observations"].shape == (64, 3) and torch.equal(first["actions"], b.sample()["actions"])
    state = a.state_dict()
    x = a.sample()
    a.load_state_dict(state)
    assert torch.equal(a.sample()["rewards"], x["rewards"])
    seg = TrajectorySegments(data, 256, length=3, seed=0).sample()
    assert seg["observations"].shape == (256, 3, 3) and seg["mask"].shape == (256, 3)
    # a window never leaves its episode: consecutive valid steps chain s' -> s
    valid = seg["mask"][:, 1:] > 0
    chained = (seg["next_observations"][:, :-1] == seg["observations"][:, 1:]).all(-1)
    assert chained[valid].all() and (seg["mask"] == 0).any()
    with pytest.raises(ConfigError, match="length = 0"):
        TrajectorySegments(data, 8, length=0)
    with pytest.raises(ConfigError, match="batch_size = 0"):
        UniformTransitions(data, 0)
    with pytest.raises(ConfigError, match="subset .* is empty"):
        UniformTransitions(data, 8, subset=torch.zeros(0, dtype=torch.long))
