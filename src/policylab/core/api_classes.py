"""The Python-API classes of a pillar (`policylab.PPO`, `policylab.IQL`, ...), keyed by registry name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from policylab.core.run import RunDir


class ApiClasses:
    """Named public classes, plus one made on first use for a registered algorithm without its own (a
    plugin's or a user's): a subclass of `base` whose `algorithm` is the registry name."""

    def __init__(self, base: type, check: Callable[[str], Any], module: str):
        """`check(name)` raises, in one line, for a name this pillar's API cannot drive."""
        self.base, self.check, self.module = base, check, module
        self.classes: dict[str, type] = {}

    def public(self, name: str, cls_name: str, doc: str) -> type:
        cls = type(cls_name, (self.base,), {"algorithm": name, "__doc__": doc, "__module__": self.module})
        self.classes[name] = cls
        return cls

    def get(self, name: str) -> type:
        if name not in self.classes:
            self.check(name)
            self.classes[name] = type(name.upper(), (self.base,), {"algorithm": name, "__module__": self.module})
        return self.classes[name]


def open_run(run_dir: str | Path | None, fresh: bool) -> RunDir | None:
    """The run directory a `learn` / `fit` call keeps its files in (None: none); `fresh` empties it first."""
    if run_dir is None:
        return None
    run = RunDir.at(run_dir)
    if fresh:
        run.clear()
    return run


def as_callbacks(callback: Callable | Sequence[Callable] | None) -> tuple[Callable, ...]:
    if callback is None:
        return ()
    return tuple(callback) if isinstance(callback, Sequence) else (callback,)
