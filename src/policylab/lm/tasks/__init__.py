"""Verifiable tasks and tokenizers. `get_task("gcd")`, `get_task("mix")`, `get_task("gcd,lcm")`,
`get_task("rg:products")` (any reasoning-gym dataset), `get_task("rg:chain_sum?min_terms=2&max_terms=3")` (with
its config: values read as JSON where they parse, else as strings)."""

from __future__ import annotations

import json
from typing import Any

from policylab.core.errors import ConfigError
from policylab.core.registry import Registry
from policylab.lm.tasks.base import SPLITS, Problem, Score, Task, TaskMix, distinct_problems, split_of
from policylab.lm.tasks.builtin import BUILTIN_TASKS, DEFAULT_MIX
from policylab.lm.tasks.tokenizer import CharTokenizer, HFTokenizer, Tokenizer, TokenizerError, prompt_ids

TASKS: Registry = Registry("task")
for _name, _cls in BUILTIN_TASKS.items():
    TASKS.add(_name, _cls)


def get_task(spec: str) -> Task | TaskMix:
    """A task or a mix from its name: one name, 'mix' (the default five) or names joined by ','."""
    names = list(DEFAULT_MIX) if spec == "mix" else [s.strip() for s in str(spec).split(",") if s.strip()]
    tasks = []
    for name in names:
        if name.startswith("rg:"):
            from policylab.lm.tasks.reasoning_gym import ReasoningGymTask

            dataset, _, query = name[3:].partition("?")
            tasks.append(ReasoningGymTask(dataset, **rg_config(query, name)))
        else:
            tasks.append(TASKS.get(name)())
    if len(tasks) == 1 and spec != "mix":
        return tasks[0]
    return TaskMix(tasks)


def rg_config(query: str, spec: str) -> dict[str, Any]:
    """key=value&key=value -> {key: value}, values as JSON literals where they parse (2, 0.5, true, "x")."""
    config: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"task = {spec!r}: {item!r} is not allowed; a reasoning-gym config is "
                              "rg:<dataset>?key=value&key=value")
        try:
            config[key] = json.loads(raw)
        except ValueError:
            config[key] = raw
    return config


def task_members(task: Task | TaskMix) -> list[Task]:
    return task.members() if isinstance(task, TaskMix) else [task]


__all__ = ["DEFAULT_MIX", "SPLITS", "TASKS", "CharTokenizer", "HFTokenizer", "Problem", "Score", "Task",
           "TaskMix", "Tokenizer", "TokenizerError", "distinct_problems", "get_task", "prompt_ids", "split_of",
           "task_members"]
