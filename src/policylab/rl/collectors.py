"""Batch sources for online RL: on-policy rollouts and replay sampling, both checkpointable."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from policylab.core.config import Config, param
from policylab.envs.encoders import flat_dim, image_mask
from policylab.envs.spaces import ActionScaler, action_dim, is_discrete
from policylab.envs.vector import VectorEnv
from policylab.rl.buffer import ReplayBuffer


class OnPolicyAgent(Protocol):
    gamma: float

    def policy_step(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def value(self, obs: torch.Tensor) -> torch.Tensor: ...
    def env_action(self, action: torch.Tensor) -> np.ndarray: ...


class OffPolicyAgent(Protocol):
    def explore(self, obs: torch.Tensor) -> torch.Tensor: ...


def _as_obs(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float32)


class RolloutCollector:
    """Collects `rollout_steps` steps from every env with the current policy (PPO-style)."""

    def __init__(self, envs: VectorEnv, rollout_steps: int):
        self.envs, self.steps = envs, rollout_steps
        self.env_steps = 0

    @torch.no_grad()
    def next_batch(self, agent: OnPolicyAgent) -> dict[str, torch.Tensor]:
        T, N = self.steps, self.envs.num_envs
        obs = _as_obs(self.envs.obs)
        obs_buf = torch.zeros(T, N, obs.shape[-1])
        rewards, dones = torch.zeros(T, N), torch.zeros(T, N)
        actions, logprobs, values = [], [], []
        for t in range(T):
            action, logprob, value = agent.policy_step(obs)
            next_obs, reward, terminated, truncated, final_obs = self.envs.step(agent.env_action(action))
            reward = torch.as_tensor(reward, dtype=torch.float32)
            cut = truncated & ~terminated
            if cut.any():  # a time limit is not a terminal state: bootstrap from V(final obs)
                idx = torch.as_tensor(np.flatnonzero(cut))
                reward[idx] += agent.gamma * agent.value(_as_obs(final_obs[cut]))
            obs_buf[t] = obs
            actions.append(action)
            logprobs.append(logprob)
            values.append(value)
            rewards[t] = reward
            dones[t] = torch.as_tensor(terminated | truncated, dtype=torch.float32)
            obs = _as_obs(next_obs)
        self.env_steps += T * N
        return {"obs": obs_buf, "actions": torch.stack(actions), "logprobs": torch.stack(logprobs),
                "values": torch.stack(values), "rewards": rewards, "dones": dones,
                "last_value": agent.value(obs)}

    def metrics(self) -> dict[str, float]:
        return self.envs.pop_episode_stats()

    def counters(self) -> dict[str, float]:
        return {"env_steps": float(self.env_steps)}

    def state_dict(self) -> dict[str, Any]:
        return {"envs": self.envs.state_dict(), "env_steps": self.env_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.envs.load_state_dict(state["envs"])
        self.env_steps = state["env_steps"]


@dataclass(frozen=True)
class ReplayConfig(Config):
    """Fields every replay-based method shares; SAC and TD3 extend it with their own."""

    num_envs: int = param(1, gt=0)
    """Parallel environments (one env step each per update)."""
    buffer_size: int = param(1_000_000, gt=0)
    """Replay capacity."""
    batch_size: int = param(256, gt=0)
    """Transitions per update."""
    learning_starts: int = param(5000, ge=0)
    """Uniform-random steps before learning."""
    lr: float = param(3e-4, gt=0)
    """Adam learning rate of every network."""
    gamma: float = param(0.99, ge=0, le=1)
    """Discount factor."""
    tau: float = param(0.005, gt=0, le=1)
    """Target-network Polyak rate."""
    hidden: tuple[int, ...] = param((256, 256), gt=0)
    """Hidden sizes of actor and critics."""
    normalize_obs: bool = False
    """Standardize observations with running statistics (SB3's VecNormalize; saved with the model)."""


class ReplayCollector:
    """One env step per update into a replay buffer, then one sampled batch (SAC, TD3, DQN).

    The first call fills the buffer with `learning_starts` uniformly random actions.
    Continuous actions live in [-1, 1] in the buffer and are scaled to the env's bounds on the way
    out; discrete actions are stored as one float column holding the action index.
    """

    def __init__(self, envs: VectorEnv, buffer_size: int, batch_size: int, learning_starts: int):
        self.envs, self.batch_size, self.learning_starts = envs, batch_size, learning_starts
        space = envs.single_action_space
        self.discrete = is_discrete(space)
        self.act_dim = 1 if self.discrete else action_dim(space)
        self.scaler = None if self.discrete else ActionScaler(space)
        obs_space = envs.single_observation_space
        pixels = bool(image_mask(obs_space).all())  # stored as uint8: a quarter of the memory
        self.buffer = ReplayBuffer(buffer_size, flat_dim(obs_space), self.act_dim,
                                   torch.uint8 if pixels else torch.float32)
        self.env_steps = 0
        self.warm = False

    def _step(self, actions: torch.Tensor) -> None:
        obs = _as_obs(self.envs.obs)
        env_actions = actions.numpy() if self.discrete else self.scaler.to_env(actions.numpy())
        next_obs, reward, terminated, truncated, final_obs = self.envs.step(env_actions)
        self.buffer.add(obs=obs, actions=actions.reshape(len(obs), -1), rewards=torch.as_tensor(reward),
                        next_obs=_as_obs(final_obs), terminated=torch.as_tensor(terminated),
                        truncated=torch.as_tensor(truncated & ~terminated))
        self.env_steps += self.envs.num_envs

    def _random_actions(self) -> torch.Tensor:
        n = self.envs.num_envs
        if self.discrete:
            return torch.as_tensor(np.random.randint(0, self.envs.single_action_space.n, n))
        return torch.as_tensor(np.random.uniform(-1.0, 1.0, (n, self.act_dim)), dtype=torch.float32)

    @torch.no_grad()
    def next_batch(self, agent: OffPolicyAgent) -> dict[str, torch.Tensor]:
        if not self.warm:
            for _ in range(math.ceil(self.learning_starts / self.envs.num_envs)):
                self._step(self._random_actions())
            self.warm = True
        self._step(agent.explore(_as_obs(self.envs.obs)))
        return self.buffer.sample(self.batch_size)

    def metrics(self) -> dict[str, float]:
        return self.envs.pop_episode_stats()

    def counters(self) -> dict[str, float]:
        return {"env_steps": float(self.env_steps)}

    def state_dict(self) -> dict[str, Any]:
        return {"envs": self.envs.state_dict(), "buffer": self.buffer.state_dict(),
                "env_steps": self.env_steps, "warm": self.warm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.envs.load_state_dict(state["envs"])
        self.buffer.load_state_dict(state["buffer"])
        self.env_steps, self.warm = state["env_steps"], state["warm"]
