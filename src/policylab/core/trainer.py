"""The one training loop: batch source -> algo.update -> log -> eval -> checkpoint.

Every pillar trains through `Trainer`. An algorithm owns its networks and optimizers; a batch
source (rollout collector, replay sampler, dataset sampler, LM rollout engine) owns the data.
The trainer owns the schedule, the budget, the run directory and the resume logic.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from policylab.core.checkpoint import CheckpointMismatch, list_checkpoints, load_latest, save_checkpoint
from policylab.core.config import Config, param, to_dict
from policylab.core.errors import CheckpointError, NonFiniteLossError
from policylab.core.run import MetricLogger, PlainProgress, RunDir, progress_bar, truncate_metrics
from policylab.core.seeding import rng_state, set_rng_state


class Algorithm(Protocol):
    name: str
    cfg: Config

    def update(self, batch: Any) -> dict[str, torch.Tensor | float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class BatchSource(Protocol):
    def next_batch(self, algo: Algorithm) -> Any: ...
    def metrics(self) -> dict[str, float]: ...
    """Statistics since the last call (e.g. finished episodes); consumed by the call."""
    def counters(self) -> dict[str, float]: ...
    """Running totals (e.g. environment steps), stamped on every record."""
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TrainerConfig(Config):
    max_steps: int = param(1000, gt=0)
    """Number of updates (trainer iterations) to run."""
    max_seconds: float | None = param(None, gt=0)
    """Optional wall-clock budget; the run stops at whichever budget ends first."""
    log_every: int = param(10, gt=0)
    """Updates between two metric records."""
    eval_every: int = param(0, ge=0)
    """Updates between evaluations; 0 evaluates only at the end."""
    checkpoint_every: int = param(0, ge=0)
    """Updates between checkpoints; 0 checkpoints only at the end."""
    keep_checkpoints: int = param(2, ge=1)
    """How many recent checkpoints to keep."""
    resume: bool = True
    """Continue from the run directory's newest checkpoint when there is one."""
    progress: bool | None = None
    """Show a progress bar (default: on a terminal; elsewhere a plain line every POLICYLAB_PROGRESS_SECONDS)."""


Callback = Callable[[str, int, "Trainer"], "bool | None"]
"""callback(event, update, trainer) with event "log", "eval", "checkpoint" or "end"; `trainer.last_log` and
`trainer.last_eval` hold the latest numbers. Returning False (not None) from "log" or "eval" stops the run."""


