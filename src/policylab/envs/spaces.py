"""What a policy needs to know about gymnasium spaces: sizes and action scaling (online and offline)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from policylab.core.errors import ConfigError


def obs_dim(space: gym.Space) -> int:
    """The length of a flattened observation (`envs.encoders`); image spaces need an encoder instead."""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0])
    from policylab.envs.encoders import ObservationEncoder, flat_dim

    if ObservationEncoder(space).has_images:
        raise ConfigError(f"observation space {space} holds images: this algorithm has no image encoder "
                          "(PPO, MDPO and DQN have one)")
    return flat_dim(space)


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


def space_to_dict(space: gym.Space) -> dict:
    """A plain description of a Box, Discrete or Dict space (lists and numbers), so that a saved policy file
    loads with `weights_only=True` and needs neither the env nor its code."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(), "dtype": str(space.dtype)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "keys": list(space.spaces), "spaces": [space_to_dict(s) for s in space.spaces.values()]}
    raise ConfigError(f"space {space} cannot be saved: expected a Box, a Discrete or a Dict of them")


def space_from_dict(description: dict) -> gym.Space:
    if description["type"] == "Dict":  # key order kept: it is the order of the flattened row
        from collections import OrderedDict  # a plain dict would be re-sorted by key

        return gym.spaces.Dict(OrderedDict((k, space_from_dict(s)) for k, s in zip(description["keys"],
                                                                                  description["spaces"])))
    if description["type"] == "Discrete":
        return gym.spaces.Discrete(description["n"], start=description["start"])
    dtype = np.dtype(description["dtype"])
    return gym.spaces.Box(np.asarray(description["low"], dtype), np.asarray(description["high"], dtype), dtype=dtype)
