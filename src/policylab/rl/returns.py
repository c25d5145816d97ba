"""Return and advantage estimators for on-policy methods."""

from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16) over a (T, N) rollout.

    `dones[t]` marks that the episode ended at step t (terminated or truncated); truncations
    have already been bootstrapped into `rewards[t]`, so the recursion cuts at every end.
    Returns (advantages, returns = advantages + values).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    not_done = 1.0 - dones.to(rewards.dtype)
    for t in reversed(range(steps)):
        delta = rewards[t] + gamma * next_value * not_done[t] - values[t]
        running = delta + gamma * lam * not_done[t] * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values