class Trainer:
    def __init__(self, algo: Algorithm, source: BatchSource, cfg: TrainerConfig,
                 run: RunDir | None = None, evaluate: Callable[[Algorithm], dict[str, float]] | None = None,
                 callbacks: tuple[Callback, ...] = (), tensorboard: bool = True,
                 stop_when: Callable[[dict[str, float]], bool] | None = None):
        self.algo, self.source, self.cfg, self.run = algo, source, cfg, run
        self.evaluate_fn = evaluate
        self.stop_when = stop_when
        """Called with each evaluation's result; True ends the run there (e.g. a target pass rate)."""
        self.callbacks = callbacks
        self.step = 0
        self.elapsed = 0.0
        self.last_eval: dict[str, float] = {}
        self.last_log: dict[str, float] = {}
        self._pending: list[dict[str, Any]] = []
        self._tensorboard = tensorboard
        self._logger: MetricLogger | None = None
        self._stop_requested = False
        self._finished: str | None = None
        """How the run that wrote the restored checkpoint stopped, when that checkpoint was its final one."""

    # -- resume ---------------------------------------------------------------------------
    def _restore(self) -> int:
        """Load the newest usable checkpoint; returns how many metric records it covers."""
        payload = load_latest(self.run.checkpoints, self.algo.name, check=self._apply)
        if payload is None:
            return truncate_metrics(self.run.metrics_path, keep_records=0)  # a killed run's records, redone
        for skipped, reason in payload.get("skipped", []):
            print(f"policylab: checkpoint {skipped} is unusable ({reason}); resuming from the older "
                  f"{payload['path']}", file=sys.stderr)
        trainer = payload["state"]["trainer"]
        self.step = payload["step"]
        self.elapsed = trainer["elapsed"]
        self.last_eval = dict(trainer["last_eval"])
        self.last_log = dict(trainer.get("last_log", {}))
        self._finished = trainer.get("stopped_by")
        records = trainer.get("metric_records")
        if records is None:  # written before checkpoints counted their records
            return truncate_metrics(self.run.metrics_path, after_step=self.step)
        return truncate_metrics(self.run.metrics_path, keep_records=records)

    def _apply(self, payload: dict[str, Any]) -> None:
        """Load a checkpoint's states into the algorithm, source and RNGs; a damaged one raises CheckpointError
        (load_latest then tries the one before), another run's raises CheckpointMismatch."""
        _check_payload(payload)
        state = payload["state"]
        saved, current = state.get("config", {}), to_dict(self.algo.cfg)
        changed = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
            raise CheckpointMismatch(f"cannot resume from {payload['path']}: it was trained with another config "
                                     f"({diffs}); use another run name or remove {self.run.path}")
        try:
            self.algo.load_state_dict(state["algo"])
            self.source.load_state_dict(state["source"])
            set_rng_state(state["rng"])
        except Exception as err:  # unpickling an env blob, shapes, missing keys: all mean "does not fit"
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise CheckpointError(f"its state does not fit this {self.algo.name} ({type(err).__name__}: "
                                  f"{reason})") from None

    def _checkpoint(self, stopped_by: str | None = None) -> None:
        if self.run is None:
            return
        state = {
            "algo": self.algo.state_dict(),
            "source": self.source.state_dict(),
            "rng": rng_state(),
            "trainer": {"elapsed": self.elapsed, "last_eval": self.last_eval, "last_log": self.last_log,
                        "metric_records": self._logger.count if self._logger else 0, "stopped_by": stopped_by},
            "config": to_dict(self.algo.cfg),
        }
        bad = first_non_finite(state)
        if bad is not None:
            kept = list_checkpoints(self.run.checkpoints)
            last = f"; last good checkpoint: {kept[-1]}" if kept else "; no checkpoint was written"
            raise NonFiniteLossError(f"{self.algo.name}: non-finite {bad} in the state to checkpoint at update "
                                     f"{self.step} (not saved){last}")
        save_checkpoint(self.run.checkpoints, self.step, self.algo.name, state, self.cfg.keep_checkpoints)
        self._emit("checkpoint")

    # -- logging --------------------------------------------------------------------------
    def _flush(self, logger: MetricLogger) -> None:
        """Average the updates since the last record; abort on a non-finite value."""
        if not self._pending:
            return
        keys = self._pending[0].keys()
        means = {k: torch.stack([torch.as_tensor(m[k], dtype=torch.float64) for m in self._pending]).mean()
                 for k in keys}
        record = {k: float(v) for k, v in means.items()}  # one sync per record, not per update
        self._pending.clear()
        bad = [k for k, v in record.items() if not math.isfinite(v)]
        if bad:
            kept = list_checkpoints(self.run.checkpoints) if self.run else []
            last = f"; last good checkpoint: {kept[-1]}" if kept else "; no checkpoint was written"
            raise NonFiniteLossError(
                f"{self.algo.name}: non-finite {bad[0]} = {record[bad[0]]} by update {self.step}{last}"
            )
        record.update(self.source.metrics())
        record.update(self.source.counters())
        record["time/elapsed_s"] = self.elapsed
        self.last_log = record
        logger.log(self.step, record)
        self._emit("log")

    def _evaluate(self, logger: MetricLogger) -> None:
        if self.evaluate_fn is None:
            return
        saved = rng_state()  # evaluation must not shift the training random stream
        result = {f"eval/{k}": float(v) for k, v in self.evaluate_fn(self.algo).items()}
        set_rng_state(saved)
        self.last_eval = result
        logger.log(self.step, {**result, **self.source.counters()})
        self._emit("eval")

    def _emit(self, event: str) -> None:
        for callback in self.callbacks:
            if callback(event, self.step, self) is False and event in ("log", "eval"):
                self._stop_requested = True

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        if self.run is None:
            return self._fit(0)
        with self.run.owned():
            existing = self._restore() if self.cfg.resume else truncate_metrics(self.run.metrics_path,
                                                                                 keep_records=0)
            return self._fit(existing)

    def _done(self) -> bool:
        """A checkpoint written at the end of a run whose budget still holds: nothing is left to do."""
        cfg = self.cfg
        return self._finished is not None and (
            self.step >= cfg.max_steps or self._finished in ("target", "callback")
            or (cfg.max_seconds is not None and self.elapsed >= cfg.max_seconds))

    def _fit(self, existing: int) -> dict[str, Any]:
        cfg = self.cfg
        stopped = self._finished if self._done() else "steps"
        metrics_path = self.run.metrics_path if self.run else None
        tb_dir = self.run.path / "tensorboard" if (self.run and self._tensorboard) else None
        if self._done():  # a rerun of a finished run: the same summary, no second final evaluation
            print(f"policylab: {self.algo.name} run {self.run.path} is already complete ({self.step} updates, "
                  f"stopped by {stopped}); --fresh (fresh=True in Python) starts it over", file=sys.stderr)
            return self._summarize(stopped)
        logger = self._logger = MetricLogger(metrics_path, tb_dir, existing=existing)
        plain = PlainProgress(self.algo.name, cfg.max_steps) if cfg.progress is None and not sys.stderr.isatty() \
            else None
        try:
            with progress_bar(cfg.progress) as bar:
                task = bar.add_task(self.algo.name, total=cfg.max_steps, completed=self.step, rate="")
                tick = time.perf_counter()
                while self.step < cfg.max_steps:
                    if cfg.max_seconds is not None and self.elapsed >= cfg.max_seconds:
                        stopped = "seconds"
                        break
                    batch = self.source.next_batch(self.algo)
                    self._pending.append(self.algo.update(batch))
                    self.step += 1
                    now = time.perf_counter()
                    self.elapsed += now - tick
                    tick = now
                    if plain is not None:
                        plain.maybe(self.step, self.elapsed, self.source.counters())
                    if self.step % cfg.log_every == 0:
                        self._flush(logger)
                        bar.update(task, completed=self.step, rate=f"{self.step / max(self.elapsed, 1e-9):.1f} upd/s")
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                        self._evaluate(logger)
                        tick = time.perf_counter()  # evaluation time is not training time
                        if self.stop_when is not None and self.stop_when(self.last_eval):
                            stopped = "target"
                            break
                    if self._stop_requested:
                        stopped = "callback"
                        break
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self._flush(logger)
                        self._checkpoint()
                        tick = time.perf_counter()
                self._flush(logger)
                bar.update(task, completed=self.step)
            if plain is not None and plain.lines:  # a short run says nothing more than its summary
                plain.line(self.step, self.elapsed, self.source.counters(), final=True)
            if stopped != "target":  # the stopping evaluation is the final one
                self._evaluate(logger)
            self._checkpoint(stopped_by=stopped)
        finally:
            logger.close()
            self._logger = None
        return self._summarize(stopped)

    def _summarize(self, stopped: str) -> dict[str, Any]:
        summary = {"algo": self.algo.name, "steps": self.step, "elapsed_s": self.elapsed,
                   "stopped_by": stopped, "last": self.last_log, "eval": self.last_eval}
        if self.run is not None:
            self.run.save_summary(summary)
        self._emit("end")
        return summary


