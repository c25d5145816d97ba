"""Value-based learning over discrete actions, shared by online DQN and the offline DQN family.

    y = r + gamma (1 - d) Qbar(s', argmax_a' Q(s', a'))        double DQN (van Hasselt et al. 2016)
    L = Huber(Q(s, a) - y)                                      (Mnih et al. 2015)
The target network is a hard copy refreshed every `target_every` updates. Only true terminations
cut the bootstrap.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from policylab.core.nn import adam, mlp


class DiscreteQ:
    """A Q-network with one output per action, its hard-copied target and its optimizer."""

    parts = ("q", "q_target", "opt")

    def __init__(self, n_obs: int, n_actions: int, hidden: Sequence[int], lr: float, target_every: int,
                 encoder: torch.nn.Module | None = None):
        """`encoder` (e.g. a CNN giving `n_obs` features) becomes the first layer of the Q-network."""
        self.q = mlp(n_obs, n_actions, hidden)
        if encoder is not None:
            self.q = torch.nn.Sequential(encoder, self.q)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.opt = adam(self.q.parameters(), lr)
        self.target_every = target_every
        self.updates = 0

    @torch.no_grad()
    def double_q_target(self, rewards: torch.Tensor, next_obs: torch.Tensor, terminals: torch.Tensor,
                        gamma: float) -> torch.Tensor:
        next_actions = self.q(next_obs).argmax(-1, keepdim=True)
        next_q = self.q_target(next_obs).gather(-1, next_actions).squeeze(-1)
        return rewards + gamma * (1 - terminals) * next_q

    def td_loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                terminals: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(Huber TD loss, Q(s, .) of the batch with grad) for integer `actions` of shape [batch]."""
        q_all = self.q(obs)
        q_taken = q_all.gather(-1, actions[:, None]).squeeze(-1)
        target = self.double_q_target(rewards, next_obs, terminals, gamma)
        return F.smooth_l1_loss(q_taken, target), q_all

    def step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.updates += 1
        if self.updates % self.target_every == 0:
            self.q_target.load_state_dict(self.q.state_dict())

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs).argmax(-1)

    def state_dict(self) -> dict[str, Any]:
        return {**{p: getattr(self, p).state_dict() for p in self.parts}, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for p in self.parts:
            getattr(self, p).load_state_dict(state[p])
        self.updates = state["updates"]
