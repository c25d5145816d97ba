"""The one training loop: batch source -> algo.update -> log -> eval -> checkpoint.

Every pillar trains through `Trainer`. An algorithm owns its networks and optimizers; a batch
source (rollout collector, replay sampler, dataset sampler, LM rollout engine) owns the data.
The trainer owns the schedule, the budget, the run directory and the resume logic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from policylab.core.checkpoint import list_checkpoints, load_latest, save_checkpoint
from policylab.core.config import Config, param, to_dict
from policylab.core.errors import CheckpointError, NonFiniteLossError
from policylab.core.run import MetricLogger, RunDir, progress_bar, truncate_metrics
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
    """Show a progress bar (default: when attached to a terminal)."""


Callback = Callable[[str, int, "Trainer"], None]


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

    # -- resume ---------------------------------------------------------------------------
    def _restore(self) -> None:
        payload = load_latest(self.run.checkpoints, self.algo.name)
        if payload is None:
            return
        state, path = payload["state"], payload["path"]
        saved, current = state.get("config", {}), to_dict(self.algo.cfg)
        changed = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
            raise CheckpointError(f"cannot resume from {path}: it was trained with another config ({diffs}); "
                                  f"use another run name or remove {self.run.path}")
        try:
            self.algo.load_state_dict(state["algo"])
            self.source.load_state_dict(state["source"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise CheckpointError(f"cannot resume from {path}: its state does not fit this {self.algo.name} "
                                  f"({type(err).__name__}: {reason}); use another run name or remove "
                                  f"{self.run.path}") from None
        set_rng_state(state["rng"])
        self.step = payload["step"]
        self.elapsed = state["trainer"]["elapsed"]
        self.last_eval = dict(state["trainer"]["last_eval"])
        truncate_metrics(self.run.metrics_path, self.step)

    def _checkpoint(self) -> None:
        if self.run is None:
            return
        state = {
            "algo": self.algo.state_dict(),
            "source": self.source.state_dict(),
            "rng": rng_state(),
            "trainer": {"elapsed": self.elapsed, "last_eval": self.last_eval},
            "config": to_dict(self.algo.cfg),
        }
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
            callback(event, self.step, self)

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.run is not None and cfg.resume:
            self._restore()
        metrics_path = self.run.metrics_path if self.run else None
        tb_dir = self.run.path / "tensorboard" if (self.run and self._tensorboard) else None
        logger = MetricLogger(metrics_path, tb_dir)
        stopped = "steps"
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
                    if self.step % cfg.log_every == 0:
                        self._flush(logger)
                        bar.update(task, completed=self.step, rate=f"{self.step / max(self.elapsed, 1e-9):.1f} upd/s")
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                        self._evaluate(logger)
                        tick = time.perf_counter()  # evaluation time is not training time
                        if self.stop_when is not None and self.stop_when(self.last_eval):
                            stopped = "target"
                            break
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self._flush(logger)
                        self._checkpoint()
                        tick = time.perf_counter()
                self._flush(logger)
                bar.update(task, completed=self.step)
            if stopped != "target":  # the stopping evaluation is the final one
                self._evaluate(logger)
            self._checkpoint()
        finally:
            logger.close()
        summary = {"algo": self.algo.name, "steps": self.step, "elapsed_s": self.elapsed,
                   "stopped_by": stopped, "last": self.last_log, "eval": self.last_eval}
        if self.run is not None:
            self.run.save_summary(summary)
        self._emit("end")
        return summary
