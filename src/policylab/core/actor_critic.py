"""Deterministic actor-critics shared by online (TD3) and offline (TD3+BC) RL: networks, targets, steps."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from policylab.core.nn import EnsembleMLP, adam, mlp, soft_update


def q_values(critic: EnsembleMLP, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """[members, batch] Q-values of an ensemble critic over concatenated (obs, action)."""
    return critic(torch.cat([obs, actions], -1)).squeeze(-1)


@torch.no_grad()
def td3_target(critic_target: EnsembleMLP, actor_target: nn.Module, rewards: torch.Tensor,
               next_obs: torch.Tensor, terminated: torch.Tensor, gamma: float, policy_noise: float,
               noise_clip: float) -> torch.Tensor:
    """TD3's target (Fujimoto et al. 2018): target policy smoothing (eq. 14), clipped double-Q (eq. 10).

    Only true terminations cut the bootstrap; a time-limit truncation keeps it.
    """
    next_actions = actor_target(next_obs)
    noise = (policy_noise * torch.randn_like(next_actions)).clamp(-noise_clip, noise_clip)
    next_q = q_values(critic_target, next_obs, (next_actions + noise).clamp(-1, 1)).min(0).values
    return rewards + gamma * (1 - terminated) * next_q


class DeterministicActorCritic:
    """A tanh actor, twin critics as one 2-member ensemble, their Polyak targets and Adam optimizers.

    Subclasses supply the actor objective; `critic_step` and `actor_step` hold the shared updates
    (TD3's delayed actor and target updates, section 5.2 of Fujimoto et al. 2018).
    """

    parts = ("actor", "actor_target", "critic", "critic_target", "actor_opt", "critic_opt")

    def __init__(self, n_obs: int, n_act: int, hidden: tuple[int, ...], lr: float):
        self.actor = nn.Sequential(mlp(n_obs, n_act, hidden), nn.Tanh())
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = EnsembleMLP(2, n_obs + n_act, 1, hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), lr)
        self.critic_opt = adam(self.critic.parameters(), lr)
        self.updates = 0
        self._last_actor_loss = torch.zeros(())

    def critic_step(self, obs: torch.Tensor, actions: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Both critics regress onto the same target; returns (loss, Q [2, batch]) detached."""
        q = q_values(self.critic, obs, actions)
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.updates += 1
        return critic_loss.detach(), q.detach()

    def actor_due(self, policy_delay: int) -> bool:
        return self.updates % policy_delay == 0

    def actor_step(self, actor_loss: torch.Tensor, tau: float) -> None:
        """Descend the actor loss (computed with the critic frozen), then move both targets."""
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        soft_update(self.actor_target, self.actor, tau)
        soft_update(self.critic_target, self.critic, tau)
        self._last_actor_loss = actor_loss.detach()

    def frozen_critic_q1(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q1(s, a) with gradients to the actions only (the actor's objective)."""
        self.critic.requires_grad_(False)
        q1 = q_values(self.critic, obs, actions)[0]
        self.critic.requires_grad_(True)
        return q1

    def state_dict(self) -> dict[str, Any]:
        return {**{p: getattr(self, p).state_dict() for p in self.parts}, "updates": self.updates,
                "last_actor_loss": self._last_actor_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for p in self.parts:
            getattr(self, p).load_state_dict(state[p])
        self.updates = state["updates"]
        self._last_actor_loss = state["last_actor_loss"]
