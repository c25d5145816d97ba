"""TD3 (Fujimoto et al. 2018): clipped double-Q, delayed policy updates, target policy smoothing.

On image observations the CNN encoder belongs to the critic, as in SAC (`rl.sac`): trained by the critic
loss, read detached by the actor, next states encoded without gradient (DrQ-v2's split)."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from policylab.core.actor_critic import DeterministicActorCritic, q_values, td3_target
from policylab.core.config import param
from policylab.envs.encoders import ObservationInput
from policylab.envs.spaces import ActionScaler, action_dim, require_box
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


class TD3(DeterministicActorCritic):
    name = "td3"

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: TD3Config, total_updates: int | None = None):
        require_box(act_space, "td3")
        self.cfg = cfg
        self.obs_in = ObservationInput(obs_space, cfg.normalize_obs, self.name)
        self.encoder = self.obs_in.encoder
        super().__init__(self.obs_in.features, action_dim(act_space), cfg.hidden, cfg.lr)
        if self.encoder.has_images:  # the critic's optimizer trains its encoder
            self.critic_opt.add_param_group({"params": list(self.encoder.parameters())})
        self.scaler = ActionScaler(act_space)

    q_values = staticmethod(q_values)

    @torch.no_grad()
    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        self.obs_in.observe(obs)  # merged after the next update
        action = self.actor(self.encoder(self.obs_in(obs)))
        return (action + self.cfg.exploration_noise * torch.randn_like(action)).clamp(-1, 1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        unit = self.actor(self.encoder(self.obs_in(obs_t))) if deterministic else self.explore(obs_t)
        return self.scaler.to_env(unit.numpy())

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs = self.encoder(self.obs_in(batch["obs"]))  # the critic loss trains the encoder
        with torch.no_grad():
            next_obs = self.encoder(self.obs_in(batch["next_obs"]))
        target = td3_target(self.critic_target, self.actor_target, batch["rewards"], next_obs,
                            batch["terminated"], cfg.gamma, cfg.policy_noise, cfg.noise_clip)
        critic_loss, q = self.critic_step(obs, batch["actions"], target)
        if self.actor_due(cfg.policy_delay):  # delayed actor and target updates
            features = obs.detach()
            self.actor_step(-self.frozen_critic_q1(features, self.actor(features)).mean(), cfg.tau)  # Q1 (paper)
        self.obs_in.commit()
        return {"loss/critic": critic_loss, "loss/actor": self._last_actor_loss, "q": q.mean()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.obs_in.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.obs_in.load_state_dict(state)
        super().load_state_dict(state)
