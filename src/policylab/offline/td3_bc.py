"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

Critic: TD3's (clipped double-Q, target policy smoothing, eq. 10/14 of TD3). Actor, every
`policy_delay` updates (eq. 3 of TD3+BC):
    max_pi  E_D[ lambda Q1(s, pi(s)) - (pi(s) - a)^2 ],   lambda = alpha / mean_batch |Q1(s_i, a_i)|
with lambda detached, alpha = 2.5, and states standardized with the dataset's statistics.
`alpha = inf`-like behaviour (no BC term) is `bc_weight = 0`: plain offline TD3, kept for the
overestimation test.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import param
from policylab.core.nn import EnsembleMLP, adam, mlp, soft_update
from policylab.core.targets import q_values, td3_target
from policylab.offline.train import OfflineConfig, Prepared


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


class TD3BC:
    name = "td3_bc"

    def __init__(self, prepared: Prepared, cfg: TD3BCConfig):
        self.cfg = cfg
        data = prepared.data
        if data.discrete:
            from policylab.core.errors import ConfigError

            raise ConfigError("td3_bc needs continuous actions; this dataset's are discrete")
        n_obs, n_act = data.observations.shape[1], data.actions.shape[1]
        self.actor = torch.nn.Sequential(mlp(n_obs, n_act, cfg.hidden), torch.nn.Tanh())
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = EnsembleMLP(2, n_obs + n_act, 1, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), cfg.lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.lr)
        self.updates = 0
        self._last_actor_loss = torch.zeros(())

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, actions = batch["observations"], batch["actions"]
        target = td3_target(self.critic_target, self.actor_target, batch["rewards"], batch["next_observations"],
                            batch["terminals"], cfg.gamma, cfg.policy_noise, cfg.noise_clip)
        q = q_values(self.critic, obs, actions)
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.updates += 1
        if self.updates % cfg.policy_delay == 0:
            self.critic.requires_grad_(False)
            pi = self.actor(obs)
            q_pi = q_values(self.critic, obs, pi)[0]
            lam = cfg.alpha / q_pi.abs().mean().detach()
            actor_loss = -lam * q_pi.mean() + cfg.bc_weight * (pi - actions).pow(2).mean()
            self.critic.requires_grad_(True)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            soft_update(self.actor_target, self.actor, cfg.tau)
            soft_update(self.critic_target, self.critic, cfg.tau)
            self._last_actor_loss = actor_loss.detach()
        return {"loss/critic": critic_loss.detach(), "loss/actor": self._last_actor_loss, "q": q.detach().mean()}

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "actor_target": self.actor_target.state_dict(),
                "critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "updates": self.updates, "last_actor_loss": self._last_actor_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("actor", "actor_target", "critic", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, key).load_state_dict(state[key])
        self.updates = state["updates"]
        self._last_actor_loss = state["last_actor_loss"]
