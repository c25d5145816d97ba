"""Bring D4RL-style datasets (dicts of flat arrays, `.npz` or `.hdf5`) into policylab's format.

Keys: `observations`, `actions`, `rewards`, `terminals`, `timeouts` and, when present,
`next_observations`. Episodes end where `terminals` or `timeouts` is set; the last episode of a
file that ends mid-episode is marked truncated. Without `next_observations` (old D4RL files) the
last transition of each episode has no successor and is dropped, as D4RL's `qlearning_dataset` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from policylab.data.format import DatasetError, Episode, save_dataset

KEYS = ("observations", "actions", "rewards", "terminals")


def episodes_from_d4rl(d: dict[str, np.ndarray]) -> list[Episode]:
    missing = [k for k in KEYS if k not in d]
    if missing:
        raise DatasetError(f"D4RL-style data lacks {', '.join(missing)} (has {', '.join(sorted(d))})")
    obs = np.asarray(d["observations"], dtype=np.float32)
    n = len(obs)
    actions = np.asarray(d["actions"])
    rewards = np.asarray(d["rewards"], dtype=np.float32).reshape(-1)
    terminals = np.asarray(d["terminals"]).reshape(-1).astype(bool)
    timeouts = np.asarray(d.get("timeouts", np.zeros(n))).reshape(-1).astype(bool)
    for name, arr in (("actions", actions), ("rewards", rewards), ("terminals", terminals), ("timeouts", timeouts)):
        if len(arr) != n:
            raise DatasetError(f"D4RL-style data: {name} has {len(arr)} entries, observations has {n}")
    if actions.dtype.kind == "f":
        actions = actions.astype(np.float32).reshape(n, -1)
    else:
        actions = actions.astype(np.int64).reshape(n)
    ends = terminals | timeouts
    if n and not ends[-1]:
        timeouts = timeouts.copy()
        timeouts[-1] = True  # the file stops mid-episode: a truncation, bootstrap kept
        ends = terminals | timeouts
    next_obs = d.get("next_observations")
    episodes = []
    start = 0
    for end in np.flatnonzero(ends):
        sl = slice(start, end + 1)
        if next_obs is not None:
            observations = np.concatenate([obs[sl], np.asarray(next_obs[end:end + 1], dtype=np.float32)])
            episodes.append(Episode(observations, actions[sl], rewards[sl], terminals[sl], timeouts[sl]))
        elif end > start:  # drop the final transition: its next observation is unknown
            sl = slice(start, end)
            done = np.zeros(end - start, dtype=bool)
            truncated = done.copy()
            truncated[-1] = True
            episodes.append(Episode(obs[start:end + 1], actions[sl], rewards[sl], done, truncated))
        start = end + 1
    if not episodes:
        raise DatasetError("D4RL-style data holds no complete episode")
    return episodes


def read_d4rl_file(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if path.suffix == ".npz":
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    if path.suffix in (".hdf5", ".h5"):
        try:
            import h5py
        except ImportError:
            raise DatasetError("reading .hdf5 needs h5py: pip install 'policylab[hdf5]'") from None
        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    raise DatasetError(f"{path}: expected a .npz or .hdf5 file of D4RL-style arrays")


def import_d4rl(source: str | Path, dest: str | Path, metadata: dict[str, Any]) -> Path:
    """Convert a D4RL-style file into a policylab dataset at `dest` (metadata needs env_id and the refs)."""
    episodes = episodes_from_d4rl(read_d4rl_file(source))
    return save_dataset(dest, episodes, {"builder": "import_d4rl", "source": str(source), **metadata})
