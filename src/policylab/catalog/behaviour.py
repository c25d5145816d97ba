"""What dataset recipes keep from a behaviour policy's online run: evaluated snapshots and the replay.

`PolicySnapshots` saves the agent at every evaluation (with its return and environment step) so a
recipe can pick its expert (the best evaluation) and its medium policy (the first evaluation a
third of the way from random to the best) after the run; `replay_episodes` cuts the run's replay
buffer back into the episodes it saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from policylab.core.atomic import atomic_write_json
from policylab.data import DatasetError, Episode
from policylab.envs.spaces import ActionScaler
from policylab.rl import load_policy, save_policy
from policylab.rl.buffer import ReplayBuffer


class PolicySnapshots:
    """Trainer callback: at every evaluation, save the agent to `folder/step<N>.pt` and index it."""

    def __init__(self, folder: Path, env_id: str):
        self.folder, self.env_id = Path(folder), env_id
        self.index_path = self.folder / "index.json"
        self.entries: list[dict[str, Any]] = self.read(self.folder)

    @staticmethod
    def read(folder: Path) -> list[dict[str, Any]]:
        index = Path(folder) / "index.json"
        return json.loads(index.read_text()) if index.exists() else []

    def __call__(self, event: str, step: int, trainer: Any) -> None:
        if event != "eval":
            return
        path = self.folder / f"step{step}.pt"
        save_policy(trainer.algo, self.env_id, path)
        entry = {"step": step, "env_steps": int(trainer.source.counters()["env_steps"]),
                 "return": trainer.last_eval["eval/return"], "path": path.name}
        self.entries = [e for e in self.entries if e["step"] != step] + [entry]
        atomic_write_json(self.index_path, self.entries)


def best_snapshot(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest evaluation; ties go to the later one."""
    return max(reversed(sorted(entries, key=lambda e: e["step"])), key=lambda e: e["return"])


def medium_snapshot(entries: list[dict[str, Any]], random_return: float, fraction: float = 1 / 3) -> dict[str, Any]:
    """The first evaluation at least `fraction` of the way from the random return to the best one."""
    best = best_snapshot(entries)["return"]
    bar = random_return + fraction * (best - random_return)
    return next(e for e in sorted(entries, key=lambda e: e["step"]) if e["return"] >= bar)


def load_snapshot(folder: Path, entry: dict[str, Any]) -> Any:
    return load_policy(Path(folder) / entry["path"])


def replay_episodes(buffer: ReplayBuffer, scaler: ActionScaler | None = None) -> list[Episode]:
    """Cut a buffer that never wrapped (one env) back into its episodes; an unfinished last one is
    truncated. Discrete actions (scaler None) come back as integers, continuous ones in env units."""
    if buffer.size == buffer.capacity and buffer.ptr != 0:
        raise DatasetError("the replay buffer wrapped around, so its episodes cannot be recovered")
    d = {k: v[: buffer.size].numpy() for k, v in buffer.data.items()}
    ends = np.flatnonzero((d["terminated"] > 0) | (d["truncated"] > 0))
    if len(ends) == 0 or ends[-1] != buffer.size - 1:
        ends = np.append(ends, buffer.size - 1)
        d["truncated"][-1] = 1.0
    actions = d["actions"][:, 0].astype(np.int64) if scaler is None else scaler.to_env(d["actions"]).astype(np.float32)
    episodes, start = [], 0
    for end in ends:
        sl = slice(start, end + 1)
        obs = np.concatenate([d["obs"][sl], d["next_obs"][end: end + 1]])
        episodes.append(Episode(obs.astype(np.float32), actions[sl], d["rewards"][sl].astype(np.float32),
                                d["terminated"][sl] > 0, d["truncated"][sl] > 0))
        start = end + 1
    return episodes
