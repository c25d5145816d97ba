"""Lite PPO — "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning" (Liu et al. 2025,
arXiv 2508.08221, §4.1 and §5; official code: ROLL `roll/utils/functionals.py`).

Critic-free vanilla PPO with exactly two tricks:
  advantage  A_i = (R_i - mean_group(R)) / (std_batch(R) + eps)     (group mean, batch std; §4.1.1)
  loss       token-mean of -min(r A, clip(r, 1 - 0.2, 1 + 0.2) A)  (token-level aggregation; §4.3)
The batch std is over the raw rewards of the whole rollout batch, as ROLL computes it. ROLL's
LitePPO config also enables advantage whitening, advantage clipping at 2, a dual clip and a KL
loss; the paper's recipe is the two tricks alone, which is what this config is.
"""

from __future__ import annotations

from dataclasses import dataclass

from policylab.lm.trainer import RLVRConfig


@dataclass(frozen=True)
class LitePPOConfig(RLVRConfig):
    advantage: str = "lite_ppo"  # policylab.lm.advantages.group_mean_batch_std_advantage
    aggregation: str = "token-mean"
