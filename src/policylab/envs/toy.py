"""Small environments policylab defines itself, for fast learning tests of continuous control."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from policylab.core.registry import ENVIRONMENTS


class PointReach(gym.Env):
    """A point on a line must reach a target and stay there.

    Observation (position, target), action a velocity in [-1, 1] (step 0.1 a), reward the
    negative distance after the move; 50 steps per episode. A good policy earns about -1,
    a random one about -30.
    """

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 50):
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position, self.target = self.np_random.uniform(-1.0, 1.0, 2)
        self.t = 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.position, self.target], dtype=np.float32)

    def step(self, action):
        move = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        self.position = float(np.clip(self.position + 0.1 * move, -2.0, 2.0))
        self.t += 1
        reward = -abs(self.position - self.target)
        return self._obs(), reward, False, self.t >= self.horizon, {}


ENVIRONMENTS.add("PointReach-v0", PointReach)
