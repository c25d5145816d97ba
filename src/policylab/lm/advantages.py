"""Slot 1 of the RLVR objective: reward -> advantage transforms.

Input: outcome rewards shaped [P, G] (P prompts, G responses each, in generation order). Output:
sequence advantages [P, G], or token advantages [P*G, R] for transforms that assign credit per
token. Notation follows the notes (§0): mu_q, sigma_q over a group, sigma_B over the batch.

A group of one response has mu_q = R, so every group-relative transform gives it advantage 0:
with G = 1 there is no baseline to compare against and no learning signal (verl and Trinity-RFT
instead fall back to mean 0 / std 1, which turns the raw reward into the advantage; we do not).
This includes AsymRE's shifted baseline mu_q + delta (`losses/rec.py`): a one-response group gets
0, not -delta, since the shift is applied to a group baseline that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from policylab.core.registry import Registry

AdvantageFn = Callable[..., torch.Tensor]
ADVANTAGES: Registry = Registry("advantage transform")


def group_std(rewards: torch.Tensor) -> torch.Tensor:
    """Unbiased per-group std [P, 1] (verl and TRL use the N-1 estimator); 0 for groups of one."""
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards[:, :1])
    return rewards.std(dim=1, keepdim=True)


@ADVANTAGES.register("grpo")
def grpo_advantage(rewards: torch.Tensor, eps: float = 1e-6, **_) -> torch.Tensor:
    """GRPO (DeepSeekMath §4.1.2): A_i = (R_i - mu_q) / (sigma_q + eps)."""
    return (rewards - rewards.mean(1, keepdim=True)) / (group_std(rewards) + eps)


@ADVANTAGES.register("dr_grpo")
def group_mean_advantage(rewards: torch.Tensor, **_) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, §3.1): A_i = R_i - mu_q, no std division."""
    return rewards - rewards.mean(1, keepdim=True)


@ADVANTAGES.register("lite_ppo")
def group_mean_batch_std_advantage(rewards: torch.Tensor, eps: float = 1e-6, **_) -> torch.Tensor:
    """Lite PPO (Tricks or Traps §4.1; ROLL `reward_norm`): A_i = (R_i - mu_q) / (sigma_B + eps).

    sigma_B is the std of the raw rewards of the whole batch (not of the centred ones), as ROLL
    computes it; it stays finite where a near-uniform group's sigma_q would blow advantages up.
    """
    batch_std = rewards.flatten().std() if rewards.numel() > 1 else rewards.new_zeros(())
    return (rewards - rewards.mean(1, keepdim=True)) / (batch_std + eps)


@ADVANTAGES.register("rloo")
def leave_one_out_advantage(rewards: torch.Tensor, **_) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): A_i = R_i - mean_{j != i} R_j = G/(G-1) (R_i - mu_q)."""
    G = rewards.shape[1]
    if G < 2:
        return torch.zeros_like(rewards)
    return (rewards - rewards.mean(1, keepdim=True)) * (G / (G - 1))


@ADVANTAGES.register("reinforce")
def raw_reward_advantage(rewards: torch.Tensor, **_) -> torch.Tensor:
    """Plain REINFORCE: the reward itself, no baseline."""
    return rewards.clone()


def token_advantages(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Broadcast sequence advantages [P, G] to tokens [P*G, R] (zero outside the mask)."""
    if advantages.dim() == 2 and advantages.shape != response_mask.shape:
        advantages = advantages.reshape(-1, 1)
    return advantages * response_mask
