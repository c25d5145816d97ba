"""DQN (Mnih et al. 2015) with the double-DQN target (van Hasselt et al. 2016), epsilon-greedy.

Defaults follow the online DQN that generates the datasets of "A Dataset Perspective on Offline
RL" (Schweighofer et al. 2022): 3 x 256 hidden layers, Adam 1e-4, batch 32, one update per env
step, Huber loss, target copied every 100 updates, epsilon 1 -> 0.01 linearly over the first 1000
updates, greedy evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.core.q_learning import DiscreteQ
from policylab.envs.encoders import ObservationInput
from policylab.envs.spaces import is_discrete
from policylab.rl.collectors import ReplayConfig


@dataclass(frozen=True)
class DQNConfig(ReplayConfig):
    batch_size: int = param(32, gt=0)
    learning_starts: int = param(32, ge=0)
    lr: float = param(1e-4, gt=0)
    hidden: tuple[int, ...] = param((256, 256, 256), gt=0)
    target_every: int = param(100, gt=0)
    """Updates between hard copies of the Q-network into its target."""
    eps_start: float = param(1.0, ge=0, le=1)
    eps_end: float = param(0.01, ge=0, le=1)
    eps_decay_updates: int = param(1000, gt=0)
    """Updates over which epsilon falls linearly from eps_start to eps_end."""


class DQN:
    name = "dqn"

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: DQNConfig, total_updates: int | None = None):
        if not is_discrete(act_space):
            raise ConfigError(f"dqn needs a discrete action space, the environment has {act_space}")
        self.cfg = cfg
        self.n_actions = int(act_space.n)
        self.obs_in = ObservationInput(obs_space, cfg.normalize_obs, self.name)
        # an image encoder sits inside the Q-network, so the target network gets its own copy of it
        self.learner = DiscreteQ(self.obs_in.features, self.n_actions, cfg.hidden, cfg.lr, cfg.target_every,
                                 encoder=self.obs_in.encoder if self.obs_in.encoder.has_images else None)
        self.generator = torch.Generator().manual_seed(int(torch.initial_seed()) % 2**31)

    def epsilon(self) -> float:
        cfg = self.cfg
        frac = min(self.learner.updates / cfg.eps_decay_updates, 1.0)
        return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)

    @torch.no_grad()
    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        self.obs_in.observe(obs)  # merged after the next update
        greedy = self.learner.greedy(self.obs_in(obs))
        random = torch.randint(self.n_actions, greedy.shape, generator=self.generator)
        take_random = torch.rand(greedy.shape, generator=self.generator) < self.epsilon()
        return torch.where(take_random, random, greedy)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        return (self.learner.greedy(self.obs_in(obs_t)) if deterministic else self.explore(obs_t)).numpy()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss, q_all = self.learner.td_loss(self.obs_in(batch["obs"]), batch["actions"].long().squeeze(-1),
                                           batch["rewards"], self.obs_in(batch["next_obs"]), batch["terminated"],
                                           self.cfg.gamma)
        self.learner.step(loss)
        self.obs_in.commit()
        return {"loss/td": loss.detach(), "q": q_all.detach().max(-1).values.mean()}

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict(), "generator": self.generator.get_state(),
                **({"obs_normalizer": s} if (s := self.obs_in.state_dict().get("obs_normalizer")) else {})}

    def load_state_dict(self, state: dict) -> None:
        if self.obs_in.normalizer is not None:
            self.obs_in.normalizer.load_state_dict(state["obs_normalizer"])
        self.learner.load_state_dict(state["learner"])
        self.generator.set_state(state["generator"])
