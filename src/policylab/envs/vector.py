"""A lean synchronous vector env with same-step autoreset and checkpointable state.

`step` returns the observation after autoreset plus `final_obs`, the observation that ended
each episode, so that truncated episodes can bootstrap from it. The whole state (every env's
physics and RNG, running episode statistics) goes into `state_dict`, so a run killed mid-episode
resumes bitwise.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policylab.envs.factory import make_env


def snapshot_env(env: gym.Env) -> bytes:
    unwrapped = env.unwrapped
    physics = None
    if hasattr(unwrapped, "data") and hasattr(unwrapped, "set_state"):
        # MuJoCo envs pickle by constructor arguments, so the physics state travels beside them
        physics = (unwrapped.data.qpos.copy(), unwrapped.data.qvel.copy(), float(unwrapped.data.time),
                   unwrapped.np_random.bit_generator.state, _elapsed_steps(env))
    return pickle.dumps((env, physics))


def restore_env(blob: bytes) -> gym.Env:
    env, physics = pickle.loads(blob)
    if physics is not None:
        qpos, qvel, t, rng, elapsed = physics
        env.reset(seed=0)  # builds the model data; then overwrite everything that reset touched
        unwrapped = env.unwrapped
        unwrapped.set_state(qpos, qvel)
        unwrapped.data.time = t
        unwrapped.np_random.bit_generator.state = rng
        _set_elapsed_steps(env, elapsed)
    return env


def _time_limit(env: gym.Env) -> gym.Wrapper | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _elapsed_steps(env: gym.Env) -> int | None:
    limit = _time_limit(env)
    return None if limit is None else limit._elapsed_steps


def _set_elapsed_steps(env: gym.Env, steps: int | None) -> None:
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = steps


class VectorEnv:
    def __init__(self, env_id: str, num_envs: int, seed: int, **env_kwargs: Any):
        self.env_id = env_id
        self.envs = [make_env(env_id, **env_kwargs) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)])
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []

    def step(self, actions: np.ndarray):
        """Returns (obs, rewards, terminated, truncated, final_obs)."""
        obs = np.empty_like(self.obs)
        final_obs = np.empty_like(self.obs)
        rewards = np.empty(self.num_envs)
        terminated = np.empty(self.num_envs, dtype=bool)
        truncated = np.empty(self.num_envs, dtype=bool)
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(actions[i])
            final_obs[i] = o
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            self._returns[i] += r
            self._lengths[i] += 1
            if term or trunc:
                self.finished_returns.append(float(self._returns[i]))
                self.finished_lengths.append(int(self._lengths[i]))
                self._returns[i], self._lengths[i] = 0.0, 0
                o, _ = env.reset()
            obs[i] = o
        self.obs = obs
        return obs, rewards, terminated, truncated, final_obs

    def pop_episode_stats(self) -> dict[str, float]:
        if not self.finished_returns:
            return {}
        stats = {"rollout/episode_return": float(np.mean(self.finished_returns)),
                 "rollout/episode_length": float(np.mean(self.finished_lengths))}
        self.finished_returns.clear()
        self.finished_lengths.clear()
        return stats

    def state_dict(self) -> dict[str, Any]:
        blob = pickle.dumps({
            "envs": [snapshot_env(env) for env in self.envs], "obs": self.obs,
            "returns": self._returns, "lengths": self._lengths,
            "finished": (list(self.finished_returns), list(self.finished_lengths)),
        })
        return {"blob": torch.frombuffer(bytearray(blob), dtype=torch.uint8)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        data = pickle.loads(state["blob"].numpy().tobytes())
        for env in self.envs:
            env.close()
        self.envs = [restore_env(blob) for blob in data["envs"]]
        self.obs, self._returns, self._lengths = data["obs"], data["returns"], data["lengths"]
        self.finished_returns, self.finished_lengths = map(list, data["finished"])

    def close(self) -> None:
        for env in self.envs:
            env.close()
