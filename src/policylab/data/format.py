"""One offline dataset structure: Minari's episode schema, stored as Parquet + a JSON sidecar.

On disk, `<name>.parquet` holds one row per time step, T + 1 rows per episode of T transitions:
row t carries `observation` s_t and, for t < T, `action` a_t, `reward` r_t, `termination` and
`truncation`; the episode's last row carries only s_T (the rest is null). So observations have one
more entry than actions, as in Minari, and a truncated episode keeps its true final observation
for the bootstrap. `<name>.json` holds the metadata (env id, behaviour policy and its return,
seeds, builder version, `ref_min_score` / `ref_max_score`) and the Parquet file's sha256.

In memory, `load_dataset` flattens it once into contiguous tensors of transitions
(`observations`, `actions`, `rewards`, `next_observations`, `terminals`, `timeouts`) plus episode
boundaries, after validating schema, dtypes, finiteness, episode boundaries and the metadata.
Terminations are true terminations only; a truncation (time limit) keeps the bootstrap.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policylab.core.atomic import atomic_write_bytes, atomic_write_json
from policylab.core.errors import PolicylabError
from policylab.core.provenance import record_dataset

FORMAT = "policylab-dataset-v1"
COLUMNS = ("episode_id", "step", "observation", "action", "reward", "termination", "truncation")
REQUIRED_METADATA = ("format", "env_id", "observation_dim", "action_dim", "action_type", "num_episodes",
                     "num_transitions", "ref_min_score", "ref_max_score", "sha256")


class DatasetError(PolicylabError):
    """A dataset file that is missing, damaged or inconsistent."""


@dataclass
class Episode:
    observations: np.ndarray
    """[T + 1, obs_dim]."""
    actions: np.ndarray
    """[T, act_dim] float32, or [T] int64 for discrete actions."""
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray

    def __post_init__(self) -> None:
        T = len(self.actions)
        if len(self.observations) != T + 1:
            raise DatasetError(f"an episode needs one more observation than actions, got {len(self.observations)} "
                               f"observations and {T} actions")
        for name in ("rewards", "terminations", "truncations"):
            if len(getattr(self, name)) != T:
                raise DatasetError(f"episode {name} has {len(getattr(self, name))} entries for {T} actions")

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def ret(self) -> float:
        return float(np.sum(self.rewards))


@dataclass
class OfflineData:
    """A dataset flattened into transitions; every tensor is contiguous and indexed by transition."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    """1.0 where the transition ends in a true termination (no bootstrap)."""
    timeouts: torch.Tensor
    """1.0 where the episode was truncated after this transition (bootstrap kept)."""
    episode_starts: torch.Tensor
    """[E + 1] index of each episode's first transition, and the total at the end."""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.rewards.shape[0]

    # -- the Python API's constructors (`policylab.Dataset` is this class; see data/arrays.py) --
    @classmethod
    def from_arrays(cls, observations: Any, actions: Any, rewards: Any, terminals: Any, timeouts: Any = None,
                    **metadata: Any) -> OfflineData:
        """D4RL-style flat arrays, one row per transition (`data.arrays.from_arrays` documents the fields)."""
        from policylab.data.arrays import from_arrays

        return from_arrays(observations, actions, rewards, terminals, timeouts, **metadata)

    @classmethod
    def from_dict(cls, d: dict[str, Any], **metadata: Any) -> OfflineData:
        from policylab.data.arrays import from_dict

        return from_dict(d, **metadata)

    @classmethod
    def from_d4rl(cls, path: str | Path, **metadata: Any) -> OfflineData:
        """A D4RL `.hdf5` or `.npz` file."""
        from policylab.data.arrays import from_d4rl

        return from_d4rl(path, **metadata)

    @classmethod
    def from_minari(cls, dataset_id_or_path: str | Path, **kwargs: Any) -> OfflineData:
        """A local Minari dataset, by id (under `root=` or Minari's data folder) or by directory."""
        from policylab.data.arrays import from_minari

        return from_minari(dataset_id_or_path, **kwargs)

    @classmethod
    def load(cls, path: str | Path) -> OfflineData:
        """A policylab dataset file (`<name>.parquet` + `<name>.json`)."""
        return load_dataset(path)

    @property
    def num_episodes(self) -> int:
        return self.episode_starts.shape[0] - 1

    @property
    def episode_ids(self) -> torch.Tensor:
        lengths = self.episode_starts[1:] - self.episode_starts[:-1]
        return torch.repeat_interleave(torch.arange(self.num_episodes), lengths)

    def episode_returns(self) -> torch.Tensor:
        sums = torch.zeros(self.num_episodes, dtype=torch.float64)
        return sums.index_add_(0, self.episode_ids, self.rewards.double())

    @property
    def has_reference_scores(self) -> bool:
        return self.metadata.get("ref_min_score") is not None and self.metadata.get("ref_max_score") is not None

    def normalized_score(self, ret: float | np.ndarray) -> np.ndarray:
        if not self.has_reference_scores:
            raise DatasetError(f"dataset {self.metadata.get('name', '?')!r} has no ref_min_score / ref_max_score, "
                               "so it has no normalized score")
        lo, hi = self.metadata["ref_min_score"], self.metadata["ref_max_score"]
        return 100.0 * (np.asarray(ret, dtype=np.float64) - lo) / (hi - lo)

    @property
    def discrete(self) -> bool:
        return self.metadata.get("action_type") == "discrete"

    def select_episodes(self, keep: torch.Tensor) -> OfflineData:
        """The episodes where `keep` [E] is true, in order, as a dataset of their own."""
        if keep.shape != (self.num_episodes,) or not keep.any():
            raise DatasetError(f"select_episodes needs a boolean mask over the {self.num_episodes} episodes with at "
                               "least one episode kept")
        rows = keep[self.episode_ids]
        lengths = (self.episode_starts[1:] - self.episode_starts[:-1])[keep]
        starts = torch.cat([torch.zeros(1, dtype=lengths.dtype), torch.cumsum(lengths, 0)])
        return OfflineData(*(t[rows].contiguous() for t in (self.observations, self.actions, self.rewards,
                                                             self.next_observations, self.terminals, self.timeouts)),
                           episode_starts=starts, metadata=dict(self.metadata))


