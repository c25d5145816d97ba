"""What a run read: the content hash of every dataset it loaded, for its result file.

The data substrate records each dataset it loads here; the experiment runner clears the record
before an (arm, seed) task and returns what the task read, so a report can name the exact bytes
behind every number (a dataset rebuilt with other bytes shows up as a different hash).
"""

from __future__ import annotations

_datasets_read: dict[str, str] = {}


def record_dataset(name: str, sha256: str) -> None:
    _datasets_read[name] = sha256


def clear_datasets_read() -> None:
    _datasets_read.clear()


def datasets_read() -> dict[str, str]:
    """Dataset name -> sha256 of its content, for every dataset loaded since the last clear."""
    return dict(sorted(_datasets_read.items()))


def merge_datasets(per_task: list[dict[str, str]]) -> dict[str, str | list[str]]:
    """One name -> hash map over tasks; a name read with different bytes by different tasks keeps every hash."""
    seen: dict[str, set[str]] = {}
    for read in per_task:
        for name, digest in read.items():
            seen.setdefault(name, set()).add(digest)
    return {name: next(iter(d)) if len(d) == 1 else sorted(d) for name, d in sorted(seen.items())}
