"""Plugins: installed packages that add algorithms, datasets, environments or experiments.

A package declares an entry point in the group `policylab.plugins`; its value is a module (imported, so
that its registrations run) or a function of no arguments (called). `load_plugins` runs once per process,
before the CLI lists or trains and before the Python API looks a name up. A plugin that fails to load is
skipped with one stderr line naming it and why, so one broken package never takes the CLI down.

    # the plugin's pyproject.toml
    [project.entry-points."policylab.plugins"]
    a2c = "policylab_a2c"
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

GROUP = "policylab.plugins"

_loaded: dict[str, str | None] | None = None
"""Plugin name -> None when it loaded, else the reason it did not; None until the first load."""


def load_plugins() -> dict[str, str | None]:
    global _loaded
    if _loaded is not None:
        return _loaded
    _loaded = {}
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        try:
            target = point.load()
            if callable(target):
                target()
            _loaded[point.name] = None
        except Exception as err:  # a plugin's own bug: report it, keep the others and the CLI alive
            reason = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
            _loaded[point.name] = reason
            print(f"policylab: plugin {point.name!r} ({point.value}) failed to load ({reason}); skipped",
                  file=sys.stderr)
    return _loaded