# -- writing -------------------------------------------------------------------------------------

def _table(episodes: list[Episode]):
    import pyarrow as pa

    if not episodes:
        raise DatasetError("a dataset needs at least one episode")
    obs_dim = episodes[0].observations.shape[1]
    discrete = episodes[0].actions.ndim == 1
    act_dim = 1 if discrete else episodes[0].actions.shape[1]
    ids, steps, obs, acts, rews, terms, truncs, valid = [], [], [], [], [], [], [], []
    for e, ep in enumerate(episodes):
        T = ep.length
        ids.append(np.full(T + 1, e, dtype=np.int64))
        steps.append(np.arange(T + 1, dtype=np.int64))
        obs.append(np.asarray(ep.observations, dtype=np.float32).reshape(T + 1, obs_dim))
        pad_a = np.zeros((1,) if discrete else (1, act_dim), dtype=np.int64 if discrete else np.float32)
        acts.append(np.concatenate([np.asarray(ep.actions, dtype=pad_a.dtype), pad_a]))
        rews.append(np.concatenate([np.asarray(ep.rewards, dtype=np.float32), [0.0]]).astype(np.float32))
        terms.append(np.concatenate([np.asarray(ep.terminations, dtype=bool), [False]]))
        truncs.append(np.concatenate([np.asarray(ep.truncations, dtype=bool), [False]]))
        valid.append(np.concatenate([np.ones(T, dtype=bool), [False]]))
    mask = ~np.concatenate(valid)  # the final row of each episode holds only its last observation
    obs_flat = np.concatenate(obs)
    act_flat = np.concatenate(acts)
    obs_col = pa.FixedSizeListArray.from_arrays(pa.array(obs_flat.reshape(-1)), obs_dim)
    if discrete:
        act_col = pa.array(act_flat, mask=mask)
    else:
        act_col = pa.FixedSizeListArray.from_arrays(pa.array(act_flat.reshape(-1)), act_dim, mask=pa.array(mask))
    return pa.table({
        "episode_id": np.concatenate(ids), "step": np.concatenate(steps), "observation": obs_col,
        "action": act_col, "reward": pa.array(np.concatenate(rews), mask=mask),
        "termination": pa.array(np.concatenate(terms), mask=mask),
        "truncation": pa.array(np.concatenate(truncs), mask=mask),
    }), obs_dim, act_dim, discrete


