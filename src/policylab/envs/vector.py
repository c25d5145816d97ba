"""A lean synchronous vector env with same-step autoreset and checkpointable state.

`step` returns the observation after autoreset plus `final_obs`, the observation that ended
each episode, so that truncated episodes can bootstrap from it. The whole state (every env's
physics and RNG, running episode statistics) goes into `state_dict`, so a run killed mid-episode
resumes bitwise.

The envs may come from an id, a factory, a `gymnasium.Env` instance (copied for the second and later
envs) or a gymnasium `SyncVectorEnv` (its sub-envs, stepped here). An env that cannot be pickled (it
holds a lock, a socket, a file handle) is checkpointed without its own state: the run goes on, and a
resumed run restarts that env's episode from a seeded reset, so only such runs resume inexactly.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policylab.core.errors import ConfigError
from policylab.envs.encoders import check_observation_space, flatten_observation, is_flat_box
from policylab.envs.factory import EnvLike, describe_env, env_maker, make_env


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


def sub_envs(env: EnvLike | gym.vector.VectorEnv, num_envs: int, **env_kwargs: Any) -> list[gym.Env]:
    """`num_envs` independent envs from whatever the user passed (see the module docstring)."""
    if isinstance(env, gym.vector.VectorEnv):
        inner = getattr(env, "envs", None)
        if inner is None:
            raise ConfigError(f"env: a {type(env).__name__} steps its envs in other processes, which policylab "
                              "cannot checkpoint; pass a SyncVectorEnv or a factory with num_envs instead")
        if len(inner) != num_envs:
            raise ConfigError(f"num_envs = {num_envs} does not fit the given vector env of {len(inner)} envs")
        return list(inner)
    if isinstance(env, str):
        return [make_env(env, **env_kwargs) for _ in range(num_envs)]
    if env_kwargs:
        raise ConfigError(f"env keyword arguments {sorted(env_kwargs)} need an environment id, not "
                          f"{describe_env(env)}")
    make = env_maker(env)
    first = env if isinstance(env, gym.Env) else make()
    return [first, *(make() for _ in range(num_envs - 1))]


class VectorEnv:
    def __init__(self, env: EnvLike | gym.vector.VectorEnv, num_envs: int, seed: int, **env_kwargs: Any):
        self.env_id = env if isinstance(env, str) else describe_env(env)
        self.envs = sub_envs(env, num_envs, **env_kwargs)
        self.num_envs = num_envs
        self.seed = seed
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        check_observation_space(self.single_observation_space)
        self._flat = is_flat_box(self.single_observation_space)
        """Flat Box observations are kept as the env returns them; any other space is flattened to float32."""
        self.obs = np.stack([self._row(env.reset(seed=seed + i)[0]) for i, env in enumerate(self.envs)])
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []

    def _row(self, obs: object) -> np.ndarray:
        return obs if self._flat else flatten_observation(self.single_observation_space, obs)

    def step(self, actions: np.ndarray):
        """Returns (obs, rewards, terminated, truncated, final_obs)."""
        obs = np.empty_like(self.obs)
        final_obs = np.empty_like(self.obs)
        rewards = np.empty(self.num_envs)
        terminated = np.empty(self.num_envs, dtype=bool)
        truncated = np.empty(self.num_envs, dtype=bool)
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(actions[i])
            o = self._row(o)
            final_obs[i] = o
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            self._returns[i] += r
            self._lengths[i] += 1
            if term or trunc:
                self.finished_returns.append(float(self._returns[i]))
                self.finished_lengths.append(int(self._lengths[i]))
                self._returns[i], self._lengths[i] = 0.0, 0
                o = self._row(env.reset()[0])
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

    def _snapshots(self) -> list[bytes | None]:
        """Each env's pickled state, or None for an env that cannot be pickled (said once on stderr)."""
        out: list[bytes | None] = []
        for env in self.envs:
            try:
                out.append(snapshot_env(env))
            except Exception as err:  # pickling fails with TypeError, PicklingError, AttributeError...
                if not getattr(self, "_said_unpicklable", False):
                    self._said_unpicklable = True
                    print(f"policylab: environment {describe_env(env)} cannot be pickled ({type(err).__name__}: "
                          f"{str(err)[:80]}); checkpoints keep everything but its state, so a resumed run "
                          "restarts its episodes", file=sys.stderr)
                out.append(None)
        return out

    def state_dict(self) -> dict[str, Any]:
        blob = pickle.dumps({
            "envs": self._snapshots(), "obs": self.obs,
            "returns": self._returns, "lengths": self._lengths,
            "finished": (list(self.finished_returns), list(self.finished_lengths)),
        })
        return {"blob": torch.frombuffer(bytearray(blob), dtype=torch.uint8)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        data = pickle.loads(state["blob"].numpy().tobytes())
        if len(data["envs"]) != self.num_envs:
            raise ValueError(f"the checkpoint holds {len(data['envs'])} envs, this run has {self.num_envs}")
        self.obs, self._returns, self._lengths = data["obs"], data["returns"], data["lengths"]
        for i, blob in enumerate(data["envs"]):
            if blob is None:  # not picklable: keep this process's env and start it on a fresh episode
                fresh_seed = self.seed + i + 7919 * (len(data["finished"][0]) + 1)
                self.obs[i] = self._row(self.envs[i].reset(seed=fresh_seed)[0])
                self._returns[i], self._lengths[i] = 0.0, 0
            else:
                self.envs[i].close()
                self.envs[i] = restore_env(blob)
        self.finished_returns, self.finished_lengths = map(list, data["finished"])

    def close(self) -> None:
        for env in self.envs:
            env.close()
