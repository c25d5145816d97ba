"""Build environments by id: policylab's own registered ones first, then gymnasium's."""

from __future__ import annotations

import copy
import difflib
import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from policylab.core.errors import ConfigError, UnknownNameError
from policylab.core.registry import ENVIRONMENTS

DEFERRED_ENVS = {"Maze2D-UMaze-v0": "policylab.envs.maze", "Maze2D-Medium-v0": "policylab.envs.maze"}
"""policylab environments whose module needs an optional package (gymnasium-robotics), imported on
first use, so that their ids resolve wherever a dataset names them."""


def known_env_ids() -> list[str]:
    return sorted(set(ENVIRONMENTS.names()) | set(DEFERRED_ENVS) | set(gym.registry.keys()))


def check_env_id(env_id: str) -> str:
    if env_id in DEFERRED_ENVS and env_id not in ENVIRONMENTS:
        importlib.import_module(DEFERRED_ENVS[env_id])
    if env_id in ENVIRONMENTS or env_id in gym.registry:
        return env_id
    known = known_env_ids()
    close = difflib.get_close_matches(env_id, known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(
        f"unknown environment '{env_id}'{hint} ({len(known)} known; `policylab list environments` lists them)"
    )


def make_env(env_id: str, **kwargs) -> gym.Env:
    check_env_id(env_id)
    if env_id in ENVIRONMENTS:
        return ENVIRONMENTS.get(env_id)(**kwargs)
    return gym.make(env_id, **kwargs)


EnvLike = str | gym.Env | Callable[[], gym.Env]
"""What a user may pass as an environment: a registered id, a `gymnasium.Env` instance, or a factory
(a function of no arguments returning a new env)."""


def describe_env(env: Any) -> str:
    """A short name for an environment argument, for run configs and messages."""
    if isinstance(env, str):
        return env
    if isinstance(env, gym.Env):
        spec = getattr(env, "spec", None)
        return spec.id if spec is not None and spec.id else type(env.unwrapped).__name__
    return getattr(env, "__qualname__", type(env).__name__)


def env_maker(env: EnvLike, field: str = "env") -> Callable[[], gym.Env]:
    """A function that makes one new, independent env from an id, a factory or an instance (a deep copy).

    An instance that cannot be copied (it holds a lock, a socket, a file handle) fails here with one line
    that says to pass a factory instead."""
    if isinstance(env, str):
        check_env_id(env)
        return lambda: make_env(env)
    if isinstance(env, gym.Env):
        def copy_of() -> gym.Env:
            try:
                return copy.deepcopy(env)
            except Exception as err:
                raise ConfigError(f"{field}: the {describe_env(env)} instance cannot be copied into a second "
                                  f"environment ({type(err).__name__}: {str(err)[:80]}); pass a factory "
                                  "(a function returning a new env) instead") from None
        return copy_of
    if callable(env):
        def call() -> gym.Env:
            made = env()
            if not isinstance(made, gym.Env):
                raise ConfigError(f"{field}: the factory {describe_env(env)} returned {type(made).__name__}, "
                                  "not a gymnasium.Env")
            return made
        return call
    raise ConfigError(f"{field} = {type(env).__name__} is not allowed: must be an environment id, a gymnasium.Env, "
                      "a factory returning one, or a gymnasium SyncVectorEnv")