def dataset_paths(path: str | Path) -> tuple[Path, Path]:
    """`<stem>.parquet` and `<stem>.json` for a path given with or without a suffix."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".parquet", ".json") else path
    return stem.with_suffix(".parquet"), stem.with_suffix(".json")


def save_dataset(path: str | Path, episodes: list[Episode], metadata: dict[str, Any]) -> Path:
    """Write the Parquet file and then its sidecar, each atomically; the sidecar names the data's hash."""
    import pyarrow.parquet as pq

    for key in ("env_id", "ref_min_score", "ref_max_score"):
        if key not in metadata:
            raise DatasetError(f"dataset metadata needs {key!r}")
    table, obs_dim, act_dim, discrete = _table(episodes)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue()
    parquet_path, json_path = dataset_paths(path)
    atomic_write_bytes(parquet_path, data)
    meta = {**metadata, "format": FORMAT, "observation_dim": obs_dim, "action_dim": act_dim,
            "action_type": "discrete" if discrete else "continuous",
            "num_episodes": len(episodes), "num_transitions": int(sum(e.length for e in episodes)),
            "returns": {"mean": float(np.mean([e.ret for e in episodes])),
                        "min": float(np.min([e.ret for e in episodes])),
                        "max": float(np.max([e.ret for e in episodes]))},
            "sha256": hashlib.sha256(data).hexdigest()}
    if discrete:
        meta.setdefault("num_actions", int(max(int(e.actions.max()) for e in episodes if e.length) + 1))
    atomic_write_json(json_path, meta)
    return parquet_path


# -- reading -------------------------------------------------------------------------------------

def read_metadata(path: str | Path) -> dict[str, Any]:
    parquet_path, json_path = dataset_paths(path)
    if not json_path.exists():
        raise DatasetError(f"dataset metadata {json_path} does not exist")
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"dataset metadata {json_path} is not valid JSON ({err.msg if hasattr(err, 'msg') else err})"
                           ) from None
    if not isinstance(meta, dict):
        raise DatasetError(f"dataset metadata {json_path} is {type(meta).__name__} JSON ({json.dumps(meta)[:40]}), "
                           "not an object of metadata fields")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise DatasetError(f"dataset metadata {json_path} lacks {', '.join(missing)}")
    if meta["format"] != FORMAT:
        raise DatasetError(f"dataset metadata {json_path} has format {meta['format']!r}, expected {FORMAT!r}")
    lo, hi = meta["ref_min_score"], meta["ref_max_score"]
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and math.isfinite(lo)
            and math.isfinite(hi) and hi > lo):
        raise DatasetError(f"dataset metadata {json_path}: ref_max_score ({hi}) must be a number above "
                           f"ref_min_score ({lo})")
    return meta


def _column(table, name: str, path: Path):
    if name not in table.column_names:
        raise DatasetError(f"dataset {path}: column {name!r} is missing (columns: {', '.join(table.column_names)})")
    return table.column(name).combine_chunks()


