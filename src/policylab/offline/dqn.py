"""Offline DQN: double DQN on a fixed dataset (the off-policy baseline of the dataset-perspective study).

    L(theta) = E_D[ Huber(Q_theta(s, a) - (r + gamma (1 - d) Qbar(s', argmax_a' Q_theta(s', a')))) ]
Nothing keeps the greedy action inside the data, which is why it needs high state-action coverage
(Schweighofer et al. 2022). Defaults follow that paper's offline runs: 3 x 256, Adam 1e-4, batch
128, target copied every 100 updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import param
from policylab.core.q_learning import DiscreteQ
from policylab.offline.train import OfflineConfig, Prepared, require_actions


@dataclass(frozen=True)
class OfflineDQNConfig(OfflineConfig):
    batch_size: int = param(128, gt=0)
    hidden: tuple[int, ...] = (256, 256, 256)
    lr: float = param(1e-4, gt=0)
    target_every: int = param(100, gt=0)
    """Updates between hard copies of the Q-network into its target."""


class OfflineDQN:
    name = "dqn_offline"

    def __init__(self, prepared: Prepared, cfg: OfflineDQNConfig):
        data = prepared.data
        require_actions(data, self.name, discrete=True)
        self.cfg = cfg
        self.learner = DiscreteQ(data.observations.shape[1], int(data.metadata["num_actions"]), cfg.hidden, cfg.lr,
                                 cfg.target_every)

    def regularizer(self, q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor | None:
        """An extra term on Q(s, .) of the batch (discrete CQL's); none for plain DQN."""
        return None

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        actions = batch["actions"]
        td, q_all = self.learner.td_loss(batch["observations"], actions, batch["rewards"],
                                         batch["next_observations"], batch["terminals"], self.cfg.gamma)
        extra = self.regularizer(q_all, actions)
        self.learner.step(td if extra is None else td + extra)
        metrics = {"loss/td": td.detach(), "q": q_all.detach().max(-1).values.mean()}
        if extra is not None:
            metrics["loss/regularizer"] = extra.detach()
        return metrics

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.learner.greedy(obs)

    def state_dict(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state)
