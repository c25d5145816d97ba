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
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,)),
                                         "b": gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), None)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


class MatchMode(gym.Env):
    """Dict observations: a noise vector and a Discrete mode; reward 1 when the action equals the mode."""

    observation_space = gym.spaces.Dict({"noise": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
                                         "mode": gym.spaces.Discrete(2)})
    action_space = gym.spaces.Discrete(2)

    def _obs(self):
        self.mode = int(self.np_random.integers(2))
        return {"noise": self.np_random.uniform(-1, 1, 3).astype(np.float32), "mode": self.mode}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.mode)
        self.t += 1
        return self._obs(), reward, False, self.t >= 10, {}


class BrightSide(gym.Env):
    """8 x 8 grey images with one bright pixel; reward 1 for the action naming its half (left 0, right 1)."""

    observation_space = gym.spaces.Box(0, 255, (1, 8, 8), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def _obs(self):
        image = np.full((1, 8, 8), 40, np.uint8)
        row, col = self.np_random.integers(8), self.np_random.integers(8)
        image[0, row, col] = 255
        self.side = int(col >= 4)
        return image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def reward(self, action):
        return float(int(action) == self.side)

    def step(self, action):
        reward = self.reward(action)
        self.t += 1
        return self._obs(), reward, False, self.t >= 10, {}


class BrightReach(BrightSide):
    """BrightSide with a continuous action: reward -(a - c)^2, c the bright pixel's column mapped to [-1, 1]."""

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self):
        image = super()._obs()
        self.target = (float(np.argmax(image.max(axis=1))) - 3.5) / 3.5
        return image

    def reward(self, action):
        return -float((np.asarray(action).reshape(-1)[0] - self.target) ** 2)


class Scaled(gym.Env):
    """Pendulum with observations multiplied by 1000, the case a running normalizer is for."""

    def __init__(self):
        self.inner = gym.make("Pendulum-v1")
        self.observation_space = gym.spaces.Box(-8000.0, 8000.0, (3,), np.float32)
        self.action_space = self.inner.action_space

    def reset(self, *, seed=None, options=None):
        obs, info = self.inner.reset(seed=seed)
        return (obs * 1000).astype(np.float32), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.inner.step(action)
        return (obs * 1000).astype(np.float32), reward, terminated, truncated, info