def load_dataset(path: str | Path) -> OfflineData:
    """Validate and flatten a dataset into contiguous transition tensors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet_path, _ = dataset_paths(path)
    meta = read_metadata(path)
    if not parquet_path.exists():
        raise DatasetError(f"dataset file {parquet_path} does not exist")
    data = parquet_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise DatasetError(f"dataset {parquet_path} does not match the sha256 in its metadata: the file was "
                           "changed or damaged; rebuild it")
    record_dataset(parquet_path.stem, meta["sha256"])
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(f"dataset {parquet_path} cannot be read as Parquet: {str(err).splitlines()[0]}") from None
    cols = {name: _column(table, name, parquet_path) for name in COLUMNS}
    obs_dim, act_dim = meta["observation_dim"], meta["action_dim"]
    discrete = meta["action_type"] == "discrete"
    obs_type = cols["observation"].type
    if not (pa.types.is_fixed_size_list(obs_type) and obs_type.list_size == obs_dim
            and pa.types.is_floating(obs_type.value_type)):
        raise DatasetError(f"dataset {parquet_path}: column 'observation' has type {obs_type}, expected "
                           f"fixed_size_list<float>[{obs_dim}]")
    act_type = cols["action"].type
    if discrete and not pa.types.is_integer(act_type):
        raise DatasetError(f"dataset {parquet_path}: column 'action' has type {act_type}, expected integers "
                           "for discrete actions")
    if not discrete and not (pa.types.is_fixed_size_list(act_type) and act_type.list_size == act_dim):
        raise DatasetError(f"dataset {parquet_path}: column 'action' has type {act_type}, expected "
                           f"fixed_size_list<float>[{act_dim}]")
    episode_id = cols["episode_id"].to_numpy()
    step = cols["step"].to_numpy()
    obs = cols["observation"].values.to_numpy(zero_copy_only=False).reshape(-1, obs_dim).astype(np.float32)
    valid = cols["action"].is_valid().to_numpy(zero_copy_only=False)
    # episode boundaries: ids in blocks, steps 0..T within each, exactly the last row without an action
    if len(episode_id) == 0:
        raise DatasetError(f"dataset {parquet_path} has no rows")
    starts = np.flatnonzero(np.r_[True, episode_id[1:] != episode_id[:-1]])
    if len(np.unique(episode_id)) != len(starts):
        raise DatasetError(f"dataset {parquet_path}: column 'episode_id' is not in contiguous blocks")
    ends = np.r_[starts[1:], len(episode_id)]
    expected_step = np.arange(len(step)) - np.repeat(starts, ends - starts)
    if not np.array_equal(step, expected_step):
        bad = int(np.flatnonzero(step != expected_step)[0])
        raise DatasetError(f"dataset {parquet_path}: column 'step' is {step[bad]} at row {bad}, expected "
                           f"{expected_step[bad]} (steps must count 0..T within each episode)")
    last_row = np.zeros(len(step), dtype=bool)
    last_row[ends - 1] = True
    if np.any(valid == last_row):
        bad = int(np.flatnonzero(valid == last_row)[0])
        raise DatasetError(f"dataset {parquet_path}: row {bad} of episode {episode_id[bad]} "
                           + ("carries an action after the final observation" if valid[bad]
                              else "has no action before the episode's end"))
    rows = np.flatnonzero(valid)
    if discrete:
        actions = cols["action"].to_numpy(zero_copy_only=False)[rows].astype(np.int64)
    else:
        actions = cols["action"].values.to_numpy(zero_copy_only=False).reshape(-1, act_dim)[rows].astype(np.float32)
    rewards = cols["reward"].to_numpy(zero_copy_only=False)[rows].astype(np.float32)
    terminations = cols["termination"].to_numpy(zero_copy_only=False)[rows].astype(bool)
    truncations = cols["truncation"].to_numpy(zero_copy_only=False)[rows].astype(bool)
    for name, values in (("observation", obs), ("reward", rewards)) + (() if discrete else (("action", actions),)):
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(-1))[0])
            raise DatasetError(f"dataset {parquet_path}: column {name!r} has a non-finite value at row {bad}")
    last_transition = np.zeros(len(rows), dtype=bool)
    episode_lengths = ends - starts - 1
    transition_starts = np.r_[0, np.cumsum(episode_lengths)]
    last_transition[transition_starts[1:] - 1] = True
    inner = (terminations | truncations) & ~last_transition
    if inner.any():
        bad = int(np.flatnonzero(inner)[0])
        raise DatasetError(f"dataset {parquet_path}: a termination or truncation inside an episode (transition {bad});"
                           " episodes end at their last transition")
    if not np.all((terminations | truncations)[last_transition]):
        bad = int(np.flatnonzero(~(terminations | truncations) & last_transition)[0])
        raise DatasetError(f"dataset {parquet_path}: the episode ending at transition {bad} is neither terminated "
                           "nor truncated")
    if len(starts) != meta["num_episodes"] or len(rows) != meta["num_transitions"]:
        raise DatasetError(f"dataset {parquet_path}: metadata says {meta['num_episodes']} episodes and "
                           f"{meta['num_transitions']} transitions, the file has {len(starts)} and {len(rows)}")
    next_obs = obs[rows + 1]  # the row after a transition holds s_{t+1}, the final observation included
    return OfflineData(
        observations=torch.from_numpy(np.ascontiguousarray(obs[rows])),
        actions=torch.from_numpy(np.ascontiguousarray(actions)),
        rewards=torch.from_numpy(rewards),
        next_observations=torch.from_numpy(np.ascontiguousarray(next_obs)),
        terminals=torch.from_numpy(terminations.astype(np.float32)),
        timeouts=torch.from_numpy(truncations.astype(np.float32)),
        episode_starts=torch.from_numpy(transition_starts.astype(np.int64)),
        metadata=meta,
    )


def episodes_of(data: OfflineData) -> list[Episode]:
    """Back to episodes (for export, mixtures and trajectory-level methods)."""
    out = []
    starts = data.episode_starts.tolist()
    for lo, hi in zip(starts[:-1], starts[1:]):
        obs = torch.cat([data.observations[lo:hi], data.next_observations[hi - 1:hi]]).numpy()
        out.append(Episode(obs, data.actions[lo:hi].numpy(), data.rewards[lo:hi].numpy(),
                           data.terminals[lo:hi].numpy().astype(bool), data.timeouts[lo:hi].numpy().astype(bool)))
    return out
