"""BAPO — Balanced Policy Optimization with Adaptive Clipping (Xi et al. 2025, arXiv 2510.18927;
official code github.com/WooooDyy/BAPO, `recipe/bapo/policy_loss.py`).

Slot 3 only: before every optimizer step the clip bounds are searched again so that positive-
advantage tokens carry at least a share rho_0 of the loss (stale rollouts otherwise let negative
tokens dominate and entropy collapse). With explicit ratio bounds (not 1 +- eps):

  P(c_high) = sum_{A>0} pi_roll(y_t) |min(r_t A_t, clip(r_t, 0, c_high) A_t)|                (eq. 8, numerator)
  N(c_low)  = sum_{A<0} pi_roll(y_t) |min(r_t A_t, clip(r_t, c_low, c_high) A_t)|
  rho = P / (P + N) >= rho_0                                                                 (eq. 8)
  Algorithm 1: c_low = a-, c_high = a+; while rho < rho_0 and c_low + d2 <= b-:
               raise c_high by d1 while c_high + d1 <= b+, otherwise raise c_low by d2.
  Then the clipped surrogate -min(r A, clip(r, c_low, c_high) A).

Sources: eq. 8, Algorithm 1 and the defaults (rho_0 = 0.4, [a-, b-] = [0.6, 0.9], [a+, b+] = [1.2, 3.0],
d1 = 0.05, d2 = 0.02) follow the paper (§4.2, §5 implementation details). Reading of eq. 8: its
denominator is the total loss mass of all tokens, taken here as the sum of the magnitudes of the
positive and negative parts (the signed sum can vanish); the official code's pos/neg ratio target
is the same rule (share = ratio / (1 + ratio)). Where paper and code differ we follow the paper:
the pi_roll(y_t) weights of eq. 8 (the code omits them), c_high raised first (the code raises
c_low first), rho_0 a share (the code's target 1.0 is a share of 0.5). Note that in this loss-value
measure raising c_low enlarges N (a clipped negative token still counts at c_low |A|), so once
c_high reaches b+ the search walks c_low to b- — the most negative tokens it may filter.

The search runs on the minibatch's current ratios, detached; on-policy with one epoch r = 1 and
only the first candidate is needed unless positives are short. The candidate path is fixed, so all
its points are scored in one vectorized pass. Chosen bounds and the share are logged per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.losses.slots import CLIPS, SlotContext, needs_config
from policylab.lm.trainer import RLVRConfig


@dataclass(frozen=True)
class BAPOConfig(RLVRConfig):
    clip: str = "bapo"
    positive_share: float = param(0.4, gt=0, lt=1)
    """rho_0, the target share of the loss carried by positive-advantage tokens."""
    low_start: float = param(0.6, gt=0, lt=1)
    low_max: float = param(0.9, gt=0, lt=1)
    high_start: float = param(1.2, gt=1)
    high_max: float = param(3.0, gt=1)
    high_step: float = param(0.05, gt=0)
    low_step: float = param(0.02, gt=0)
    weight_by_rollout_prob: bool = True
    """Weigh each token by pi_roll(y_t) in eq. 8, as the paper does (the official code does not)."""

    def check(self) -> None:
        super().check()
        if self.low_max < self.low_start:
            raise ConfigError(f"BAPOConfig.low_max = {self.low_max} is not allowed: must be >= low_start = "
                              f"{self.low_start}")
        if self.high_max < self.high_start:
            raise ConfigError(f"BAPOConfig.high_max = {self.high_max} is not allowed: must be >= high_start = "
                              f"{self.high_start}")


def bound_path(cfg: BAPOConfig) -> torch.Tensor:
    """The (c_low, c_high) candidates Algorithm 1 visits, in order, as a [K, 2] tensor."""
    high_steps = int(round((cfg.high_max - cfg.high_start) / cfg.high_step + 1e-9))
    low_steps = int(round((cfg.low_max - cfg.low_start) / cfg.low_step + 1e-9))
    if low_steps == 0:  # the loop condition c_low + d2 <= b- never holds: the start is final
        return torch.tensor([[cfg.low_start, cfg.high_start]], dtype=torch.float64)
    highs = cfg.high_start + cfg.high_step * torch.arange(high_steps + 1, dtype=torch.float64)
    lows = cfg.low_start + cfg.low_step * torch.arange(1, low_steps + 1, dtype=torch.float64)
    first = torch.stack([torch.full_like(highs, cfg.low_start), highs], -1)
    then = torch.stack([lows, torch.full_like(lows, highs[-1].item())], -1)
    return torch.cat([first, then])


def positive_share(ratio: torch.Tensor, adv: torch.Tensor, weight: torch.Tensor,
                   bounds: torch.Tensor) -> torch.Tensor:
    """rho of eq. 8 for every candidate [K] (tokens flattened; weight = pi_roll x mask)."""
    ratio, adv, weight = ratio.flatten().double(), adv.flatten().double(), weight.flatten().double()
    low, high = bounds[:, :1], bounds[:, 1:]
    pos = ((adv > 0) * weight * adv * torch.minimum(ratio, high)).sum(-1)
    neg = ((adv < 0) * weight * -adv * torch.maximum(ratio, low)).sum(-1)
    total = pos + neg
    return torch.where(total > 0, pos / total.clamp(min=1e-300), torch.ones_like(total))


@CLIPS.register("bapo")
@needs_config(BAPOConfig)
def adaptive_clip(ratio: torch.Tensor, cfg: BAPOConfig, ctx: SlotContext) -> torch.Tensor:
    """clip(r, c_low, c_high) with the first bounds on Algorithm 1's path that meet rho_0."""
    with torch.no_grad():
        bounds = bound_path(cfg).to(ratio.device)
        weight = ctx.mask * (ctx.old_logp.exp() if cfg.weight_by_rollout_prob else 1.0)
        shares = positive_share(ratio.detach(), ctx.advantages, weight, bounds)
        met = (shares >= cfg.positive_share).nonzero()
        k = int(met[0]) if met.numel() else bounds.shape[0] - 1
        low, high = float(bounds[k, 0]), float(bounds[k, 1])
    ctx.metrics.update({"bapo/clip_low": torch.tensor(low), "bapo/clip_high": torch.tensor(high),
                        "bapo/positive_share": shares[k].float(), "bapo/share_at_start": shares[0].float()})
    return ratio.clamp(low, high)
