"""The RLVR objective as one module: a choice per slot, resolved once from the config."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.losses.shaping import SHAPERS
from policylab.lm.losses.slots import AGGREGATIONS, CLIPS, LOSS_FORMS, RATIOS, SlotContext, k3_kl


@dataclass(frozen=True)
class ObjectiveConfig(Config):
    advantage: str = "grpo"
    """Slot 1, reward -> advantage (`policylab.lm.advantages.ADVANTAGES`)."""
    adv_eps: float = param(1e-6, ge=0)
    """Added to a std before dividing by it."""
    ratio: str = "token"
    """Slot 2: token | sequence (GSPO) | sequence_token."""
    clip: str = "clip"
    """Slot 3: clip | none."""
    eps_low: float = param(0.2, ge=0)
    eps_high: float = param(0.2, ge=0)
    dual_clip: float | None = param(None, gt=1)
    """Cap of negative-advantage token losses at -c*A (verl clip_ratio_c); None disables it."""
    loss: str = "ppo"
    """Slot 4: ppo (clipped surrogate) | pg (importance-weighted policy gradient)."""
    aggregation: str = "seq-mean-token-mean"
    """Slot 5: token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm."""
    agg_constant: float | None = param(None, gt=0)
    """Denominator of seq-mean-token-sum-norm; None uses max_new_tokens (Dr. GRPO's L_max)."""
    shaping: tuple[str, ...] = ()
    """Slot 6, applied in order after scoring: dynamic_sampling, overlong_penalty, overlong_filter."""
    kl_coef: float = param(0.0, ge=0)
    """beta of the k3 KL to the reference (initial) policy; 0 skips the reference model."""
    ent_coef: float = param(0.0, ge=0)
    """Entropy bonus coefficient."""

    def check(self) -> None:
        for field, registry in (("advantage", ADVANTAGES), ("ratio", RATIOS), ("clip", CLIPS), ("loss", LOSS_FORMS),
                                ("aggregation", AGGREGATIONS)):
            if getattr(self, field) not in registry:
                raise ConfigError(f"{type(self).__name__}.{field} = {getattr(self, field)!r} is not allowed: known "
                                  f"{registry.kind}s: {', '.join(registry.names())}")
        for field, registry in (("clip", CLIPS), ("loss", LOSS_FORMS)):
            needed = getattr(registry.get(getattr(self, field)), "config_type", None)
            if needed is not None and not isinstance(self, needed):
                raise ConfigError(f"{type(self).__name__}.{field} = {getattr(self, field)!r} is not allowed with "
                                  f"this config: it reads the fields of {needed.__name__}; use that config")
        for name in self.shaping:
            if name not in SHAPERS:
                raise ConfigError(f"{type(self).__name__}.shaping has {name!r}: known shapers: "
                                  f"{', '.join(SHAPERS.names())}")


class RLVRObjective(nn.Module):
    """Loss-as-module: forward(logp, old_logp, advantages, mask, ...) -> (loss, metrics).

    `rows` carries per-response tensors of the minibatch for slots that need them (see `SlotContext`);
    metrics a slot writes into its context are returned with the objective's own.
    """

    def __init__(self, cfg: ObjectiveConfig, default_constant: float | None = None):
        super().__init__()
        self.cfg = cfg
        self.ratio_fn = RATIOS.get(cfg.ratio)
        self.clip_fn = CLIPS.get(cfg.clip)
        self.loss_fn = LOSS_FORMS.get(cfg.loss)
        self.agg_fn = AGGREGATIONS.get(cfg.aggregation)
        self.constant = cfg.agg_constant if cfg.agg_constant is not None else default_constant

    def forward(self, logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                ref_logp: torch.Tensor | None = None, entropy: torch.Tensor | None = None,
                rows: dict[str, torch.Tensor] | None = None):
        cfg = self.cfg
        ctx = SlotContext(logp, old_logp, advantages, mask, rows or {})
        ratio = self.ratio_fn(logp, old_logp, mask)
        clipped = self.clip_fn(ratio, cfg, ctx)
        per_token = self.loss_fn(ratio, clipped, advantages, cfg, ctx)
        policy_loss = self.agg_fn(per_token, mask, self.constant)
        loss = policy_loss
        tokens = mask.sum().clamp(min=1)
        metrics = {"loss/policy": policy_loss.detach(), **ctx.metrics}
        with torch.no_grad():
            metrics["clip_frac"] = ((clipped != ratio).float() * mask).sum() / tokens
            metrics["ratio_mean"] = (ratio * mask).sum() / tokens
        if cfg.kl_coef > 0:
            if ref_logp is None:
                raise ConfigError("kl_coef > 0 needs the reference policy's log-probs")
            kl = self.agg_fn(k3_kl(logp, ref_logp), mask, self.constant)
            loss = loss + cfg.kl_coef * kl
            metrics["kl_ref"] = kl.detach()
        if cfg.ent_coef > 0:
            if entropy is None:
                raise ConfigError("ent_coef > 0 needs the token entropies")
            loss = loss - cfg.ent_coef * self.agg_fn(entropy, mask, self.constant)
        return loss, metrics
