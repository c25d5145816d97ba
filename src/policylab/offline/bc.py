"""Behaviour cloning, and x%BC (CORL's "any-percent BC"): imitate the dataset, or its best episodes.

Continuous actions: a deterministic tanh policy regressed onto the dataset's actions in [-1, 1]
(min E||pi(s) - a||^2). Discrete actions: cross-entropy on the actions taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from policylab.core.config import param
from policylab.core.nn import GaussianHead, adam, mlp
from policylab.data import OfflineData, UniformTransitions
from policylab.offline.train import OfflineConfig, Prepared


@dataclass(frozen=True)
class BCConfig(OfflineConfig):
    top_percent: float = param(100.0, gt=0, le=100)
    """Train on the top x% of episodes by return (x%BC; CORL uses 10); 100 is plain BC."""


def top_episode_transitions(data: OfflineData, percent: float) -> torch.Tensor | None:
    """Transition indices of the best ceil(percent% x episodes) episodes by return; None for all."""
    if percent >= 100:
        return None
    keep = max(1, math.ceil(data.num_episodes * percent / 100))
    best = data.episode_returns().argsort(descending=True)[:keep]
    return torch.isin(data.episode_ids, best).nonzero().flatten()


class GaussianBCActor(torch.nn.Module):
    """A Gaussian policy with a tanh mean and a state-independent log-std, fitted by weighted maximum
    likelihood: IQL's advantage-weighted regression and O-DICE's weighted BC share it; it acts with its mean."""

    def __init__(self, n_obs: int, n_act: int, hidden: tuple[int, ...]):
        super().__init__()
        self.mean_net = torch.nn.Sequential(mlp(n_obs, n_act, hidden), torch.nn.Tanh())
        self.head = GaussianHead(n_act)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean_net(obs)

    def weighted_nll(self, obs: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """-E[w log pi(a | s)]."""
        return -(weights * self.head(self.mean_net(obs)).log_prob(actions).sum(-1)).mean()


def imitation_actor(data: OfflineData, extra_inputs: int, hidden: tuple[int, ...]) -> torch.nn.Module:
    """Logits over the actions (discrete) or a tanh action in [-1, 1] (continuous), from the state and
    `extra_inputs` more features (RCSL's return-to-go)."""
    n_in = data.observations.shape[1] + extra_inputs
    n_out = int(data.metadata["num_actions"]) if data.discrete else data.actions.shape[1]
    body = mlp(n_in, n_out, hidden)
    return body if data.discrete else torch.nn.Sequential(body, torch.nn.Tanh())


def imitation_loss(out: torch.Tensor, actions: torch.Tensor, discrete: bool) -> torch.Tensor:
    """Cross-entropy on the actions taken, or the squared error to them summed over action dimensions."""
    return F.cross_entropy(out, actions) if discrete else (out - actions).pow(2).sum(-1).mean()


class BC:
    name = "bc"

    def __init__(self, prepared: Prepared, cfg: BCConfig):
        self.cfg = cfg
        self.discrete = prepared.data.discrete
        self.actor = imitation_actor(prepared.data, 0, cfg.hidden)
        self.opt = adam(self.actor.parameters(), cfg.lr)

    def make_sampler(self, data: OfflineData, seed: int) -> UniformTransitions | None:
        """x%BC's subset; None (the default sampler) when every episode is kept."""
        subset = top_episode_transitions(data, self.cfg.top_percent)
        return None if subset is None else UniformTransitions(data, self.cfg.batch_size, seed, subset)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = imitation_loss(self.actor(batch["observations"]), batch["actions"], self.discrete)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss/bc": loss.detach()}

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(obs)
        return out.argmax(-1) if self.discrete else out

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.opt.load_state_dict(state["opt"])
