"""Deterministic policy evaluation: one episode per env, all envs stepped as one batch.

An agent with per-episode state (a return-conditioned policy's remaining target) may define
`reset(num_episodes)`, called once before the first step, and `observe(indices, rewards, dones)`,
called after each batched step with the episodes just stepped (the rows `act` was given, in order),
their rewards and whether each one ended. The next `act` gets the rows of those not done, in order.
"""

from __future__ import annotations

from typing import Protocol

import gymnasium
import numpy as np

from policylab.core.errors import ConfigError
from policylab.envs.encoders import flatten_observation, is_flat_box
from policylab.envs.factory import EnvLike, env_maker


class Actor(Protocol):
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...


def episode_returns(agent: Actor, env_id: EnvLike, episodes: int = 10, seed: int = 10_000,
                    deterministic: bool = True, start_noise: float = 0.0) -> np.ndarray:
    """[episodes] undiscounted returns, episode i run on an env reset with seed + i; `start_noise` > 0
    perturbs each initial state (`PerturbedStart`).

    `env_id` may also be a factory or a `gymnasium.Env` instance; an instance that cannot be copied
    plays its episodes one after another (the same returns for a policy without episode memory)."""
    seeds = [seed + i for i in range(episodes)]
    make = env_maker(env_id, "eval_env")
    try:
        envs = [make() for _ in range(episodes)]
    except ConfigError:
        if not isinstance(env_id, gymnasium.Env):
            raise
        wrapped = PerturbedStart(env_id, start_noise) if start_noise > 0 else env_id
        return np.concatenate([run_episodes(agent, [wrapped], [s], deterministic)[0] for s in seeds])
    if start_noise > 0:
        envs = [PerturbedStart(env, start_noise) for env in envs]
    returns, _ = run_episodes(agent, envs, seeds, deterministic)
    for env in envs:
        env.close()
    return returns


def run_episodes(agent: Actor, envs: list[gymnasium.Env], seeds: list[int], deterministic: bool = True
                 ) -> tuple[np.ndarray, int]:
    """(returns [len(envs)], env steps taken): one episode per env, env i reset with seeds[i], all live
    episodes stepped as one batch, the agent's reset / observe hooks called as the module says."""
    space = envs[0].observation_space
    row = (lambda o: o) if is_flat_box(space) else (lambda o: flatten_observation(space, o))  # agents take flat rows
    obs = np.stack([row(env.reset(seed=int(s))[0]) for env, s in zip(envs, seeds, strict=True)])
    returns = np.zeros(len(envs))
    running = np.ones(len(envs), dtype=bool)
    steps = 0
    observe = getattr(agent, "observe", None)
    if hasattr(agent, "reset"):
        agent.reset(len(envs))
    while running.any():
        live = np.flatnonzero(running)
        actions = agent.act(obs[live], deterministic)
        rewards = np.zeros(len(live))
        for j, i in enumerate(live):
            o, rewards[j], terminated, truncated, _ = envs[i].step(actions[j])
            obs[i] = row(o)
            returns[i] += rewards[j]
            running[i] = not (terminated or truncated)
        if observe is not None:
            observe(live, rewards, ~running[live])
        steps += len(live)
    return returns, steps


def evaluate_policy(agent: Actor, env_id: EnvLike, episodes: int = 10, seed: int = 10_000,
                    deterministic: bool = True) -> dict[str, float]:
    returns = episode_returns(agent, env_id, episodes, seed, deterministic)
    return {"return": float(returns.mean()), "return_std": float(returns.std())}


def lower_tail(returns: np.ndarray, fraction: float = 0.1) -> float:
    """Value at risk: the `fraction` quantile of the returns (linear interpolation), the risk measure of
    risk-averse RL's tables (a higher VaR_0.1 means a better worst tenth of the episodes)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction = {fraction} is not allowed: must be in (0, 1)")
    return float(np.quantile(np.asarray(returns, dtype=np.float64), fraction))


class PerturbedStart(gymnasium.Wrapper):
    """A MuJoCo environment whose initial joint positions and velocities get Gaussian noise of std
    `scale` on top of its own reset noise: start states off the data (O-DICE's robustness check)."""

    def __init__(self, env: gymnasium.Env, scale: float):
        super().__init__(env)
        inner = env.unwrapped
        if not hasattr(inner, "set_state") or not hasattr(inner, "_get_obs"):
            name = inner.spec.id if inner.spec else type(inner).__name__
            raise ValueError(f"start_noise needs a MuJoCo environment (set_state / _get_obs); {name} is not one")
        self.scale = scale

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        inner = self.env.unwrapped
        rng = np.random.default_rng(None if seed is None else seed + 7_919)
        qpos = inner.data.qpos + rng.normal(0.0, self.scale, inner.model.nq)
        qvel = inner.data.qvel + rng.normal(0.0, self.scale, inner.model.nv)
        inner.set_state(qpos, qvel)
        return inner._get_obs(), info


class NoisyObservations:
    """An actor that sees Gaussian-perturbed observations, noise std `scale` (per dimension): a test of
    robustness to states off the data (the environment itself is unchanged)."""

    def __init__(self, agent: Actor, scale: np.ndarray | float, seed: int = 0):
        self.agent, self.scale = agent, np.asarray(scale, dtype=np.float64)
        self.rng = np.random.default_rng(seed)

    def reset(self, num_episodes: int) -> None:
        if hasattr(self.agent, "reset"):
            self.agent.reset(num_episodes)

    def observe(self, indices: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        if hasattr(self.agent, "observe"):
            self.agent.observe(indices, rewards, dones)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        noisy = obs + self.rng.normal(size=obs.shape) * self.scale
        return self.agent.act(noisy.astype(obs.dtype), deterministic)


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
