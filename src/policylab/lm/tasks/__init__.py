"""Verifiable tasks and tokenizers. `get_task("gcd")`, `get_task("mix")`, `get_task("gcd,lcm")`,
`get_task("rg:products")` (any reasoning-gym dataset with its default config)."""

from __future__ import annotations

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

            tasks.append(ReasoningGymTask(name[3:]))
        else:
            tasks.append(TASKS.get(name)())
    if len(tasks) == 1 and spec != "mix":
        return tasks[0]
    return TaskMix(tasks)


def task_members(task: Task | TaskMix) -> list[Task]:
    return task.members() if isinstance(task, TaskMix) else [task]


__all__ = ["DEFAULT_MIX", "SPLITS", "TASKS", "CharTokenizer", "HFTokenizer", "Problem", "Score", "Task",
           "TaskMix", "Tokenizer", "TokenizerError", "distinct_problems", "get_task", "prompt_ids", "split_of",
           "task_members"]
