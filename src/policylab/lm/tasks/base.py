"""The task protocol: problems with a prompt and an answer, a scorer, and a hash-based split."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from policylab.core.errors import ConfigError

SPLITS = ("train", "val", "test")
TEST_PERCENT = 10
VAL_PERCENT = 10


@dataclass(frozen=True)
class Problem:
    task: str
    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Score:
    exact: float
    """1.0 when the response is the answer, else 0.0: the RLVR reward."""
    dense: float
    """A graded score in [0, 1] (closeness of a number, share of right items): shaping or gold signal."""


def split_of(task: str, prompt: str) -> str:
    """Which split a question belongs to, fixed by a hash of (task, prompt): never seed-dependent."""
    bucket = int.from_bytes(hashlib.sha256(f"{task}\x00{prompt}".encode()).digest()[:8], "big") % 100
    if bucket < TEST_PERCENT:
        return "test"
    if bucket < TEST_PERCENT + VAL_PERCENT:
        return "val"
    return "train"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split = {split!r} is not allowed: must be one of {', '.join(SPLITS)}")
    return split


class Task(Protocol):
    name: str

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]:
        """n problems of one split (repeats allowed), drawn with `rng`."""

    def score(self, problem: Problem, response: str) -> Score: ...


class SplitSampler:
    """Rejection sampling of a generator's problems into the hash split they belong to."""

    max_tries = 10_000

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]:
        check_split(split)
        out = []
        for _ in range(n):
            for _ in range(self.max_tries):
                problem = self.draw(rng)
                if split_of(problem.task, problem.prompt) == split:
                    out.append(problem)
                    break
            else:
                raise ConfigError(f"task {self.name}: no {split} question found in {self.max_tries} draws; "
                                  "its problem space is too small for a hash split")
        return out

    def draw(self, rng: random.Random) -> Problem:
        raise NotImplementedError


def distinct_problems(task: Task, n: int, split: str, seed: int, by_answer: bool = False) -> list[Problem]:
    """Up to n distinct problems of a split, the same list for the same seed (a fixed test set).

    Problems are told apart by their prompt, or by (prompt, answer) with `by_answer` (environments
    whose prompt is shared and whose answer is hidden, like multi-turn search)."""
    rng = random.Random(seed)
    seen: dict[Any, Problem] = {}
    for _ in range(50):
        for problem in task.sample(n, split, rng):
            seen.setdefault((problem.prompt, problem.answer) if by_answer else problem.prompt, problem)
            if len(seen) == n:
                return list(seen.values())
    return list(seen.values())


class TaskMix:
    """Several tasks sampled uniformly; scores go to the task that made the problem."""

    def __init__(self, tasks: list[Task]):
        if not tasks:
            raise ConfigError("a task mix needs at least one task")
        self.tasks = {t.name: t for t in tasks}
        self.name = "+".join(self.tasks)

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]:
        names = list(self.tasks)
        picks = [names[rng.randrange(len(names))] for _ in range(n)]
        out = []
        for name in names:  # one call per task keeps each task's rejection loop batched
            count = picks.count(name)
            if count:
                out.extend(self.tasks[name].sample(count, split, rng))
        rng.shuffle(out)
        return out

    def score(self, problem: Problem, response: str) -> Score:
        return self.tasks[problem.task].score(problem, response)

    def members(self) -> list[Task]:
        return list(self.tasks.values())
