"""TD3 (Fujimoto et al. 2018): clipped double-Q, delayed policy updates, target policy smoothing."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policylab.core.config import param
from policylab.core.nn import EnsembleMLP, adam, mlp, soft_update
from policylab.core.targets import q_values, td3_target
from policylab.envs.spaces import ActionScaler, action_dim, obs_dim, require_box
from policylab.rl.collectors import ReplayConfig


@dataclass(frozen=True)
class TD3Config(ReplayConfig):
    learning_starts: int = param(25_000, ge=0)
    """Uniform-random steps before learning (the authors' start_timesteps)."""
    exploration_noise: float = param(0.1, ge=0)
    """Std of the Gaussian exploration noise, in units of the action half-range."""
    policy_noise: float = param(0.2, ge=0)
    """Std of the target policy smoothing noise (section 5.3)."""
    noise_clip: float = param(0.5, ge=0)
    """Clip of the smoothing noise."""
    policy_delay: int = param(2, gt=0)
    """Critic updates per actor and target update (section 5.2)."""


class TD3:
    name = "td3"

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: TD3Config, total_updates: int | None = None):
        require_box(act_space, "td3")
        self.cfg = cfg
        n_obs, n_act = obs_dim(obs_space), action_dim(act_space)
        self.actor = torch.nn.Sequential(mlp(n_obs, n_act, cfg.hidden), torch.nn.Tanh())
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = EnsembleMLP(2, n_obs + n_act, 1, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), cfg.lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.lr)
        self.scaler = ActionScaler(act_space)
        self.updates = 0
        self._last_actor_loss = torch.zeros(())

    q_values = staticmethod(q_values)

    @torch.no_grad()
    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        action = self.actor(obs)
        return (action + self.cfg.exploration_noise * torch.randn_like(action)).clamp(-1, 1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        unit = self.actor(obs_t) if deterministic else self.explore(obs_t)
        return self.scaler.to_env(unit.numpy())

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs = batch["obs"]
        target = td3_target(self.critic_target, self.actor_target, batch["rewards"], batch["next_obs"],
                            batch["terminated"], cfg.gamma, cfg.policy_noise, cfg.noise_clip)
        q = self.q_values(self.critic, obs, batch["actions"])
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        self.updates += 1
        if self.updates % cfg.policy_delay == 0:  # delayed actor and target updates
            self.critic.requires_grad_(False)
            actor_loss = -self.q_values(self.critic, obs, self.actor(obs))[0].mean()  # Q1, as in the paper
            self.critic.requires_grad_(True)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            soft_update(self.actor_target, self.actor, cfg.tau)
            soft_update(self.critic_target, self.critic, cfg.tau)
            self._last_actor_loss = actor_loss.detach()
        return {"loss/critic": critic_loss.detach(), "loss/actor": self._last_actor_loss, "q": q.detach().mean()}

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
