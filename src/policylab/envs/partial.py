"""Partial observability: hide observation dimensions (e.g. velocities) and/or add Gaussian noise.

One description (`PartialSpec`) serves an environment (`PartialObservation`, a gymnasium wrapper) and a
dataset (`policylab.data.partial.partially_observed`). Its `env_id` (e.g. `Pendulum-v1[hide=2]`) is
registered in `ENVIRONMENTS` by `register_partial`, and a transformed dataset carries that id and the
spec in its metadata, so evaluation builds the same wrapper the data was transformed with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from policylab.core.errors import ConfigError
from policylab.core.registry import ENVIRONMENTS
from policylab.envs.factory import make_env


@dataclass(frozen=True)
class PartialSpec:
    base_env_id: str
    hide: tuple[int, ...] = ()
    """Observation dimensions removed (indices into the full observation)."""
    noise_std: float = 0.0
    """Std of the Gaussian noise added to every kept dimension (environment units)."""
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if len(set(self.hide)) != len(self.hide) or any(int(d) < 0 for d in self.hide):
            raise ConfigError(f"hide_dims = {self.hide} is not allowed: distinct dimension indices >= 0")
        if not self.noise_std >= 0:
            raise ConfigError(f"obs_noise_std = {self.noise_std} is not allowed: must be >= 0")

    @property
    def env_id(self) -> str:
        parts = [f"hide={'.'.join(str(d) for d in sorted(self.hide))}"] if self.hide else []
        if self.noise_std > 0:
            parts.append(f"noise={self.noise_std:g}@{self.noise_seed}")
        return f"{self.base_env_id}[{','.join(parts)}]" if parts else self.base_env_id

    def kept(self, obs_dim: int) -> np.ndarray:
        """Indices of the dimensions that stay observed, in order."""
        if any(d >= obs_dim for d in self.hide):
            raise ConfigError(f"hide_dims = {self.hide} is not allowed for {self.base_env_id}: its observations have "
                              f"{obs_dim} dimensions (indices 0..{obs_dim - 1})")
        keep = np.array([d for d in range(obs_dim) if d not in set(self.hide)], dtype=np.int64)
        if len(keep) == 0:
            raise ConfigError(f"hide_dims = {self.hide} is not allowed: it hides all {obs_dim} dimensions")
        return keep

    def to_dict(self) -> dict[str, Any]:
        return {"base_env_id": self.base_env_id, "hide": list(self.hide), "noise_std": self.noise_std,
                "noise_seed": self.noise_seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartialSpec:
        return cls(d["base_env_id"], tuple(int(x) for x in d["hide"]), float(d["noise_std"]), int(d["noise_seed"]))


class PartialObservation(gymnasium.ObservationWrapper):
    """The kept dimensions of the observation, plus N(0, noise_std^2) noise per dimension.

    The noise stream is seeded from (noise_seed, reset seed) at every seeded reset, so an evaluation
    episode's noise is reproducible; unseeded resets continue the stream.
    """

    def __init__(self, env: gymnasium.Env, spec: PartialSpec):
        super().__init__(env)
        self.partial = spec
        self.keep = spec.kept(env.observation_space.shape[0])
        low = env.observation_space.low[self.keep].astype(np.float32)
        high = env.observation_space.high[self.keep].astype(np.float32)
        if spec.noise_std > 0:
            low, high = np.full_like(low, -np.inf), np.full_like(high, np.inf)
        self.observation_space = gymnasium.spaces.Box(low, high, dtype=np.float32)
        self.rng = np.random.default_rng(spec.noise_seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng([self.partial.noise_seed, seed])
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.asarray(observation, dtype=np.float32)[self.keep]
        if self.partial.noise_std > 0:
            out = out + self.rng.normal(0.0, self.partial.noise_std, out.shape).astype(np.float32)
        return out


def register_partial(spec: PartialSpec) -> str:
    """Register `spec.env_id` (once per process) so `make_env` builds the wrapped environment; returns the id."""
    if spec.env_id != spec.base_env_id and spec.env_id not in ENVIRONMENTS:
        ENVIRONMENTS.add(spec.env_id, lambda **kwargs: PartialObservation(make_env(spec.base_env_id, **kwargs), spec))
    return spec.env_id
