"""Datasets from memory: numpy arrays, a D4RL-style dict, a D4RL file or a Minari dataset, no simulator needed.

`OfflineData.from_arrays(observations, actions, rewards, terminals, timeouts)` takes D4RL's flat layout:
row i is one transition, episodes end where `terminals` (a true end, no bootstrap) or `timeouts` (a time
limit, bootstrap kept) is set, and arrays that stop mid-episode end in a truncation. Without
`next_observations`, the successor of row i is row i + 1; a truncated episode's last transition, whose
successor is unknown, is dropped (as D4RL's `qlearning_dataset` does), and a terminated one is kept (its
successor is never bootstrapped from). Pass `next_observations` to keep every row.

The metadata records what an algorithm needs without an env: the action bounds (given, or the data's
per-dimension min and max) and, only when given, the env id and the reference scores that make
normalized scores. Every array is checked: one line names the array, the row and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from policylab.data.format import DatasetError, Episode, OfflineData
from policylab.data.importers import episodes_from_d4rl, read_d4rl_file


def _array(name: str, value: Any, dtype: Any = None) -> np.ndarray:
    try:
        array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{name}: cannot be read as an array of numbers ({err})") from None
    if array.dtype.kind not in "biuf":
        raise DatasetError(f"{name} has dtype {array.dtype}: expected numbers")
    return array


def _check_finite(name: str, array: np.ndarray) -> None:
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        flat = ~np.isfinite(array.reshape(len(array), -1)).all(-1)
        raise DatasetError(f"{name} has a non-finite value (NaN or inf) at row {int(np.flatnonzero(flat)[0])}")


def from_arrays(observations: Any, actions: Any, rewards: Any, terminals: Any, timeouts: Any = None, *,
                next_observations: Any = None, action_low: Any = None, action_high: Any = None,
                num_actions: int | None = None, env_id: str | None = None, ref_min_score: float | None = None,
                ref_max_score: float | None = None, name: str = "arrays") -> OfflineData:
    """A dataset from D4RL-style flat arrays (see the module docstring). Integer actions of shape [n] are
    discrete (`num_actions` defaults to the largest seen + 1); float actions are continuous."""
    obs = _array("observations", observations, np.float32)
    if obs.ndim != 2:
        raise DatasetError(f"observations has shape {obs.shape}: expected (n, obs_dim), one flat observation per row")
    n = len(obs)
    if n == 0:
        raise DatasetError("observations is empty: a dataset needs at least one transition")
    act = _array("actions", actions)
    columns = {"observations": obs, "actions": act, "rewards": _array("rewards", rewards, np.float32),
               "terminals": _array("terminals", terminals), "timeouts": _array(
                   "timeouts", np.zeros(n) if timeouts is None else timeouts)}
    if next_observations is not None:
        columns["next_observations"] = _array("next_observations", next_observations, np.float32)
        if columns["next_observations"].shape != obs.shape:
            raise DatasetError(f"next_observations has shape {columns['next_observations'].shape}, observations "
                               f"{obs.shape}: they must match")
    for key, value in columns.items():
        if len(value) != n:
            raise DatasetError(f"{key} has {len(value)} rows, observations has {n}: every array needs one row per "
                               "transition")
        _check_finite(key, value)
    for key in ("rewards", "terminals", "timeouts"):
        if columns[key].ndim > 1 and columns[key].size != n:
            raise DatasetError(f"{key} has shape {columns[key].shape}: expected ({n},), one number per transition")
    discrete = act.dtype.kind in "biu"
    if discrete:
        if act.ndim != 1 and act.shape[1:] != (1,):
            raise DatasetError(f"actions has integer dtype and shape {act.shape}: discrete actions need shape ({n},)")
        if act.min() < 0:
            raise DatasetError(f"actions has {int(act.min())} at row {int(np.argmin(act))}: discrete actions count "
                               "from 0")
    elif act.ndim == 1:
        columns["actions"] = act.reshape(n, 1)
    elif act.ndim != 2:
        raise DatasetError(f"actions has shape {act.shape}: expected (n, action_dim) floats or (n,) integers")
    if "next_observations" not in columns:
        columns = _with_successors(columns)
    episodes = episodes_from_d4rl(columns)
    meta: dict[str, Any] = {"name": name, "builder": "from_arrays"}
    if env_id is not None:
        meta["env_id"] = env_id
    if (ref_min_score is None) != (ref_max_score is None):
        raise DatasetError("ref_min_score and ref_max_score come together: give both or neither")
    if ref_min_score is not None:
        if not float(ref_max_score) > float(ref_min_score):
            raise DatasetError(f"ref_max_score ({ref_max_score}) must be above ref_min_score ({ref_min_score})")
        meta.update(ref_min_score=float(ref_min_score), ref_max_score=float(ref_max_score))
    if discrete:
        seen = int(act.max()) + 1
        if num_actions is not None and num_actions < seen:
            raise DatasetError(f"num_actions = {num_actions} is not allowed: actions go up to {seen - 1}")
        meta["num_actions"] = int(num_actions or seen)
    else:
        flat = columns["actions"].astype(np.float64)
        low = flat.min(0) if action_low is None else np.broadcast_to(np.asarray(action_low, np.float64), flat.shape[1:])
        high = flat.max(0) if action_high is None else np.broadcast_to(np.asarray(action_high, np.float64),
                                                                       flat.shape[1:])
        if np.any(high <= low):
            dim = int(np.flatnonzero(high <= low)[0])
            raise DatasetError(f"action dimension {dim} has low {low[dim]} >= high {high[dim]}: give action_low and "
                               "action_high (a constant action has no range to scale)")
        meta.update(action_low=low.tolist(), action_high=high.tolist())
    return from_episodes(episodes, meta)


def _with_successors(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns with `next_observations` from the next row; rows whose successor is unknown (a truncation's
    last step, or the arrays' last row mid-episode) go, and the row before each becomes the truncation."""
    obs = columns["observations"]
    terminals = columns["terminals"].reshape(-1).astype(bool)
    timeouts = columns["timeouts"].reshape(-1).astype(bool) & ~terminals
    unknown = timeouts.copy()
    unknown[-1] |= not terminals[-1]
    next_obs = np.roll(obs, -1, 0)
    next_obs[terminals] = obs[terminals]  # a placeholder: (1 - terminal) zeroes the bootstrap
    before = np.flatnonzero(unknown) - 1
    before = before[(before >= 0) & ~(terminals | timeouts)[np.maximum(before, 0)]]
    timeouts = timeouts.copy()
    timeouts[before] = True
    keep = ~unknown
    if not keep.any():
        raise DatasetError("no transition has a known successor: every episode is one truncated step; pass "
                           "next_observations")
    out = {key: value[keep] for key, value in columns.items() if key not in ("terminals", "timeouts")}
    return {**out, "terminals": terminals[keep], "timeouts": timeouts[keep], "next_observations": next_obs[keep]}


