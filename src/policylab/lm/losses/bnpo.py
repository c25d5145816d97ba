"""BNPO — Beta Normalization Policy Optimization (Xiao et al. 2025, arXiv 2506.02864; official code
github.com/changyi7231/BNPO, `compute_bnpo_outcome_advantage`).

Slot 1 only: the per-prompt success probability p(q) is treated as Beta-distributed over prompts,
and the centred reward is divided by a Beta density whose parameters are re-fitted every batch:

  R <- (R - r_min) / (r_max - r_min)                   rewards mapped to [0, 1]
  p_q = mean of R over the group of q
  m, v = mean and unbiased variance of p_q over the batch's prompts      (method of moments)
  k = m (1 - m) / v - 1,  a = k m,  b = k (1 - m)                         (fitted Beta(a, b))
  alpha = max(1, 1 + a/3),  beta = max(1, 1 + b/3)    the variance-minimising normalization
  A(q, o) = (R(q, o) - p_q) / f(p_q; alpha, beta),    f the Beta(alpha, beta) density, 1/f <= 1e6

Special cases: alpha = beta = 1 gives f = 1 (REINFORCE with the group mean as baseline, Dr. GRPO's
advantage); alpha = beta = 3/2 gives f proportional to sqrt(p(1-p)), GRPO's (population) std.

Sources: the formulas above and the max(1, .) clamp, the 1e6 cap and the per-batch re-fit (no
state across steps) follow the official code; the method of moments is what that code uses.
Advantage decomposition (paper §3, "multiple reward components"): each component gets its own
p_q and its own Beta fit and the advantages are averaged, A = (1/K) sum_k A^(k).

Our choices, where the code is silent or differs:
- Degenerate batch: when every prompt has the same p_q, v = 0 and the fit is undefined (the code
  divides by zero). All prompts then share one density value, so the normalization can only
  rescale the whole batch; we take alpha = beta = 1 (scale 1) and report `bnpo/degenerate` = 1.
- A group of one response gets p_q = R (advantage 0, the library's convention for every
  group-relative transform); the official code sets p_q = 0 there, i.e. the raw reward.
- A batch of one prompt has no spread to fit: the same fallback as the degenerate batch.
- Every other slot is GRPO's, so that a comparison isolates the normalization; the official run
  script also uses clip 0.2/0.28, dual clip 10 and seq-mean-token-sum (set them on the config).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.trainer import RLVRConfig

MAX_INVERSE_DENSITY = 1e6  # the official code's cap on 1/f
VARIANCE_FLOOR = 1e-12


@dataclass(frozen=True)
class BNPOConfig(RLVRConfig):
    advantage: str = "bnpo"
    reward_min: float = 0.0
    reward_max: float = param(1.0)
    """Affine map of rewards to [0, 1] (the code's min_value / max_value)."""
    bnpo_components: tuple[str, ...] = ()
    """Advantage decomposition: batch reward fields to normalize separately and average, e.g.
    ("exact", "dense"); empty uses the (shaped) reward alone."""

    def check(self) -> None:
        super().check()
        if self.reward_max <= self.reward_min:
            raise ConfigError(f"BNPOConfig.reward_max = {self.reward_max} is not allowed: must exceed reward_min "
                              f"= {self.reward_min}")
        for name in self.bnpo_components:
            if name not in ("rewards", "exact", "dense"):
                raise ConfigError(f"BNPOConfig.bnpo_components has {name!r}: allowed: rewards, exact, dense")


def fit_normalization(success: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(alpha, beta, degenerate) from per-prompt success rates [P] by the method of moments."""
    if success.numel() < 2:
        return success.new_ones(()), success.new_ones(()), True
    m, v = success.mean(), success.var()
    if v <= VARIANCE_FLOOR:
        return success.new_ones(()), success.new_ones(()), True
    k = m * (1 - m) / v - 1
    a, b = k * m, k * (1 - m)
    return (1 + a / 3).clamp(min=1.0), (1 + b / 3).clamp(min=1.0), False


def beta_density(p: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Beta(alpha, beta) pdf at p in [0, 1], 0 at an endpoint where the exponent is positive."""
    log_norm = torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(alpha + beta)
    log_pdf = torch.xlogy(alpha - 1, p) + torch.xlogy(beta - 1, 1 - p) - log_norm
    return log_pdf.exp()


def bnpo_component(rewards: torch.Tensor, reward_min: float = 0.0,
                   reward_max: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BNPO advantages [P, G] of one reward component, and the fitted normalization."""
    scaled = (rewards.float() - reward_min) / (reward_max - reward_min)
    if scaled.min() < -1e-6 or scaled.max() > 1 + 1e-6:
        raise ConfigError(f"BNPO rewards must lie in [reward_min, reward_max] = [{reward_min}, {reward_max}]; got "
                          f"[{float(rewards.min()):.4g}, {float(rewards.max()):.4g}]: set reward_min/reward_max")
    success = scaled.mean(1)
    alpha, beta, degenerate = fit_normalization(success)
    inverse = (1.0 / beta_density(success, alpha, beta)).clamp(0.0, MAX_INVERSE_DENSITY)
    adv = (scaled - success[:, None]) * inverse[:, None]
    return adv, {"alpha": alpha, "beta": beta, "degenerate": torch.tensor(float(degenerate))}


@ADVANTAGES.register("bnpo")
def bnpo_advantage(rewards: torch.Tensor, batch=None, cfg=None, metrics=None, **_) -> torch.Tensor:
    """A = (1/K) sum_k (R_k - p_k) / f(p_k; alpha_k, beta_k) over the configured reward components."""
    low, high = (cfg.reward_min, cfg.reward_max) if isinstance(cfg, BNPOConfig) else (0.0, 1.0)
    names = cfg.bnpo_components if isinstance(cfg, BNPOConfig) and cfg.bnpo_components else ()
    if names and batch is None:
        raise ConfigError("bnpo_components needs the rollout batch to read the reward components from")
    parts = [getattr(batch, name).view_as(rewards) for name in names] or [rewards]
    advantages, fits = zip(*(bnpo_component(part, low, high) for part in parts))
    if metrics is not None:
        for key in ("alpha", "beta", "degenerate"):
            metrics[f"bnpo/{key}"] = torch.stack([f[key] for f in fits]).float().mean()
    return torch.stack(advantages).mean(0)
