"""Experiment trackers beside the JSONL log: TensorBoard, Weights & Biases and MLflow, each through its own
library's writer (`torch.utils.tensorboard.SummaryWriter`, `wandb.init(...).log`, `mlflow.log_metrics`).

Which ones a run uses: `POLICYLAB_LOG` (a comma list of tensorboard, wandb, mlflow, or none), set by
`policylab train --log ...` and by `learn(..., log=...)` / `fit(..., log=...)`; by default TensorBoard alone,
when it is installed. A tracker asked for but not installed is skipped with one stderr line; JSONL is
always written. Every tracker's x-axis is the environment steps where a record has them, else the update.
W&B's project and mode come from its own variables (WANDB_PROJECT, default "policylab"; WANDB_MODE=offline
for a machine with no network); MLflow's store from MLFLOW_TRACKING_URI (MLflow's own default when
unset). A tracker that fails to start is skipped with one line too: a tracker never costs a run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from policylab.core.errors import ConfigError

KNOWN = ("tensorboard", "wandb", "mlflow")
DEFAULT = ("tensorboard",)


def requested() -> tuple[str, ...]:
    raw = os.environ.get("POLICYLAB_LOG")
    return DEFAULT if raw is None else parse(raw, "POLICYLAB_LOG")


def parse(value: str | Sequence[str], field: str = "log") -> tuple[str, ...]:
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise ConfigError(f"{field} = {unknown[0]!r} is not allowed: must be a comma list of "
                          f"{', '.join(KNOWN)}, or none")
    return tuple(dict.fromkeys(names))


@contextlib.contextmanager
def logging_to(names: str | Sequence[str] | None) -> Iterator[None]:
    """Use these trackers for the block (None: leave the setting as it is)."""
    if names is None:
        yield
        return
    chosen = ",".join(parse(names)) or "none"
    before = os.environ.get("POLICYLAB_LOG")
    os.environ["POLICYLAB_LOG"] = chosen
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("POLICYLAB_LOG", None)
        else:
            os.environ["POLICYLAB_LOG"] = before


def _missing(name: str, package: str) -> None:
    print(f"policylab: {name} logging was asked for but {package} is not installed (pip install {package}); "
          "metrics go to metrics.jsonl only", file=sys.stderr)


def _run_config(run_dir: Path) -> dict[str, Any]:
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return {**saved.get("values", {}), **{k: v for k, v in saved.items() if k not in ("values", "type")}}


class Trackers:
    """The trackers of one run directory; `log(x, metrics)` writes to each, `close()` ends them."""

    def __init__(self, run_dir: Path | None, tensorboard_dir: Path | None):
        self.writers: list[tuple[str, Any]] = []
        names = requested() if run_dir is not None else ()
        if "tensorboard" in names and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writers.append(("tensorboard", SummaryWriter(str(tensorboard_dir))))
            except Exception:  # tensorboard not installed: quiet, as it is on by default
                pass
        for name, label in (("wandb", "W&B"), ("mlflow", "MLflow")):
            if name not in names:
                continue
            try:
                library = importlib.import_module(name)
            except ImportError:
                _missing(label, name)
                continue
            start = self._wandb if name == "wandb" else self._mlflow
            self._start(label, start, library, run_dir)

    def _start(self, label: str, start: Any, *args: Any) -> None:
        """Start one tracker; one that fails to start (no store, no login) costs a line, never the run."""
        try:
            self.writers.append(start(*args))
        except Exception as err:
            reason = str(err).splitlines()[0][:160] if str(err) else ""
            print(f"policylab: {label} could not start ({type(err).__name__}: {reason}); metrics go to "
                  "metrics.jsonl and the other trackers", file=sys.stderr)

    @staticmethod
    def _wandb(wandb: Any, run_dir: Path) -> tuple[str, Any]:
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "policylab"), dir=str(run_dir),
                         name=str(run_dir), config=_run_config(run_dir), reinit="create_new")
        run.define_metric("x/step")
        run.define_metric("*", step_metric="x/step")  # environment steps on the x-axis
        return "wandb", run

    @staticmethod
    def _mlflow(mlflow: Any, run_dir: Path) -> tuple[str, Any]:
        run = mlflow.start_run(run_name=str(run_dir), nested=mlflow.active_run() is not None)
        params = {k: str(v)[:500] for k, v in _run_config(run_dir).items()}
        if params:
            mlflow.log_params(params, run_id=run.info.run_id)
        return "mlflow", (mlflow, run)

    def log(self, x: int, metrics: dict[str, float]) -> None:
        for name, writer in self.writers:
            if name == "tensorboard":
                for key, value in metrics.items():
                    writer.add_scalar(key, float(value), x)
            elif name == "wandb":
                writer.log({**{k: float(v) for k, v in metrics.items()}, "x/step": x})
            else:
                mlflow, run = writer
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=x, run_id=run.info.run_id)

    def close(self) -> None:
        for name, writer in self.writers:
            if name == "tensorboard":
                writer.close()
            elif name == "wandb":
                writer.finish()
            else:
                mlflow, run = writer
                active = mlflow.active_run()
                if active is not None and active.info.run_id == run.info.run_id:
                    mlflow.end_run()
                else:
                    mlflow.tracking.MlflowClient().set_terminated(run.info.run_id)
        self.writers = []
