"""Multi-turn text environments: the agent's turn is a response, the environment answers with an
observation appended to the context, until a final answer or the turn limit.

An environment holds no per-episode state: `step(problem, history, action)` sees the episode so far
(the agent's earlier actions), so thousands of episodes run in parallel from plain lists. Each turn
reports whether it was a final answer, whether that answer was right and its reward (by default the
verifiable one); episode rewards (outcome, UFO's discounted return, ...) are computed from these
records (`policylab.lm.multiturn.train.EPISODE_REWARDS`).

Built in:
- `retry`: a verifiable task from the engine's task mix; a wrong answer gets only the unary feedback
  "try again" (UFO, Liu et al. 2025) and the agent answers again, up to `max_turns` answers.
- `search`: a hidden code of `length` digits; the agent may query one position (`?2` -> `=7`) per turn
  and must give the whole code (`!372`) by the last turn (IGPO's and EMPG's information gathering).
  With `reveal="board"` a query shows every digit found so far in place (`=_7_`), which makes long
  codes learnable for a tiny model (the answer copies the last board instead of looking each
  position's query up).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from policylab.core.errors import ConfigError
from policylab.core.registry import Registry
from policylab.lm.tasks import Problem, Task, TaskMix, get_task, split_of
from policylab.lm.tasks.base import check_split


@dataclass(frozen=True)
class Turn:
    """What the environment made of one agent turn."""

    observation: str
    """Text appended to the context after the agent's turn ('' when the episode ends)."""
    done: bool
    answered: bool
    """The turn was a final answer (retry: every turn; search: a `!` turn)."""
    correct: bool
    """The final answer was right (False for a query)."""
    key: str | None = None
    """A normalized form of the action for repetition statistics (UFO's penalty, `repeat_rate`): on retry the
    answer with whitespace deleted and case folded (`normalize_answer`); on search the stripped action."""
    info: dict[str, Any] = field(default_factory=dict)
    reward: float | None = None
    """The environment's reward for this turn; None means the verifiable one, 1 for a right answer else 0."""

    @property
    def turn_reward(self) -> float:
        return float(self.correct) if self.reward is None else self.reward


class MultiTurnEnv(Protocol):
    name: str
    max_turns: int

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]: ...
    def step(self, problem: Problem, history: list[str], action: str) -> Turn: ...
    def answer_action(self, problem: Problem) -> str:
        """The agent's text that gives the true answer (teacher-forced by IGPO's information gain)."""
    def demonstration(self, problem: Problem, rng: random.Random) -> list[tuple[str, str]]:
        """A noisy scripted episode [(agent text, observation), ...] for the base model's warm start."""


MULTITURN_ENVS: Registry = Registry("multi-turn environment")
REVEALS = ("digit", "board")


def normalize_answer(text: str) -> str:
    """Lower-cased with every whitespace character deleted: what UFO's repetition count treats as one
    answer. The official reward keys its distinct-answer count the same way (`_minimal_normalize_answer`
    in `ragen/env/metamathqa/env.py`), so "12 3" and "1 23" are one answer there and here; collapsing
    runs of whitespace instead would count them as two (it matters for retry's space-separated lists)."""
    return "".join(text.lower().split())


