"""Slots 2-5 of the RLVR objective: importance ratio, clip rule, per-token loss form, aggregation.

Tensors are [B, R] over response tokens with a float mask; `cfg` is an `ObjectiveConfig`.
Clip rules and loss forms also receive a `SlotContext`: what a method beyond the fixed-form
slots needs (the advantages and behaviour log-probs for BAPO's bound search, per-response
correctness and group success rate for NFT) and a dict for the metrics it wants logged.
A slot that only works with its method's config fields names that config in `config_type`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from policylab.core.registry import Registry

RATIOS: Registry = Registry("importance ratio")
CLIPS: Registry = Registry("clip rule")
LOSS_FORMS: Registry = Registry("per-token loss form")
AGGREGATIONS: Registry = Registry("loss aggregation")

MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: bounds a ratio without touching any realistic value


@dataclass
class SlotContext:
    logp: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    rows: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per-response [B] tensors of the minibatch: `correct` (0/1), `success_rate` (its group's mean)."""
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


def needs_config(config_type: type):
    """Mark a slot function as usable only with `config_type` (it reads that config's fields)."""
    def mark(fn):
        fn.config_type = config_type
        return fn
    return mark


def _log_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    return (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)


@RATIOS.register("token")
def token_ratio(logp, old_logp, mask):
    """r_{i,t} = pi_theta(o_t) / pi_old(o_t)  (PPO, GRPO)."""
    return torch.exp(_log_ratio(logp, old_logp))


def _sequence_log_ratio(logp, old_logp, mask):
    lengths = mask.sum(-1, keepdim=True).clamp(min=1)
    return (_log_ratio(logp, old_logp) * mask).sum(-1, keepdim=True) / lengths


@RATIOS.register("sequence")
def sequence_ratio(logp, old_logp, mask):
    """GSPO eq. (7): s_i = exp((1/|o_i|) sum_t log r_{i,t}), the same for every token of o_i."""
    return torch.exp(_sequence_log_ratio(logp, old_logp, mask)).expand_as(logp)


@RATIOS.register("sequence_token")
def sequence_token_ratio(logp, old_logp, mask):
    """GSPO-token eq. (13): s_{i,t} = sg[s_i] * pi(o_t) / sg[pi(o_t)]: value s_i, token-wise gradient."""
    s = torch.exp(_sequence_log_ratio(logp, old_logp, mask)).detach()
    return s * torch.exp(logp - logp.detach())


@CLIPS.register("clip")
def clip_ratio(ratio, cfg, ctx=None):
    """clip(r, 1 - eps_low, 1 + eps_high); eps_low = eps_high is PPO, eps_high > eps_low is DAPO's clip-higher."""
    return ratio.clamp(1.0 - cfg.eps_low, 1.0 + cfg.eps_high)


@CLIPS.register("none")
def no_clip(ratio, cfg, ctx=None):
    return ratio


@LOSS_FORMS.register("ppo")
def clipped_surrogate(ratio, clipped, adv, cfg, ctx=None):
    """l = -min(r A, clip(r) A); with dual_clip = c > 1, negative-advantage tokens are capped at -c A."""
    loss = torch.maximum(-ratio * adv, -clipped * adv)
    if cfg.dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -cfg.dual_clip * adv), loss)
    return loss


@LOSS_FORMS.register("pg")
def importance_weighted_pg(ratio, clipped, adv, cfg, ctx=None):
    """l = -r A: the unclipped importance-weighted policy gradient (REINFORCE when on-policy)."""
    return -ratio * adv


def _row_counts(mask):
    return mask.sum(-1)


@AGGREGATIONS.register("token-mean")
def token_mean(loss, mask, constant):
    """sum_{i,t} l / sum_{i,t} m: every token of the batch weighs the same (DAPO, Lite PPO)."""
    return (loss * mask).sum() / mask.sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-mean")
def seq_mean_token_mean(loss, mask, constant):
    """(1/N) sum_i (1/|o_i|) sum_t l (GRPO, GSPO); N counts the rows with at least one token."""
    counts = _row_counts(mask)
    per_seq = (loss * mask).sum(-1) / counts.clamp(min=1)
    return per_seq.sum() / (counts > 0).sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-sum")
def seq_mean_token_sum(loss, mask, constant):
    counts = _row_counts(mask)
    return (loss * mask).sum() / (counts > 0).sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(loss, mask, constant):
    """Dr. GRPO: sum_{i,t} l / (B * constant), a denominator that never changes during training.

    With constant = L_max (the generation budget) this is Dr. GRPO's sum / (G * L_max) per prompt,
    averaged over prompts; B is the number of rows in the batch.
    """
    if constant is None or constant <= 0:
        raise ValueError(f"seq-mean-token-sum-norm needs a positive constant, got {constant!r}")
    return (loss * mask).sum() / (loss.shape[0] * constant)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimator k3 = pi_ref/pi - log(pi_ref/pi) - 1 >= 0 (GRPO eq. 4)."""
    d = (ref_logp - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.exp(d) - d - 1.0
