"""History encoders for partially observed offline RL (observation histories, HIB).

`HistoryEncoder` maps a window of the last H (o_k, a_{k-1}, 1) rows (`policylab.data.history`) to a latent
phi(h); `HistoryTracker` keeps the same windows per episode during evaluation, through the evaluator's
reset / observe hooks, so a policy sees at test time exactly the inputs it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class HistoryEncoder(nn.Module):
    """GRU over the window (oldest first), its last hidden state through a linear layer: [B, H, F] -> [B, latent]."""

    def __init__(self, features: int, hidden: int = 32, latent: int | None = None):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, latent or hidden)
        self.latent_dim = latent or hidden

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(histories)
        return self.head(last[-1])


class HistoryTracker:
    """Per-episode history windows for batched evaluation (rows of `act` are the live episodes, in order)."""

    def __init__(self, length: int, obs_dim: int, act_dim: int, previous_action: bool = True):
        self.length, self.obs_dim, self.act_dim, self.previous_action = length, obs_dim, act_dim, previous_action
        self.reset(0)

    @property
    def features(self) -> int:
        return self.obs_dim + (self.act_dim if self.previous_action else 0) + 1

    def reset(self, num_episodes: int) -> None:
        self.windows = torch.zeros(num_episodes, self.length, self.features)
        self.last_action = torch.zeros(num_episodes, self.act_dim)
        self.live = torch.arange(num_episodes)

    def push(self, obs: torch.Tensor) -> torch.Tensor:
        """Append (o_t, a_{t-1}, 1) to each live episode's window; returns the live windows [n, H, F]."""
        if len(obs) != len(self.live):  # used without the evaluator's hooks: one fresh episode per row
            self.reset(len(obs))
        parts = [obs, self.last_action[self.live]] if self.previous_action else [obs]
        new = torch.cat([*parts, obs.new_ones(len(obs), 1)], 1)
        windows = torch.cat([self.windows[self.live, 1:], new[:, None]], 1)
        self.windows[self.live] = windows
        return windows

    def record(self, actions: torch.Tensor) -> None:
        """The actions just taken by the live episodes (paired with their next observations)."""
        self.last_action[self.live] = actions.reshape(len(self.live), -1).float()

    def observe(self, indices: torch.Tensor | np.ndarray, dones: torch.Tensor | np.ndarray) -> None:
        indices, dones = torch.as_tensor(indices), torch.as_tensor(dones, dtype=torch.bool)
        self.live = indices[~dones]


class HistoryPolicy:
    """The deployable side of a history algorithm: the evaluator's reset / observe hooks keep one window per
    episode in `self.tracker`; `act_on_history` feeds the live windows to the algorithm's own head."""

    tracker: HistoryTracker

    def policy_reset(self, num_episodes: int) -> None:
        self.tracker.reset(num_episodes)

    def policy_observe(self, indices: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> None:
        self.tracker.observe(indices, dones)

    @torch.no_grad()
    def act_on_history(self, obs: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        action = act(self.tracker.push(obs))
        self.tracker.record(action)
        return action
