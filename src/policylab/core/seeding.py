"""Seeds, RNG state capture for bitwise resume, and the one-thread-per-worker policy."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

DEFAULT_THREADS = 1
MAX_SEED = 2**32 - 1
"""Seeds are 0 .. 2^32 - 1 in every pillar: what numpy's and gymnasium's seeding accept."""


def check_seed(seed: object, field: str = "seed") -> int:
    """The seed itself, or a ConfigError naming the field, the value and the allowed range."""
    from policylab.core.errors import ConfigError

    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{field} = {seed!r} is not allowed: must be an integer from 0 to {MAX_SEED}")
    return seed


def set_threads(n: int | None = None) -> int:
    """Pin torch to `n` intra-op threads (default 1, or $POLICYLAB_THREADS).

    Two threads per process on two busy cores make every process slower, so each worker
    gets one and parallelism comes from running several workers.
    """
    n = n or int(os.environ.get("POLICYLAB_THREADS", DEFAULT_THREADS))
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch global RNG states in a form `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
