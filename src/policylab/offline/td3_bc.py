"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

Critic: TD3's (clipped double-Q, target policy smoothing, eq. 10/14 of TD3). Actor, every
`policy_delay` updates (eq. 3 of TD3+BC):
    max_pi  E_D[ lambda Q1(s, pi(s)) - (pi(s) - a)^2 ],   lambda = alpha / mean_batch |Q1(s_i, a_i)|
with lambda detached, alpha = 2.5, and states standardized with the dataset's statistics.
`alpha = inf`-like behaviour (no BC term) is `bc_weight = 0`: plain offline TD3, kept for the
overestimation test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.actor_critic import DeterministicActorCritic, td3_target
from policylab.core.config import param
from policylab.offline.train import OfflineConfig, Prepared, require_actions


@dataclass(frozen=True)
class TD3BCConfig(OfflineConfig):
    alpha: float = param(2.5, gt=0)
    """Scale of the Q term relative to the BC term."""
    bc_weight: float = param(1.0, ge=0)
    """Weight of the (pi(s) - a)^2 term; 0 turns TD3+BC into plain offline TD3."""
    policy_noise: float = param(0.2, ge=0)
    noise_clip: float = param(0.5, ge=0)
    policy_delay: int = param(2, gt=0)
    tau: float = param(0.005, gt=0, le=1)


class TD3BC(DeterministicActorCritic):
    name = "td3_bc"

    def __init__(self, prepared: Prepared, cfg: TD3BCConfig):
        data = prepared.data
        require_actions(data, self.name, discrete=False)
        self.cfg = cfg
        super().__init__(data.observations.shape[1], data.actions.shape[1], cfg.hidden, cfg.lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, actions = batch["observations"], batch["actions"]
        target = td3_target(self.critic_target, self.actor_target, batch["rewards"], batch["next_observations"],
                            batch["terminals"], cfg.gamma, cfg.policy_noise, cfg.noise_clip)
        critic_loss, q = self.critic_step(obs, actions, target)
        if self.actor_due(cfg.policy_delay):
            pi = self.actor(obs)
            q_pi = self.frozen_critic_q1(obs, pi)
            lam = cfg.alpha / q_pi.abs().mean().detach()  # eq. 3: lambda = alpha / mean |Q|, not differentiated
            self.actor_step(-lam * q_pi.mean() + cfg.bc_weight * (pi - actions).pow(2).mean(), cfg.tau)
        return {"loss/critic": critic_loss, "loss/actor": self._last_actor_loss, "q": q.mean()}

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)
