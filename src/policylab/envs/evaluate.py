"""Deterministic policy evaluation: one episode per env, all envs stepped as one batch."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from policylab.envs.factory import make_env


class Actor(Protocol):
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...


def evaluate_policy(agent: Actor, env_id: str, episodes: int = 10, seed: int = 10_000,
                    deterministic: bool = True) -> dict[str, float]:
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        live = np.flatnonzero(running)
        actions = agent.act(obs[live], deterministic)
        for j, i in enumerate(live):
            obs[i], reward, terminated, truncated, _ = envs[i].step(actions[j])
            returns[i] += reward
            running[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return {"return": float(returns.mean()), "return_std": float(returns.std())}


class RandomAgent:
    """Uniform random actions from its own generator: the floor every learner must beat."""

    def __init__(self, action_space, seed: int = 0):
        self.space = action_space
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        n = obs.shape[0]
        if hasattr(self.space, "n"):
            return self.rng.integers(0, self.space.n, n)
        return self.rng.uniform(self.space.low, self.space.high, (n, *self.space.shape))
