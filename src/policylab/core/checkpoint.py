"""Checkpoints: atomic save, keep-last-k, and loads that fail with a clear line.

A checkpoint is one torch file holding a format tag, the algorithm's name, its config, the
step, and whatever state the trainer collected (model, optimizers, sources, RNGs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from policylab.core.atomic import atomic_write
from policylab.core.errors import CheckpointError

FORMAT = "policylab-checkpoint-v1"


class CheckpointMismatch(CheckpointError):
    """A readable checkpoint of another run (another algorithm or config): an older one is no remedy."""
_NAME = re.compile(r"^step(\d+)\.pt$")


def save_checkpoint(folder: str | Path, step: int, algo: str, state: dict[str, Any],
                    keep_last: int = 3) -> Path:
    folder = Path(folder)
    payload = {"format": FORMAT, "algo": algo, "step": int(step), "state": state}
    path = atomic_write(folder / f"step{step:010d}.pt", lambda f: torch.save(payload, f))
    for old in list_checkpoints(folder)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in step order (temp files from interrupted writes are not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | Path, algo: str | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; `algo` given, refuse one written by another algorithm."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails in many ways on foreign bytes (KeyError, IndexError...)
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a policylab checkpoint ({reason})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a policylab checkpoint (expected format {FORMAT})")
    if algo is not None and payload["algo"] != algo:
        raise CheckpointMismatch(
            f"checkpoint {path} was written by algorithm '{payload['algo']}', cannot load it into '{algo}'"
        )
    return payload


def load_latest(folder: str | Path, algo: str | None = None,
                check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """The newest checkpoint that loads (and passes `check`, which raises CheckpointError on a payload it cannot
    use); a damaged newer one falls back to the one before. The result holds its "path" and, under "skipped",
    the (path, reason) of every newer checkpoint passed over, for the caller to report."""
    skipped: list[tuple[str, str]] = []
    for path in reversed(list_checkpoints(folder)):
        try:
            payload = {**load_checkpoint(path, algo), "path": str(path)}
            if check is not None:
                check(payload)
            return {**payload, "skipped": skipped}
        except CheckpointMismatch:
            raise
        except CheckpointError as err:
            reason = str(err).removeprefix(f"checkpoint {path} ")
            skipped.append((str(path), reason))
    if skipped:
        raise CheckpointError(f"no loadable checkpoint in {folder}: {skipped[0][0]} {skipped[0][1]}; use another "
                              "run name, or remove the run directory to start afresh")
    return None
