"""The RLVR baselines as slot choices on the shared objective (notes §1).

GRPO (Shao et al. 2024, arXiv 2402.03300, eq. 3): A = (R - mu_q)/(sigma_q + eps), token ratio,
  symmetric clip 0.2, seq-mean-token-mean; the KL term (beta = 0.04 in the paper) is left at 0
  here, as DAPO, Dr. GRPO and most RLVR recipes since have it.
DAPO (Yu et al. 2025, arXiv 2503.14476, eq. 8-13): clip-higher (0.2 / 0.28), dynamic sampling,
  token-mean aggregation, soft overlong penalty, no KL.
Dr. GRPO (Liu et al. 2025, arXiv 2503.20783, eq. 5): A = R - mu_q, sum of token losses divided
  by the constant B * L_max (seq-mean-token-sum-norm with L_max = max_new_tokens).
GSPO (Zheng et al. 2025, arXiv 2507.18071, eq. 5-7): length-normalised sequence ratio, clip
  3e-4 / 4e-4 on it, seq-mean-token-mean, GRPO advantages.
"""

from __future__ import annotations

from dataclasses import dataclass

from policylab.core.config import param
from policylab.lm.trainer import RLVRConfig


@dataclass(frozen=True)
class GRPOConfig(RLVRConfig):
    pass


@dataclass(frozen=True)
class DAPOConfig(RLVRConfig):
    eps_high: float = param(0.28, ge=0)
    aggregation: str = "token-mean"
    shaping: tuple[str, ...] = ("overlong_penalty", "dynamic_sampling")


@dataclass(frozen=True)
class DrGRPOConfig(RLVRConfig):
    advantage: str = "dr_grpo"
    aggregation: str = "seq-mean-token-sum-norm"


@dataclass(frozen=True)
class GSPOConfig(RLVRConfig):
    ratio: str = "sequence"
    eps_low: float = param(3e-4, ge=0)
    eps_high: float = param(4e-4, ge=0)
