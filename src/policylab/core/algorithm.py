"""What the algorithm registry holds: a config class and a train entry point, pillar-agnostic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policylab.core.config import Config


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    config: type[Config]
    train: Callable[..., dict[str, Any]]
    """train(cfg, *, env_id, seed, steps, run, max_seconds, progress, ...) -> summary."""
    summary: str
    pillar: str
    default_env: str = ""
    algorithm: type | None = None
    """The algorithm class, for rebuilding a saved policy from its file."""
    default_steps: int = 100_000
    """`policylab train`'s --steps default: environment steps online, updates for language models."""
