"""SAC (Haarnoja et al. 2018, "Algorithms and Applications"): twin soft Q, tanh-Gaussian actor,
automatic entropy tuning. The two critics are one vectorized ensemble (one matmul per layer).

On image observations the CNN encoder belongs to the critic: the critic loss trains it, the actor reads its
features detached, and next states are encoded by it without gradient (DrQ-v2's split, Yarats et al. 2022;
no augmentation here). With no image part the encoder is the identity and nothing changes."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policylab.core.config import param
from policylab.core.nn import EnsembleMLP, TanhGaussianHead, adam, mlp, soft_update
from policylab.envs.encoders import ObservationInput
from policylab.envs.spaces import ActionScaler, action_dim, require_box
from policylab.rl.collectors import ReplayConfig


@dataclass(frozen=True)
class SACConfig(ReplayConfig):
    init_alpha: float = param(1.0, gt=0)
    """Initial temperature."""
    autotune: bool = True
    """Learn the temperature towards the target entropy (eq. 18)."""
    target_entropy_scale: float = param(1.0, gt=0)
    """Target entropy = -scale * action dims."""
    num_critics: int = param(2, ge=1)
    """Size of the Q ensemble (clipped double-Q uses the min)."""


class SAC:
    name = "sac"

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: SACConfig, total_updates: int | None = None):
        require_box(act_space, "sac")
        self.cfg = cfg
        self.obs_in = ObservationInput(obs_space, cfg.normalize_obs, self.name)
        self.encoder = self.obs_in.encoder
        n_obs, n_act = self.obs_in.features, action_dim(act_space)
        self.actor = mlp(n_obs, 2 * n_act, cfg.hidden)
        self.head = TanhGaussianHead()
        self.critic = EnsembleMLP(cfg.num_critics, n_obs + n_act, 1, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_alpha), requires_grad=True)
        self.target_entropy = -cfg.target_entropy_scale * n_act
        self.actor_opt = adam(self.actor.parameters(), cfg.lr)
        self.critic_opt = adam([*self.critic.parameters(), *self.encoder.parameters()], cfg.lr)
        self.alpha_opt = adam([self.log_alpha], cfg.lr)
        self.scaler = ActionScaler(act_space)

    def sample(self, obs: torch.Tensor, deterministic: bool = False):
        return self.head(self.actor(obs), deterministic)

    def q_values(self, critic: EnsembleMLP, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, actions], -1)).squeeze(-1)  # (num_critics, B)

    @torch.no_grad()
    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        self.obs_in.observe(obs)  # merged after the next update
        return self.sample(self.encoder(self.obs_in(obs)))[0]

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        unit = self.sample(self.encoder(self.obs_in(torch.as_tensor(obs, dtype=torch.float32))), deterministic)[0]
        return self.scaler.to_env(unit.numpy())

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs = self.encoder(self.obs_in(batch["obs"]))  # the critic loss trains the encoder
        with torch.no_grad():
            next_obs = self.encoder(self.obs_in(batch["next_obs"]))
        actions, rewards = batch["actions"], batch["rewards"]
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():  # soft Bellman target (eq. 3 with the clipped double-Q min)
            next_actions, next_logp = self.sample(next_obs)
            next_q = self.q_values(self.critic_target, next_obs, next_actions).min(0).values
            target = rewards + cfg.gamma * (1 - batch["terminated"]) * (next_q - alpha * next_logp)
        q = self.q_values(self.critic, obs, actions)
        critic_loss = 0.5 * (q - target).pow(2).mean(1).sum()  # eq. 5, summed over the ensemble
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        self.critic.requires_grad_(False)  # the actor loss must not leave gradients in the critics
        actor_loss, logp = self.actor_loss(obs.detach(), alpha)
        self.critic.requires_grad_(True)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = torch.zeros(())
        if cfg.autotune:  # eq. 18
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()

        soft_update(self.critic_target, self.critic, cfg.tau)
        self.obs_in.commit()
        return {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(),
                "loss/alpha": alpha_loss.detach(), "alpha": alpha, "q": q.detach().mean(),
                "entropy": -logp.detach().mean()}

    def actor_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[alpha log pi(a|s) - min Q(s, a)] with a reparameterized, the sampled log-probs): eq. 7."""
        pi_actions, logp = self.sample(obs)
        q_pi = self.q_values(self.critic, obs, pi_actions).min(0).values
        return (alpha * logp - q_pi).mean(), logp

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), **self.obs_in.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs_in.load_state_dict(state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
