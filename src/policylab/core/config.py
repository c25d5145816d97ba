"""Frozen dataclass configs: validated at construction, overridable from JSON/YAML or the CLI.

A config field carries its allowed range in its metadata (`param(3e-4, gt=0)`); a bad value
fails with one line naming the config, the field, the value and what is allowed.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import importlib
import json
import operator
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from policylab.core.atomic import atomic_write_json
from policylab.core.errors import ConfigError

C = TypeVar("C", bound="Config")
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_OPS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def param(default: Any, *, gt=None, ge=None, lt=None, le=None, choices=None) -> Any:
    """A config field with its allowed values. Tuples are fine as defaults (they are frozen)."""
    meta = {k: v for k, v in dict(gt=gt, ge=ge, lt=lt, le=le, choices=choices).items() if v is not None}
    return dataclasses.field(default=default, metadata=meta)


_DEFERRED = contextvars.ContextVar("policylab_config_validation_deferred", default=False)


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of all configs. Subclasses are `@dataclass(frozen=True)` with `param(...)` fields."""

    def __post_init__(self) -> None:
        if not _DEFERRED.get():
            validate(self)

    def check(self) -> None:
        """Rules across fields or against registries; `validate` calls it after the field checks."""

    def replace(self: C, **changes: Any) -> C:
        return from_dict(type(self), changes, base=self)


def validate(cfg: C) -> C:
    """Check every field against its annotation and bounds; coerce ints to floats, lists to tuples."""
    hints = typing.get_type_hints(type(cfg))
    for field in dataclasses.fields(cfg):
        value = _coerce(cfg, field.name, getattr(cfg, field.name), hints.get(field.name))
        object.__setattr__(cfg, field.name, value)
        _check_bounds(cfg, field, value)
    cfg.check()
    return cfg


@contextlib.contextmanager
def validation_deferred() -> Iterator[None]:
    """Build configs without validating (a CLI parser that wraps errors), then call `validate`."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def _coerce(cfg: Config, name: str, value: Any, hint: Any) -> Any:
    """Check the value against the annotation; accept int for float and lists for tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(cfg, name, value, inner[0]) if len(inner) == 1 else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(cfg, name, value, "a sequence of values")
        item = args[0] if args else Any
        return tuple(_coerce(cfg, name, v, item) for v in value)
    if origin is typing.Literal:
        if value not in args:
            _fail(cfg, name, value, f"one of {', '.join(map(repr, args))}")
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and not (isinstance(value, int) and not isinstance(value, bool)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        _fail(cfg, name, value, "an integer")
    if hint is float and not isinstance(value, float):
        _fail(cfg, name, value, "a number")
    if hint is bool and not isinstance(value, bool):
        _fail(cfg, name, value, "true or false")
    if hint is str and not isinstance(value, str):
        _fail(cfg, name, value, "a string")
    return value


# Sizes a user can set, by field-name ending, and the most each may be where a field declares no `le` of its
# own: far above any run this library is for, far below what fills a machine (`--num-envs 1e11` once did).
SIZE_LIMITS: tuple[tuple[str, int], ...] = (
    ("num_envs", 4096), ("batch_size", 1 << 20), ("prompts_per_step", 1 << 16), ("group_size", 4096),
    ("hidden", 1 << 14), ("ensemble", 1024), ("num_sampled_actions", 4096), ("rollout_steps", 1 << 20),
    ("buffer_size", 1 << 26), ("max_new_tokens", 1 << 15), ("d_model", 1 << 14), ("n_layers", 256),
    ("minibatch_size", 1 << 20), ("block_size", 1 << 15), ("dim", 1 << 14), ("n_head", 1024), ("n_layer", 256),
    ("num_critics", 1024), ("samples_per_prompt", 4096), ("eval_samples", 1 << 16), ("eval_prompts", 1 << 16),
    ("rollout_batch", 1 << 16), ("rollouts", 1 << 20), ("noise_levels", 1 << 14), ("vocab_size", 1 << 20),
    ("search_size", 1 << 20), ("tokens", 1 << 16), ("history", 1 << 14), ("history_length", 1 << 14),
    ("segment_length", 1 << 14), ("num_pairs", 1 << 24), ("prompts", 1 << 20), ("demonstrations", 1 << 20),
    ("elites", 1024), ("pairs_per_prompt", 1 << 12), ("queries_per_round", 1 << 16), ("probe_chunk", 1 << 20),
)
MAX_LAYERS = 64
"""The most hidden layers a `hidden` tuple may list."""


def size_limit(name: str) -> int | None:
    """The default upper bound of a size field (see `SIZE_LIMITS`), or None for a field that is not a size."""
    return next((limit for suffix, limit in SIZE_LIMITS if name == suffix or name.endswith("_" + suffix)), None)


def _check_bounds(cfg: Config, field: dataclasses.Field, value: Any) -> None:
    meta = field.metadata
    limit = size_limit(field.name) if "le" not in meta and "lt" not in meta else None
    if limit is not None:
        meta = {**meta, "le": limit}
        if isinstance(value, tuple) and len(value) > MAX_LAYERS:
            _fail(cfg, field.name, value, f"at most {MAX_LAYERS} layers")
    if "choices" in meta and value not in meta["choices"]:
        _fail(cfg, field.name, value, f"one of {', '.join(map(repr, meta['choices']))}")
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if any(key in meta and not _OPS[key](v, meta[key]) for key in _BOUNDS):
            _fail(cfg, field.name, value, _allowed(meta))


def _allowed(meta: dict) -> str:
    return " and ".join(f"{_BOUNDS[k]} {meta[k]}" for k in _BOUNDS if k in meta)


def _fail(cfg: Config, name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{type(cfg).__name__}.{name} = {value!r} is not allowed: must be {allowed}")


def field_names(cls: type[Config]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(cls: type[C], values: dict[str, Any], base: C | None = None, source: str = "") -> C:
    """Build `cls` from a mapping; unknown keys are an error listing the known fields."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source or cls.__name__}: expected a mapping of field: value, got {type(values).__name__}")
    known = field_names(cls)
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f" in {source}" if source else ""
            raise ConfigError(
                f"unknown field '{key}'{where} for {cls.__name__}{hint}; known: {', '.join(known)}"
            )
    merged = to_dict(base) if base is not None else {}
    merged.update(values)
    return cls(**merged)


def to_dict(cfg: Config) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML override file into a dict, with one-line errors on bad files."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    except Exception as err:  # yaml.YAMLError and friends
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"config file {path} is not valid YAML: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value, got {type(data).__name__}")
    return data


def type_string(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def save_config(path: str | Path, cfg: Config, **extra: Any) -> None:
    """Save the resolved config with its type string so that `load_config` rebuilds it."""
    atomic_write_json(path, {"type": type_string(type(cfg)), "values": to_dict(cfg), **extra})


def load_config(path: str | Path) -> Config:
    data = json.loads(Path(path).read_text())
    module, _, name = data["type"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    return from_dict(cls, data["values"], source=str(path))
