"""Run directories, metric logging (JSONL, TensorBoard when installed) and progress bars.

Layout: runs/<name>/<arm>/seed<k>/{config.json, metrics.jsonl, summary.json, checkpoints/}.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Iterator
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
        self._create(Path(root) / name / arm / f"seed{seed}")

    def _create(self, path: Path) -> None:
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"cannot create run directory {path}: {err.strerror or err}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise RunDirError(f"run directory {path} is not writable")

    @classmethod
    def at(cls, path: str | Path) -> RunDir:
        """A run directory at exactly `path` (the Python API's `run_dir=`), created when missing."""
        run = cls.__new__(cls)
        run._create(Path(path))
        return run

    def clear(self) -> None:
        """Remove what an earlier run left here (`--fresh`), holding the directory's lock while doing it."""
        import shutil

        with self.owned():
            for name in ("checkpoints", "tensorboard"):
                shutil.rmtree(self.path / name, ignore_errors=True)
            for name in ("metrics.jsonl", "summary.json", "config.json"):
                (self.path / name).unlink(missing_ok=True)

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

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """Own this run directory for the block: an OS lock held until it ends (or the process dies).

        A second process fails at once with a line naming the holder's PID; the same process may nest.
        Leftover temp files of writes a kill interrupted are removed once the lock is held."""
        key = str(self.path.resolve())
        if key in _OWNED:
            _OWNED[key][1] += 1
            try:
                yield
            finally:
                _OWNED[key][1] -= 1
            return
        lock_path = self.path / ".lock"
        handle = open(lock_path, "a+")  # noqa: SIM115 (held for the block's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirError(f"run directory {self.path} is in use by process {holder}; wait for it to end, "
                              "or choose another run name") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        _OWNED[key] = [handle, 1]
        try:
            remove_stale_temp_files(self.path)
            yield
        finally:
            del _OWNED[key]
            handle.close()  # closing releases the lock


_OWNED: dict[str, list] = {}
"""Run directories this process owns: path -> [lock file, nesting depth]."""


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files (`.<name>.<random>.tmp`) that killed atomic writes left in a run directory."""
    stale = [p for sub in (folder, folder / "checkpoints") if sub.is_dir() for p in sub.iterdir()
             if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class MetricLogger:
    """Appends one JSON object per log call; mirrors scalars to the trackers asked for (`core.tracking`)."""

    def __init__(self, path: str | Path | None, tensorboard_dir: str | Path | None = None, existing: int = 0):
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []
        self.count = existing
        """Records in the file: the `existing` ones it held when opened plus those logged since."""
        self._file = open(self.path, "a") if self.path is not None else None  # noqa: SIM115
        from policylab.core.tracking import Trackers

        self._trackers = Trackers(self.path.parent if self.path is not None else None,
                                  Path(tensorboard_dir) if tensorboard_dir is not None else None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """One record; TensorBoard's x-axis is the environment steps where the record has them."""
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self.records.append(record)
        self.count += 1
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        self._trackers.log(int(metrics["env_steps"]) if "env_steps" in metrics else int(step), metrics)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._trackers.close()


def _metric_lines(path: Path) -> list[str | None]:
    """The file's lines, each decoded, or None where a line is not UTF-8 (damage, never a record)."""
    out: list[str | None] = []
    for raw in path.read_bytes().splitlines():
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
    return out


def _record(line: str | None) -> dict[str, Any] | None:
    """A metrics record, or None for a line that is not one (torn by a kill, or damaged)."""
    if line is None:
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def truncate_metrics(path: str | Path, after_step: int | None = None, keep_records: int | None = None) -> int:
    """Cut the log back to what a checkpoint covers; returns how many records remain.

    `keep_records` (what the checkpoint counted when it was written) keeps exactly the first that many
    records: everything after them was logged after the checkpoint and is logged again by the resumed run.
    Without it (checkpoints older than the count), records with an integer step past `after_step` go;
    a record whose step cannot be read is kept, since nothing proves it came after the checkpoint.
    Lines that are not records at all (a torn last line, damage) are dropped either way."""
    path = Path(path)
    if not path.exists():
        return 0
    kept: list[str] = []
    for line in _metric_lines(path):
        record = _record(line)
        if record is None:
            continue
        if keep_records is not None:
            if len(kept) >= keep_records:
                break
        elif after_step is not None:
            step = record.get("step")
            if isinstance(step, int) and not isinstance(step, bool) and step > after_step:
                continue
        kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))
    return len(kept)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a metrics file; torn or damaged lines are skipped (a resumed run rewrites them)."""
    path = Path(path)
    if not path.exists():
        return []
    return [r for r in map(_record, _metric_lines(path)) if r is not None]


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


def progress_interval() -> float:
    """Seconds between two plain progress lines: POLICYLAB_PROGRESS_SECONDS, default 30."""
    raw = os.environ.get("POLICYLAB_PROGRESS_SECONDS", "30")
    try:
        value = float(raw)
    except ValueError:
        raise RunDirError(f"POLICYLAB_PROGRESS_SECONDS = {raw!r} is not allowed: must be a number of seconds > 0") \
            from None
    if not value > 0:
        raise RunDirError(f"POLICYLAB_PROGRESS_SECONDS = {raw!r} is not allowed: must be a number of seconds > 0")
    return value


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """Progress for logs that are not a terminal (nohup, CI, a cluster job): one flushed stderr line every
    `every_s` seconds with the count, the rate, the counters (environment steps) and the ETA."""

    def __init__(self, name: str, total: int, every_s: float | None = None, unit: str = "updates"):
        self.name, self.total, self.unit = name, total, unit
        self.every_s = progress_interval() if every_s is None else every_s
        self.last = time.perf_counter()
        self.lines = 0

    def maybe(self, done: int, elapsed: float, counters: dict[str, float]) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self.line(done, elapsed, counters)

    def line(self, done: int, elapsed: float, counters: dict[str, float], final: bool = False) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.name} {done:,}/{self.total:,} {self.unit} ({100 * done / max(self.total, 1):.0f}%)",
                 f"{rate:.1f} {self.unit}/s"]
        parts += [f"{key} {int(value):,}" for key, value in counters.items()]
        parts.append(f"elapsed {_clock(elapsed)}")
        if not final and rate > 0:
            parts.append(f"eta {_clock((self.total - done) / rate)}")
        self.lines += 1
        print("policylab: " + " · ".join(parts), file=sys.stderr, flush=True)