class RetryEnv:
    """Answer, hear "try again" after a wrong answer, answer again; success on the first right answer."""

    name = "retry"

    def __init__(self, task: str = "gcd", max_turns: int = 5, feedback: str = "|try again|",
                 repeat_prob: float = 0.3, first_right_prob: float = 0.4):
        if max_turns < 1:
            raise ConfigError(f"retry: max_turns = {max_turns} is not allowed: must be >= 1")
        if not 0 <= repeat_prob <= 1 or not 0 <= first_right_prob <= 1:
            raise ConfigError(f"retry: repeat_prob = {repeat_prob} and first_right_prob = {first_right_prob} "
                              "must lie in [0, 1]")
        self.task: Task | TaskMix = get_task(task)
        self.task_name, self.max_turns, self.feedback = task, max_turns, feedback
        self.repeat_prob, self.first_right_prob = repeat_prob, first_right_prob

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]:
        return self.task.sample(n, split, rng)

    def step(self, problem: Problem, history: list[str], action: str) -> Turn:
        correct = self.task.score(problem, action).exact > 0
        done = correct or len(history) + 1 >= self.max_turns
        return Turn("" if done else self.feedback, done, True, correct, normalize_answer(action))

    def answer_action(self, problem: Problem) -> str:
        return problem.answer

    def distractor(self, problem: Problem, rng: random.Random) -> str:
        """A plausible wrong answer: a nearby integer, or the answer's items shuffled."""
        answer = problem.answer
        if answer.lstrip("-").isdigit():
            value = int(answer)
            spread = max(3, abs(value) // 2)
            for _ in range(100):
                wrong = value + rng.randint(-spread, spread)
                if wrong != value and (wrong >= 0 or value < 0):
                    return str(wrong)
            return str(value + 1)
        items = answer.split()
        for _ in range(100):
            rng.shuffle(items)
            if " ".join(items) != answer:
                return " ".join(items)
        return answer + "0"

    def demonstration(self, problem: Problem, rng: random.Random) -> list[tuple[str, str]]:
        """Wrong answers (each repeating the previous one with `repeat_prob`), then usually the right one.

        The first turn is right with `first_right_prob`; later turns with the same chance each, so
        some demonstrations fail all `max_turns` answers. Repeats are deliberate: a base model that
        sometimes repeats itself is where UFO's repetition penalty has something to remove."""
        turns: list[tuple[str, str]] = []
        wrong: str | None = None
        for t in range(self.max_turns):
            if rng.random() < self.first_right_prob:
                turns.append((problem.answer, ""))
                return turns
            if wrong is None or rng.random() >= self.repeat_prob:
                wrong = self.distractor(problem, rng)
            last = t + 1 == self.max_turns
            turns.append((wrong, "" if last else self.feedback))
        return turns


class SearchEnv:
    """Find a hidden code of `length` digits by querying one position per turn, then answer it."""

    name = "search"

    def __init__(self, length: int = 3, max_turns: int = 5, skip_prob: float = 0.3, redundant_prob: float = 0.25,
                 reveal: str = "digit"):
        if not 1 <= length <= 9:
            raise ConfigError(f"search: length = {length} is not allowed: must be 1..9 (one-digit positions)")
        if max_turns < 1:
            raise ConfigError(f"search: max_turns = {max_turns} is not allowed: must be >= 1")
        if reveal not in REVEALS:
            raise ConfigError(f"search: reveal = {reveal!r} is not allowed: use one of {', '.join(REVEALS)}")
        self.length, self.max_turns, self.reveal = length, max_turns, reveal
        self.skip_prob, self.redundant_prob = skip_prob, redundant_prob
        self.prompt = f"code{length}:"

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]:
        """Codes drawn uniformly; the split is fixed by a hash of the code (the prompt is shared)."""
        check_split(split)
        out = []
        while len(out) < n:
            code = "".join(str(rng.randrange(10)) for _ in range(self.length))
            if split_of(self.name, code) == split:
                out.append(Problem(self.name, self.prompt, code))
        return out

    def step(self, problem: Problem, history: list[str], action: str) -> Turn:
        last = len(history) + 1 >= self.max_turns
        text = action.strip()
        if text.startswith("!"):
            correct = text[1:] == problem.answer
            return Turn("", True, True, correct, text)
        position = self._position(text)
        if position is not None:
            seen = {p for p in map(self._position, history) if p is not None} | {position}
            return Turn("" if last else self._observe(problem.answer, position, seen), last, False, False, text)
        return Turn("" if last else "=?", last, False, False, None, {"invalid": True})

    def _position(self, action: str) -> int | None:
        """The queried position of a well-formed query `?k`, else None."""
        text = action.strip()
        if len(text) == 2 and text[0] == "?" and text[1].isdigit() and 1 <= int(text[1]) <= self.length:
            return int(text[1])
        return None

    def _observe(self, code: str, position: int, seen: set[int]) -> str:
        """`=7` (the queried digit) or, with reveal = 'board', `=_7_`: every digit found so far in place."""
        if self.reveal == "digit":
            return f"={code[position - 1]}"
        return "=" + "".join(code[p - 1] if p in seen else "_" for p in range(1, self.length + 1))

    def answer_action(self, problem: Problem) -> str:
        return "!" + problem.answer

    def demonstration(self, problem: Problem, rng: random.Random) -> list[tuple[str, str]]:
        """A careless searcher: positions in random order, each skipped with `skip_prob`, a redundant
        re-query after a turn with `redundant_prob`; the answer copies what was seen and guesses the rest."""
        plan: list[int] = []
        for position in rng.sample(range(1, self.length + 1), self.length):
            if rng.random() < self.skip_prob:
                continue
            plan.append(position)
            if rng.random() < self.redundant_prob:
                plan.append(rng.choice(plan))
        plan = plan[:self.max_turns - 1]
        seen = {p: problem.answer[p - 1] for p in plan}
        turns = [(f"?{p}", self._observe(problem.answer, p, set(plan[:k + 1]))) for k, p in enumerate(plan)]
        guess = "".join(seen.get(p, str(rng.randrange(10))) for p in range(1, self.length + 1))
        return turns + [("!" + guess, "")]


MULTITURN_ENVS.add("retry", RetryEnv)
MULTITURN_ENVS.add("search", SearchEnv)


def get_env(name: str, **options: Any) -> MultiTurnEnv:
    """An environment from its registered name and constructor options (unknown options are named)."""
    cls = MULTITURN_ENVS.get(name)
    try:
        return cls(**options)
    except TypeError as err:
        import inspect

        allowed = [p for p in inspect.signature(cls).parameters]
        raise ConfigError(f"multi-turn environment {name!r}: options {sorted(options)} are not all allowed "
                          f"({err}); allowed: {', '.join(allowed)}") from None
