"""Named registries: one per kind of part (algorithm, experiment, environment, dataset, loss...)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from policylab.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries. Refuses to overwrite a name; unknown names list the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        raise UnknownNameError(f"unknown {self.kind} '{name}'{hint} known: {listing}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


ALGORITHMS: Registry = Registry("algorithm")
EXPERIMENTS: Registry = Registry("experiment")
ENVIRONMENTS: Registry = Registry("environment")
DATASETS: Registry = Registry("dataset")
