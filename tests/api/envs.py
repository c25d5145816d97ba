"""User-side environments for the API tests: classes policylab has never seen, none of them registered."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np


class GoLeft(gym.Env):
    """Ten steps; reward 1 for action 0, else 0. It holds a lock, so it can be neither pickled nor copied."""

    def __init__(self, horizon: int = 10):
        self.lock = threading.Lock()
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / self.horizon, 1.0], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(int(action) == 0), False, self.t >= self.horizon, {}


class Reach(gym.Env):
    """A 1-D continuous task: reward -(a - target)^2 with the target in the observation; 5 steps."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.t, self.target = 0, 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self.target, self.t / 5], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.target = 0, float(self.np_random.uniform(-1, 1))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = -float((np.asarray(action).reshape(-1)[0] - 1.5 * self.target) ** 2)
        self.target = float(self.np_random.uniform(-1, 1))
        return self._obs(), reward, False, self.t >= 5, {}


class DictObs(gym.Env):
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,)), "b": gym.spaces.Discrete(3)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}
