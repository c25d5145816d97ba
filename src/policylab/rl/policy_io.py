"""Save a trained policy to one file and rebuild it anywhere: algorithm, config, env and weights.

The offline dataset builders load behaviour policies this way. The file is a checkpoint
(atomic write, format tag, clear errors on truncated or foreign files) whose payload carries the
config's type string, as d3rlpy does, so loading needs nothing but the path.
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


def save_policy(algo: Any, env_id: str, path: str | Path) -> Path:
    import torch

    payload = {"format": FORMAT, "algo": algo.name, "step": -1,
               "state": {"kind": "policy", "env_id": env_id, "config_type": type_string(type(algo.cfg)),
                         "config": to_dict(algo.cfg), "algo": algo.state_dict()}}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_policy(path: str | Path, algo: str | None = None) -> Any:
    """Rebuild the algorithm object saved by `save_policy`; `algo` given, refuse another one."""
    payload = load_checkpoint(path, algo)
    state = payload["state"]
    if state.get("kind") != "policy":
        raise CheckpointError(f"{path} is a training checkpoint, not a saved policy (use save_policy)")
    spec = ALGORITHMS.get(payload["algo"])
    cfg = from_dict(spec.config, state["config"], source=str(path))
    env = make_env(state["env_id"])
    if spec.algorithm is None:
        raise CheckpointError(f"algorithm '{spec.name}' does not register its class, so its policies cannot be rebuilt")
    policy = spec.algorithm(env.observation_space, env.action_space, cfg)
    env.close()
    policy.load_state_dict(state["algo"])
    return policy
