"""Samplers: how an offline algorithm draws batches from a dataset (a component, not an algorithm).

Every offline algorithm takes a sampler, so weighted samplers (return- or advantage-weighted,
trajectory weighting) plug in without touching any algorithm. Samplers draw indices with their
own torch generator (checkpointed), never with `.item()` per step.
"""

from __future__ import annotations

from typing import Any

import torch

from policylab.core.errors import ConfigError
from policylab.core.registry import Registry
from policylab.data.format import OfflineData

SAMPLERS: Registry = Registry("batch sampler")
"""Name -> factory(data, batch_size, seed, cfg) -> sampler; chosen by an offline config's `sampler` field."""


class UniformTransitions:
    """Transitions uniformly at random, with replacement."""

    def __init__(self, data: OfflineData, batch_size: int, seed: int = 0, subset: torch.Tensor | None = None):
        """subset: transition indices to draw from (e.g. the top-x% episodes of x%BC); default all."""
        if batch_size <= 0:
            raise ConfigError(f"{type(self).__name__}: batch_size = {batch_size} is not allowed: must be >= 1")
        if subset is not None and len(subset) == 0:
            raise ConfigError(f"{type(self).__name__}: the subset of transitions to draw from is empty")
        self.data, self.batch_size, self.subset = data, batch_size, subset
        self.generator = torch.Generator().manual_seed(seed)

    def indices(self) -> torch.Tensor:
        if self.subset is None:
            return torch.randint(len(self.data), (self.batch_size,), generator=self.generator)
        return self.subset[torch.randint(len(self.subset), (self.batch_size,), generator=self.generator)]

    def sample(self) -> dict[str, torch.Tensor]:
        i = self.indices()
        d = self.data
        return {"observations": d.observations[i], "actions": d.actions[i], "rewards": d.rewards[i],
                "next_observations": d.next_observations[i], "terminals": d.terminals[i], "timeouts": d.timeouts[i]}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


SAMPLERS.add("uniform", lambda data, batch_size, seed, cfg=None: UniformTransitions(data, batch_size, seed))


class TrajectorySegments(UniformTransitions):
    """Windows of `length` consecutive transitions from one episode, start uniform over transitions.

    A window that would run past its episode's end is padded by repeating the last transition
    with `mask` 0, so every batch is [batch, length, ...] and no window mixes two episodes.
    """

    def __init__(self, data: OfflineData, batch_size: int, length: int, seed: int = 0):
        if length <= 0:
            raise ConfigError(f"TrajectorySegments: length = {length} is not allowed: must be >= 1 transition")
        super().__init__(data, batch_size, seed)
        self.length = length
        self.episode_end = data.episode_starts[1:][data.episode_ids]  # one past each transition's episode

    def sample(self) -> dict[str, torch.Tensor]:
        start = self.indices()
        offsets = torch.arange(self.length)
        raw = start[:, None] + offsets[None, :]
        last = (self.episode_end[start] - 1)[:, None]
        index = torch.minimum(raw, last)
        d = self.data
        out = {"observations": d.observations[index], "actions": d.actions[index], "rewards": d.rewards[index],
               "next_observations": d.next_observations[index], "terminals": d.terminals[index],
               "timeouts": d.timeouts[index]}
        out["mask"] = (raw <= last).float()
        return out
