"""Bootstrap targets shared by online and offline actor-critics (pillar-agnostic math)."""

from __future__ import annotations

import torch
from torch import nn

from policylab.core.nn import EnsembleMLP


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
