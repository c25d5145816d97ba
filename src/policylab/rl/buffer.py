"""Replay buffer kept as contiguous preallocated tensors; sampling is one randint and a gather.

Observations that are all pixels (an image observation space) are stored as uint8, a quarter of float32's
memory, and come out of `sample` as float32 holding the same values 0..255."""

from __future__ import annotations

from typing import Any

import torch

from policylab.core.errors import ConfigError

MAX_BUFFER_BYTES = 8 << 30
"""The most memory a replay buffer may preallocate (8 GiB), checked before it allocates anything."""


class ReplayBuffer:
    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, obs_dtype: torch.dtype = torch.float32):
        _check_memory(capacity, obs_dim, act_dim, obs_dtype)
        self.capacity, self.size, self.ptr = capacity, 0, 0
        self.data = {
            "obs": torch.zeros(capacity, obs_dim, dtype=obs_dtype),
            "actions": torch.zeros(capacity, act_dim),
            "rewards": torch.zeros(capacity),
            "next_obs": torch.zeros(capacity, obs_dim, dtype=obs_dtype),
            "terminated": torch.zeros(capacity),
            "truncated": torch.zeros(capacity),
        }

    def add(self, **batch: torch.Tensor) -> None:
        """Add a batch of n transitions (n = number of envs), wrapping around when full.

        `truncated` (a time limit, not a terminal state) is optional; it lets a buffer that never
        wrapped be cut back into episodes (the replay datasets of the offline catalog).
        """
        n = batch["obs"].shape[0]
        idx = (torch.arange(n) + self.ptr) % self.capacity
        for key in self.FIELDS:
            if key in batch:
                self.data[key][idx] = batch[key].to(self.data[key].dtype)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def grow(self, capacity: int) -> None:
        """Raise the capacity (a later `learn` call), keeping every stored transition in its slot.

        A buffer that wrapped already is full at its old capacity and stays as it is: moving its slots
        would change which transitions the ring overwrites next."""
        if capacity <= self.capacity or self.size == self.capacity:
            return
        _check_memory(capacity, self.data["obs"].shape[1], self.data["actions"].shape[1], self.data["obs"].dtype)
        for key, value in self.data.items():
            bigger = torch.zeros((capacity, *value.shape[1:]), dtype=value.dtype)
            bigger[: self.size] = value[: self.size]
            self.data[key] = bigger
        self.capacity = capacity

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, self.size, (batch_size,))
        batch = {key: value[idx] for key, value in self.data.items()}
        return {key: value.float() if value.dtype == torch.uint8 else value for key, value in batch.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "ptr": self.ptr,
                "data": {k: v[: self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size, self.ptr = state["size"], state["ptr"]
        for key, value in state["data"].items():
            self.data[key][: self.size] = value


def _check_memory(capacity: int, obs_dim: int, act_dim: int, obs_dtype: torch.dtype = torch.float32) -> None:
    obs_bytes = torch.empty((), dtype=obs_dtype).element_size()
    needed = capacity * (2 * obs_bytes * obs_dim + 4 * (act_dim + 3))  # obs, next_obs; float32 actions, 3 scalars
    if needed > MAX_BUFFER_BYTES:
        raise ConfigError(f"a replay buffer of {capacity:,} transitions of {obs_dim}-dimensional observations "
                          f"needs {needed / 2**30:.1f} GiB: the most allowed is {MAX_BUFFER_BYTES / 2**30:.0f} "
                          "GiB (lower buffer_size)")
