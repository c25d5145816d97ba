"""The group-relative REINFORCE family of "Group-Relative REINFORCE Is Secretly an Off-Policy
Algorithm" (Yao et al. 2025, arXiv 2509.24203; code: Trinity-RFT `rec_policy_loss.py`,
`rec_advantage.py`): REC, OPMD and AsymRE as one loss form.

The paper derives group-relative REINFORCE from a KL-regularized surrogate without assuming the
samples come from pi_theta, so it is off-policy by nature provided the update is regularized:

  A_i = R_i - mean_j R_j                                   (group baseline; optional / std)
  l_{i,t} = -M_{i,t} w_{i,t} A_i log pi_theta(o_{i,t}) + reg_{i,t}           (token-mean)
  rho_{i,t} = pi_theta / pi_old, detached (it only selects and weighs tokens)

- REC (regularize by clipping, read as masking): M keeps a token when
  one-side:  (A >= 0 and rho <= 1 + eps_high) or (A <= 0 and rho >= 1 - eps_low)   (PPO's rule)
  two-side:  1 - eps_low <= rho <= 1 + eps_high
  ring:      two-side, or (A >= 0 and rho <= 1 - eps'_low) or (A <= 0 and rho >= 1 + eps'_high)
  none:      every token (plain REINFORCE)
  and w is 1 (NoIS), rho (IS: GRPO's importance-weighted gradient), clip(rho, 1 - eps'_low,
  1 + eps'_high) (truncated IS) or exp(A / temp) (RED-Weight).
- OPMD (Kimi's regularizer, an additive penalty): reg = c (log pi_theta - log pi_old)^2, the 1/2 of
  the Kimi paper absorbed into c as Trinity-RFT does.
- AsymRE: a shifted baseline A_i = R_i - (mean_j R_j + delta), delta < 0; on sampled data this equals
  REINFORCE plus |delta| log pi_theta, a forward-KL pull toward the behaviour policy. A group of one
  response has no group baseline and gets advantage 0 (so no pull either), as in every group-relative
  transform here.
- RED (shape the data instead of regularizing the update): RED-Drop drops surplus negatives so each
  group holds as many below-mean as at-or-above-mean responses (advantage `red_drop`); RED-Weight
  weights responses by exp(A / temp) (weight `advantage`). Both use no mask, as Trinity-RFT's
  example configs do.

GRPO is one-side + IS + std-normalized advantages; plain REINFORCE is none / NoIS.

Sources: masks, weights, regularizers and defaults (eps 0.2/0.2, eps' 0.6/2.0, temp 1, token-mean,
no std normalization) follow Trinity-RFT's code, which the paper's experiments use; OPMD's
coefficient 0.1 and AsymRE's delta = -0.1 follow the paper's settings as reported in the notes.
The loss is written with log(pi_theta / pi_old) instead of log pi_theta: the gradient is the same
(log pi_old is a constant) and the loss value stays near 0 instead of drifting with the likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.losses.slots import LOSS_FORMS, SlotContext, needs_config
from policylab.lm.trainer import RLVRConfig

MASKS = ("none", "one-side", "two-side", "ring")
WEIGHTS = ("none", "importance_sampling", "truncated_importance_sampling", "advantage")
REGULARIZERS = ("none", "k2", "forward-kl")


@dataclass(frozen=True)
class RECConfig(RLVRConfig):
    advantage: str = "dr_grpo"  # R - group mean
    loss: str = "rec"
    clip: str = "none"  # REC clips by masking inside the loss form
    aggregation: str = "token-mean"
    rec_mask: str = "one-side"
    rec_weight: str = "none"
    rec_regularizer: str = "none"
    rec_reg_coef: float = param(0.0, ge=0)
    eps_low_prime: float = param(0.6, gt=0, le=1)
    eps_high_prime: float = param(2.0, gt=0)
    advantage_temp: float = param(1.0, gt=0)
    """temp of the RED-Weight weight exp(A / temp)."""
    asymre_shift: float = 0.0
    """delta of AsymRE's baseline mean + delta (advantage 'asymre')."""

    def check(self) -> None:
        super().check()
        for field, allowed in (("rec_mask", MASKS), ("rec_weight", WEIGHTS), ("rec_regularizer", REGULARIZERS)):
            if getattr(self, field) not in allowed:
                raise ConfigError(f"{type(self).__name__}.{field} = {getattr(self, field)!r} is not allowed: "
                                  f"one of {', '.join(allowed)}")


@dataclass(frozen=True)
class OPMDConfig(RECConfig):
    rec_mask: str = "none"
    rec_regularizer: str = "k2"
    rec_reg_coef: float = param(0.1, ge=0)


@dataclass(frozen=True)
class AsymREConfig(RECConfig):
    advantage: str = "asymre"
    rec_mask: str = "none"
    asymre_shift: float = -0.1