def from_dict(d: dict[str, Any], **metadata: Any) -> OfflineData:
    """A dataset from a D4RL-style dict: observations, actions, rewards, terminals[, timeouts, next_observations]."""
    if not isinstance(d, dict):
        raise DatasetError(f"expected a dict of arrays, got {type(d).__name__}")
    known = {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"}
    missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in d]
    if missing:
        raise DatasetError(f"the dict lacks {', '.join(missing)} (has {', '.join(sorted(map(str, d)))})")
    return from_arrays(**{k: v for k, v in d.items() if k in known}, **metadata)


def from_d4rl(path: str | Path, **metadata: Any) -> OfflineData:
    """A dataset from a D4RL `.hdf5` (needs h5py) or `.npz` file of flat arrays."""
    metadata.setdefault("name", Path(path).stem)
    return from_dict(read_d4rl_file(path), **metadata)


def from_minari(dataset_id_or_path: str | Path, *, root: str | Path | None = None, **metadata: Any) -> OfflineData:
    """A dataset from a local Minari dataset (its id under `root` or the Minari data folder, or its directory)."""
    from policylab.data.minari_io import minari_episodes

    episodes, meta = minari_episodes(dataset_id_or_path, root=root, metadata=metadata)
    return from_episodes(episodes, meta)


def from_episodes(episodes: list[Episode], metadata: dict[str, Any]) -> OfflineData:
    """Flatten episodes into contiguous transition tensors (what `load_dataset` makes of a file)."""
    if not episodes:
        raise DatasetError("a dataset needs at least one episode")
    discrete = episodes[0].actions.ndim == 1
    obs = np.concatenate([e.observations[:-1] for e in episodes]).astype(np.float32)
    next_obs = np.concatenate([e.observations[1:] for e in episodes]).astype(np.float32)
    actions = np.concatenate([e.actions for e in episodes])
    lengths = np.array([e.length for e in episodes], dtype=np.int64)
    meta = {"observation_dim": int(obs.shape[1]), "action_dim": 1 if discrete else int(actions.shape[1]),
            "action_type": "discrete" if discrete else "continuous", "num_episodes": len(episodes),
            "num_transitions": int(lengths.sum()), **metadata}
    return OfflineData(
        observations=torch.from_numpy(np.ascontiguousarray(obs)),
        actions=torch.from_numpy(np.ascontiguousarray(actions.astype(np.int64 if discrete else np.float32))),
        rewards=torch.from_numpy(np.concatenate([e.rewards for e in episodes]).astype(np.float32)),
        next_observations=torch.from_numpy(np.ascontiguousarray(next_obs)),
        terminals=torch.from_numpy(np.concatenate([e.terminations for e in episodes]).astype(np.float32)),
        timeouts=torch.from_numpy(np.concatenate([e.truncations for e in episodes]).astype(np.float32)),
        episode_starts=torch.from_numpy(np.r_[0, np.cumsum(lengths)].astype(np.int64)),
        metadata=meta,
    )
