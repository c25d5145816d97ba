"""Save a trained policy to one file and rebuild it anywhere: algorithm, config, spaces and weights.

The offline dataset builders and the Python API (`PPO.load`) load policies this way. The file is a
checkpoint (atomic write, format tag, clear errors on truncated or foreign files) whose payload carries
the config's type string, as d3rlpy does, and plain descriptions of the observation and action spaces,
so loading needs nothing but the path: not the env, not its code, not its registration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policylab.core.atomic import atomic_write
from policylab.core.checkpoint import FORMAT, load_checkpoint
from policylab.core.config import from_dict, to_dict, type_string
from policylab.core.errors import CheckpointError
from policylab.core.registry import ALGORITHMS
from policylab.envs.factory import make_env
from policylab.envs.spaces import space_from_dict, space_to_dict


def save_policy(algo: Any, env_id: str, path: str | Path, observation_space: Any = None,
                action_space: Any = None) -> Path:
    """Write `algo` to `path`; the spaces default to those of the env `env_id` names."""
    import torch

    if observation_space is None or action_space is None:
        env = make_env(env_id)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
    payload = {"format": FORMAT, "algo": algo.name, "step": -1,
               "state": {"kind": "policy", "env_id": env_id, "config_type": type_string(type(algo.cfg)),
                         "config": to_dict(algo.cfg), "algo": algo.state_dict(),
                         "observation_space": space_to_dict(observation_space),
                         "action_space": space_to_dict(action_space)}}
    return atomic_write(path, lambda f: torch.save(payload, f))


def read_policy(path: str | Path, algo: str | None = None) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(the algorithm object, observation space, action space, the file's state) from `save_policy`'s file."""
    payload = load_checkpoint(path, algo)
    state = payload["state"]
    if state.get("kind") != "policy":
        raise CheckpointError(f"{path} is a training checkpoint, not a saved policy (use save_policy)")
    spec = ALGORITHMS.get(payload["algo"])
    cfg = from_dict(spec.config, state["config"], source=str(path))
    if spec.algorithm is None:
        raise CheckpointError(f"algorithm '{spec.name}' does not register its class, so its policies cannot be rebuilt")
    if "observation_space" in state:
        obs_space, act_space = space_from_dict(state["observation_space"]), space_from_dict(state["action_space"])
    else:  # written before policy files carried their spaces
        env = make_env(state["env_id"])
        obs_space, act_space = env.observation_space, env.action_space
        env.close()
    policy = spec.algorithm(obs_space, act_space, cfg)
    policy.load_state_dict(state["algo"])
    return policy, obs_space, act_space, state


def load_policy(path: str | Path, algo: str | None = None) -> Any:
    """Rebuild the algorithm object saved by `save_policy`; `algo` given, refuse another one."""
    return read_policy(path, algo)[0]