@dataclass(frozen=True)
class REDDropConfig(RECConfig):
    """RED-Drop: plain group-relative REINFORCE on groups rebalanced by dropping surplus negatives."""

    advantage: str = "red_drop"
    rec_mask: str = "none"


@dataclass(frozen=True)
class REDWeightConfig(RECConfig):
    """RED-Weight: plain group-relative REINFORCE with each response weighted by exp(A / temp)."""

    rec_mask: str = "none"
    rec_weight: str = "advantage"


@ADVANTAGES.register("red_drop")
def balanced_drop_advantage(rewards: torch.Tensor, metrics: dict | None = None, **_) -> torch.Tensor:
    """RED-Drop (Trinity-RFT `rec_advantage.py`, drop = "balance"): in a group with more negatives
    (R below the group mean) than positives (R at or above it), drop randomly chosen negatives until
    the two counts match; dropped responses get advantage 0 and the baseline is the mean of the kept
    rewards, A_i = R_i - mean_kept. Random choices use torch's global generator (seeded, checkpointed)."""
    mean = rewards.mean(1, keepdim=True)
    positive = rewards >= mean
    surplus = ((~positive).sum(1) - positive.sum(1)).clamp(min=0)
    # a random rank among each group's negatives; positives rank last so they are never dropped
    scores = torch.rand(rewards.shape, device=rewards.device).masked_fill(positive, float("inf"))
    rank = scores.argsort(1).argsort(1)
    keep = ~((~positive) & (rank < surplus.unsqueeze(1)))
    kept_mean = (rewards * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True)
    if metrics is not None:
        metrics["red/drop_frac"] = (~keep).float().mean()
    return (rewards - kept_mean) * keep


@ADVANTAGES.register("asymre")
def shifted_baseline_advantage(rewards: torch.Tensor, cfg=None, **_) -> torch.Tensor:
    """AsymRE: A_i = R_i - (mu_q + delta) for groups of two or more responses.

    A group of one gets advantage 0, not -delta: its mean is its own reward, so there is no group
    baseline to shift, and the library-wide rule (`policylab.lm.advantages`) gives such a group no
    signal. Trinity-RFT (`asymre_advantage.py`) does not apply the shift there either: it falls back
    to baseline 0 (advantage R), the fallback we decline for every transform."""
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards)
    shift = cfg.asymre_shift if isinstance(cfg, RECConfig) else 0.0
    return rewards - (rewards.mean(1, keepdim=True) + shift)


def keep_mask(rho: torch.Tensor, adv: torch.Tensor, cfg: RECConfig) -> torch.Tensor:
    """M_{i,t}: which tokens the clipping-as-masking rule lets through (bool)."""
    low, high = 1 - cfg.eps_low, 1 + cfg.eps_high
    if cfg.rec_mask == "none":
        return torch.ones_like(rho, dtype=torch.bool)
    two_side = (rho >= low) & (rho <= high)
    if cfg.rec_mask == "two-side":
        return two_side
    if cfg.rec_mask == "one-side":
        return ((adv >= 0) & (rho <= high)) | ((adv <= 0) & (rho >= low))
    return two_side | ((adv >= 0) & (rho <= 1 - cfg.eps_low_prime)) | ((adv <= 0) & (rho >= 1 + cfg.eps_high_prime))


def token_weight(rho: torch.Tensor, adv: torch.Tensor, cfg: RECConfig) -> torch.Tensor | float:
    if cfg.rec_weight == "importance_sampling":
        return rho
    if cfg.rec_weight == "truncated_importance_sampling":
        return rho.clamp(1 - cfg.eps_low_prime, 1 + cfg.eps_high_prime)
    if cfg.rec_weight == "advantage":
        return torch.exp(adv / cfg.advantage_temp)
    return 1.0


@LOSS_FORMS.register("rec")
@needs_config(RECConfig)
def rec_loss(ratio: torch.Tensor, clipped: torch.Tensor, adv: torch.Tensor, cfg: RECConfig,
             ctx: SlotContext) -> torch.Tensor:
    """l = -M w A log(pi/pi_old) + reg, with M and w from the detached ratio."""
    log_ratio = torch.log(ratio)
    rho = ratio.detach()
    kept = keep_mask(rho, adv, cfg)
    loss = -kept.float() * token_weight(rho, adv, cfg) * adv * log_ratio
    if cfg.rec_regularizer == "k2":
        loss = loss + cfg.rec_reg_coef * log_ratio.square()
    elif cfg.rec_regularizer == "forward-kl":
        loss = loss - cfg.rec_reg_coef * log_ratio
    tokens = ctx.mask.sum().clamp(min=1)
    ctx.metrics["rec/masked_frac"] = ((~kept).float() * ctx.mask).sum() / tokens
    ctx.metrics["rec/abs_log_ratio"] = (log_ratio.detach().abs() * ctx.mask).sum() / tokens
    return loss
