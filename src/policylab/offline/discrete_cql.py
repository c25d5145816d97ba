"""Discrete CQL (Kumar et al. 2020, CQL(H) for discrete actions, their eq. 4 with the log-sum-exp exact):

    L(theta) = alpha E_{s~D}[ log sum_a exp Q_theta(s, a) - Q_theta(s, a_D) ] + L_DQN(theta)
The first term pushes Q down on every action and back up on the dataset's, so the greedy policy
stays near the data. L_DQN is the double-DQN Huber loss averaged over the batch (`core/q_learning.py`),
with no extra 1/2 on it: the form of Schweighofer et al.'s code (ml-jku/OfflineRL, `source/agents/cql.py`:
SmoothL1Loss + alpha * mean(logsumexp Q - Q(s, a))); the CQL authors' Atari code adds the same term to
QR-DQN's quantile Huber loss. alpha = 1 is d3rlpy's default; the dataset-perspective study uses 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.offline.dqn import OfflineDQN, OfflineDQNConfig


@dataclass(frozen=True)
class DiscreteCQLConfig(OfflineDQNConfig):
    alpha: float = param(1.0, ge=0)
    """Weight of the conservative term."""


class DiscreteCQL(OfflineDQN):
    name = "cql_discrete"

    def regularizer(self, q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        q_data = q_all.gather(-1, actions[:, None]).squeeze(-1)
        return self.cfg.alpha * (torch.logsumexp(q_all, -1) - q_data).mean()
