"""NFT — Negative-aware Fine-Tuning (Chen et al. 2025, "Bridging Supervised Learning and Reinforcement
Learning in Math Reasoning", arXiv 2505.18116; official code github.com/NVlabs/NFT, `dp_actor.py`).

A likelihood route to RLVR: correct answers are fitted by maximum likelihood, and incorrect ones
by the likelihood of an *implicit negative policy* built from the same parameters. The old policy
is a mixture pi_old = r_q pi+ + (1 - r_q) pi-, so with R_t = pi_theta(o_t) / pi_old(o_t):

  pi-_theta(o_t) / pi-_old(o_t) = (1 - r_q R_t) / (1 - r_q)          (the implicit negative ratio)
  positive token:  l = -log R_t
  negative token:  l = -log((1 - r_q R_t) / (1 - r_q))
  each scaled by the prompt weight omega(q): 1 - r_q (normalize=1, on-policy equal to Dr. GRPO),
  sqrt((1 - r_q) / r_q) (normalize=2, equal to GRPO with the population std) or 1 (normalize=0).

neg_weight scales the negative terms: 1 is NFT, 0 is RFT (rejection-sampling fine-tuning: the
positives alone). On-policy (R = 1) the gradient is -omega (1[correct] - r_q) grad log pi, which is
(Dr.) GRPO's; off-policy the two objectives differ.

Sources (official code): r_q is the group's success rate clamped to [0.02, 0.98]; the negative
term's argument is floored at `clamp_negative` = 1.0 in its forward value only (straight-through:
the gradient is that of the unfloored expression scaled by 1 / max(x, 1)), which bounds the 1/x
factor when a negative token's probability rises; groups where every answer is right or every answer
is wrong carry no signal (r_q in {0, 1} makes the negative term degenerate) and are dropped — the
official run filters them with DAPO's dynamic sampling; here their rows get zero loss, which with a
constant-denominator aggregation is the same as removing them.
Our choices: aggregation is Dr. GRPO's constant denominator (sum / (B L_max), B times the denominator
verl's `seq-mean-token-sum-norm` uses); the code sums token losses over the micro-batch and divides by
1000, a different constant that only rescales the step. The log-ratio log(pi_theta / pi_old) is clamped
to [-20, 20] by the engine's token ratio (`losses.slots.MAX_LOG_RATIO`), as for every loss form; the
official code clamps it at 10 from above only (`dp_actor.py`, `ratio_type == "token"`), so a token whose
ratio passes e^10 still carries a gradient here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.losses.slots import LOSS_FORMS, SlotContext, needs_config
from policylab.lm.trainer import RLVRConfig

SUCCESS_CLAMP = (0.02, 0.98)


@dataclass(frozen=True)
class NFTConfig(RLVRConfig):
    loss: str = "nft"
    clip: str = "none"
    advantage: str = "dr_grpo"  # unused by the loss; logged batch statistics read it
    aggregation: str = "seq-mean-token-sum-norm"
    neg_weight: float = param(1.0, ge=0)
    """1: NFT; 0: RFT (positives only)."""
    normalize: int = 1
    """Prompt weight omega: 0 -> 1, 1 -> 1 - r (Dr. GRPO), 2 -> sqrt((1 - r) / r) (GRPO)."""
    clamp_negative: float = param(1.0, gt=0)
    """Forward-value floor of the negative term's argument (straight-through)."""

    def check(self) -> None:
        super().check()
        if self.normalize not in (0, 1, 2):
            raise ConfigError(f"NFTConfig.normalize = {self.normalize!r} is not allowed: one of 0, 1, 2")


@dataclass(frozen=True)
class RFTConfig(NFTConfig):
    neg_weight: float = param(0.0, ge=0)


def floor_forward(x: torch.Tensor, floor: float) -> torch.Tensor:
    """max(x, floor) in value, identity in gradient."""
    return x + (x.clamp(min=floor) - x).detach()


def prompt_weight(success: torch.Tensor, normalize: int) -> torch.Tensor:
    if normalize == 1:
        return 1 - success
    if normalize == 2:
        return ((1 - success) / success).sqrt()
    return torch.ones_like(success)


@LOSS_FORMS.register("nft")
@needs_config(NFTConfig)
def nft_loss(ratio: torch.Tensor, clipped: torch.Tensor, adv: torch.Tensor, cfg: NFTConfig,
             ctx: SlotContext) -> torch.Tensor:
    """Per-token NFT loss [B, R]; rows of all-right or all-wrong groups are zero."""
    raw_success, correct = ctx.rows["success_rate"], ctx.rows["correct"]
    informative = ((raw_success > 0) & (raw_success < 1)).float()[:, None]
    r = raw_success.clamp(*SUCCESS_CLAMP)[:, None]
    positive = -torch.log(ratio)
    negative = -torch.log(floor_forward((1 - r * ratio) / (1 - r), cfg.clamp_negative))
    is_correct = correct.float()[:, None]
    loss = is_correct * positive + (1 - is_correct) * cfg.neg_weight * negative
    ctx.metrics["nft/informative_frac"] = informative.mean()
    return loss * prompt_weight(r, cfg.normalize) * informative