def state_leaves(state: Any, where: str = "state") -> Iterator[tuple[str, Any]]:
    """(path, leaf) for every leaf of a nested state of dicts, lists and tuples, in order."""
    if isinstance(state, dict):
        for key, value in state.items():
            yield from state_leaves(value, f"{where}.{key}")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from state_leaves(value, f"{where}.{i}")
    else:
        yield where, state


def first_non_finite(state: Any, where: str = "state") -> str | None:
    """The path of the first NaN or infinite float (tensor or number) in a nested state, or None."""
    for path, leaf in state_leaves(state, where):
        if isinstance(leaf, torch.Tensor) and (leaf.is_floating_point() or leaf.is_complex()):
            if not bool(torch.isfinite(leaf).all()):
                return path
        elif isinstance(leaf, float) and not math.isfinite(leaf):
            return path
    return None


def _check_payload(payload: dict[str, Any]) -> None:
    """What a trainer checkpoint must hold to resume; a CheckpointError makes load_latest try an older one."""
    step = payload.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"its step is {step!r}, not a count of updates")
    state = payload.get("state")
    missing = [k for k in ("algo", "source", "rng", "trainer") if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"its state lacks {', '.join(missing)}")
    trainer = state["trainer"]
    if not isinstance(trainer, dict) or not isinstance(trainer.get("elapsed"), (int, float)) \
            or not isinstance(trainer.get("last_eval"), dict):
        raise CheckpointError("its trainer state is damaged")
    records = trainer.get("metric_records")
    if records is not None and (not isinstance(records, int) or records < 0):
        raise CheckpointError(f"its metric record count is {records!r}")
