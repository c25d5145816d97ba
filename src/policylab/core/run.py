"""Run directories, metric logging (JSONL, TensorBoard when installed) and progress bars.

Layout: runs/<name>/<arm>/seed<k>/{config.json, metrics.jsonl, summary.json, checkpoints/}.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from policylab.core.atomic import atomic_write_json, atomic_write_text
from policylab.core.config import Config, save_config
from policylab.core.errors import RunDirError

_SAFE = re.compile(r"^[A-Za-z0-9_.+-]+$")


class RunDir:
    def __init__(self, root: str | Path, name: str, arm: str = "main", seed: int = 0):
        for label, part in (("run name", name), ("arm", arm)):
            if not _SAFE.match(part) or part.startswith("."):
                raise RunDirError(f"{label} {part!r} may only hold letters, digits and . _ + -, "
                                  "and may not start with '.'")
        self.path = Path(root) / name / arm / f"seed{seed}"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create run directory {self.path}: {err.strerror or err}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunDirError(f"run directory {self.path} is not writable")

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def save_config(self, cfg: Config, **extra: Any) -> None:
        save_config(self.path / "config.json", cfg, **extra)

    def save_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / "summary.json", summary)


class MetricLogger:
    """Appends one JSON object per log call; mirrors scalars to TensorBoard when it is installed."""

    def __init__(self, path: str | Path | None, tensorboard_dir: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        self._file = open(self.path, "a") if self.path is not None else None  # noqa: SIM115
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(tensorboard_dir))
            except Exception:  # tensorboard not installed: JSONL alone is the record
                self._tb = None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def truncate_metrics(path: str | Path, after_step: int) -> None:
    """Drop records past `after_step`: a resumed run logs them again from its checkpoint."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= after_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line torn by a kill mid-write
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write; the resumed run rewrites it
    return records


def progress_bar(enabled: bool | None = None) -> Progress:
    """A rich progress bar with count, rate and ETA; off when stdout is not a terminal by default."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
