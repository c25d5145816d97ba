"""What a policy needs to know about gymnasium spaces: sizes and action scaling (online and offline)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from policylab.core.errors import ConfigError


def obs_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ConfigError(f"observation space {space} is not supported: expected a flat Box")
    return int(space.shape[0])


def is_discrete(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Discrete)


def action_dim(space: gym.Space) -> int:
    """Number of logits (Discrete) or action dimensions (Box)."""
    if is_discrete(space):
        return int(space.n)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0])
    raise ConfigError(f"action space {space} is not supported: expected Discrete or a flat Box")


def require_box(space: gym.Space, algo: str) -> None:
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"{algo} needs a continuous (Box) action space, the environment has {space}")


class ActionScaler:
    """Maps actions between the squashed range [-1, 1] and a Box's [low, high]."""

    def __init__(self, space: gym.spaces.Box):
        self.low = space.low.astype(np.float64)
        self.high = space.high.astype(np.float64)

    def to_env(self, unit: np.ndarray) -> np.ndarray:
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)

    def to_unit(self, action: np.ndarray) -> np.ndarray:
        return 2.0 * (action - self.low) / (self.high - self.low) - 1.0
