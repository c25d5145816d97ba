"""What a run read: the content hash of every dataset and base model it loaded, for its result file.

The data substrate records each dataset it loads here, the language-model pillar each base model; the
experiment runner clears the record before an (arm, seed) task and returns what the task read, so a
report names the exact bytes behind every number (a dataset or base model rebuilt with other bytes,
e.g. on a machine whose float rounding differs, shows up as a different hash).
"""

from __future__ import annotations

INPUT_KINDS = ("datasets", "models")
_read: dict[str, dict[str, str]] = {kind: {} for kind in INPUT_KINDS}


def record_input(kind: str, name: str, sha256: str) -> None:
    if kind not in _read:
        raise ValueError(f"input kind {kind!r} is not one of {', '.join(INPUT_KINDS)}")
    _read[kind][name] = sha256


def record_dataset(name: str, sha256: str) -> None:
    record_input("datasets", name, sha256)


def record_model(name: str, sha256: str) -> None:
    record_input("models", name, sha256)


def clear_inputs_read() -> None:
    for names in _read.values():
        names.clear()


def inputs_read() -> dict[str, dict[str, str]]:
    """Kind -> name -> sha256 of the content, for every input loaded since the last clear."""
    return {kind: dict(sorted(names.items())) for kind, names in _read.items()}


def datasets_read() -> dict[str, str]:
    return inputs_read()["datasets"]


def clear_datasets_read() -> None:
    clear_inputs_read()


def merge_datasets(per_task: list[dict[str, str]]) -> dict[str, str | list[str]]:
    """One name -> hash map over tasks; a name read with different bytes by different tasks keeps every hash."""
    seen: dict[str, set[str]] = {}
    for read in per_task:
        for name, digest in read.items():
            seen.setdefault(name, set()).add(digest)
    return {name: next(iter(d)) if len(d) == 1 else sorted(d) for name, d in sorted(seen.items())}
