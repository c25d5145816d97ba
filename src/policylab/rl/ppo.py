"""PPO (Schulman et al. 2017): clipped surrogate objective with GAE, discrete or Gaussian actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policylab.core.config import Config, param
from policylab.core.nn import CategoricalHead, EnsembleMLP, GaussianHead, adam
from policylab.envs.encoders import ObservationInput
from policylab.envs.spaces import action_dim, is_discrete
from policylab.rl.returns import gae


@dataclass(frozen=True)
class PPOConfig(Config):
    num_envs: int = param(8, gt=0)
    """Parallel environments per rollout."""
    rollout_steps: int = param(128, gt=0)
    """Steps per environment per rollout (SB3's n_steps)."""
    lr: float = param(3e-4, gt=0)
    """Adam learning rate."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over the run."""
    gamma: float = param(0.99, ge=0, le=1)
    """Discount factor."""
    gae_lambda: float = param(0.95, ge=0, le=1)
    """GAE lambda (eq. 11 of the PPO paper)."""
    epochs: int = param(10, gt=0)
    """Passes over each rollout."""
    minibatch_size: int = param(64, gt=0)
    """Samples per gradient step."""
    clip_coef: float = param(0.2, gt=0)
    """Surrogate clipping epsilon (eq. 7)."""
    anneal_clip: bool = False
    """Decay the clipping epsilon linearly to 0 over the run."""
    ent_coef: float = param(0.0, ge=0)
    """Entropy bonus weight c2 (eq. 9)."""
    vf_coef: float = param(0.5, ge=0)
    """Value loss weight c1 (eq. 9)."""
    max_grad_norm: float = param(0.5, gt=0)
    """Global gradient-norm clip."""
    normalize_advantages: bool = True
    """Standardize advantages within each minibatch."""
    hidden: tuple[int, ...] = param((64, 64), gt=0)
    """Hidden sizes of the separate policy and value MLPs."""
    activation: str = param("tanh", choices=("tanh", "relu"))
    """Hidden activation."""
    normalize_obs: bool = False
    """Standardize observations with running statistics (SB3's VecNormalize; saved with the model)."""


def clipped_surrogate_loss(logratio: torch.Tensor, advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """-L^CLIP (eq. 7): the pessimistic minimum of the unclipped and clipped surrogates."""
    ratio = logratio.exp()
    return -torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()


class PPO:
    name = "ppo"

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: PPOConfig,
                 total_updates: int | None = None):
        self.cfg, self.gamma = cfg, cfg.gamma
        self.discrete = is_discrete(act_space)
        self.obs_in = ObservationInput(obs_space, cfg.normalize_obs, self.name)
        n_obs, n_act = self.obs_in.features, action_dim(act_space)
        # Separate policy and value MLPs, evaluated together as a 2-member ensemble (one batched
        # matmul per layer): member 0 outputs logits or means, member 1's first output is V(s).
        # Image observations go through one CNN that both share (SB3's default for on-policy methods).
        self.nets = EnsembleMLP(2, n_obs, n_act, cfg.hidden, cfg.activation, orthogonal=True, out_gain=(0.01, 1.0))
        self.head = CategoricalHead() if self.discrete else GaussianHead(n_act)
        params = [*self.nets.parameters(), *self.head.parameters(), *self.obs_in.encoder.parameters()]
        self.optimizer = adam(params, cfg.lr, eps=1e-5)
        self.params = params
        self.low = None if self.discrete else act_space.low
        self.high = None if self.discrete else act_space.high
        self.total_updates = total_updates
        self.updates = 0

    def forward(self, obs: torch.Tensor) -> tuple[torch.distributions.Distribution, torch.Tensor]:
        out = self.nets(self.obs_in.encoder(self.obs_in(obs)))
        return self.head(out[0]), out[1, ..., 0]

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        return self.forward(obs)[0]

    def log_prob(self, dist: torch.distributions.Distribution, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions) if self.discrete else dist.log_prob(actions).sum(-1)

    def entropy(self, dist: torch.distributions.Distribution) -> torch.Tensor:
        return dist.entropy() if self.discrete else dist.entropy().sum(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward(obs)[1]

    @torch.no_grad()
    def policy_step(self, obs: torch.Tensor):
        self.obs_in.observe(obs)  # counted now, merged after the update that consumes this rollout
        dist, value = self.forward(obs)
        action = dist.sample()
        return action, self.log_prob(dist, action), value

    def env_action(self, action: torch.Tensor) -> np.ndarray:
        # the Gaussian is unbounded; the env sees the clipped action, the loss the sampled one
        return action.numpy() if self.discrete else np.clip(action.numpy(), self.low, self.high)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        dist = self.dist(torch.as_tensor(obs, dtype=torch.float32))
        if not deterministic:
            return self.env_action(dist.sample())
        return self.env_action(dist.probs.argmax(-1) if self.discrete else dist.mean)

    def _progress_left(self) -> float:
        return 1.0 if not self.total_updates else max(1.0 - self.updates / self.total_updates, 0.0)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        frac = self._progress_left()
        lr = cfg.lr * frac if cfg.anneal_lr else cfg.lr
        clip = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        advantages, returns = gae(batch["rewards"], batch["values"], batch["dones"], batch["last_value"],
                                  cfg.gamma, cfg.gae_lambda)
        obs = batch["obs"].flatten(0, 1)
        actions = batch["actions"].flatten(0, 1)
        old_logprobs, advantages, returns = (x.flatten() for x in (batch["logprobs"], advantages, returns))
        n = obs.shape[0]
        stats = []
        for _ in range(cfg.epochs):
            order = torch.randperm(n)
            for start in range(0, n, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size]
                stats.append(self._minibatch_step(obs[idx], actions[idx], old_logprobs[idx],
                                                  advantages[idx], returns[idx], clip))
        self.updates += 1
        self.obs_in.commit()
        out = {k: torch.stack([s[k] for s in stats]).mean() for k in stats[0]}
        out["lr"] = torch.tensor(lr)
        return out

    def _minibatch_step(self, obs, actions, old_logprobs, advantages, returns, clip) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        dist, values = self.forward(obs)
        logratio = self.log_prob(dist, actions) - old_logprobs
        ratio = logratio.exp()
        if cfg.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = clipped_surrogate_loss(logratio, advantages, clip)
        value_loss = (values - returns).pow(2).mean()  # L^VF of eq. 9
        entropy = self.entropy(dist).mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy  # eq. 9
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - logratio).mean()
            clip_frac = ((ratio - 1).abs() > clip).float().mean()
        return {"loss/policy": policy_loss.detach(), "loss/value": value_loss.detach(),
                "entropy": entropy.detach(), "approx_kl": approx_kl, "clip_frac": clip_frac}

    def state_dict(self) -> dict[str, Any]:
        return {"nets": self.nets.state_dict(), "head": self.head.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "updates": self.updates, **self.obs_in.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs_in.load_state_dict(state)
        self.nets.load_state_dict(state["nets"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]
