"""Build environments by id: policylab's own registered ones first, then gymnasium's."""

from __future__ import annotations

import difflib
import importlib

import gymnasium as gym

from policylab.core.errors import UnknownNameError
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
