"""Compact verifiable tasks for character-level models (the notes' default mix, §7.4).

Each draws a question from a small problem space and renders a short prompt (`gcd(12,18)=`).
Exact match is the reward; the dense score grades near misses for shaping and gold rewards.
Spaces follow the notes' "easy configs": gcd <= 60, lcm <= 30, count_bits <= 1023,
simple_equations with two terms <= 10, number_sorting of three integers 0-99.
"""

from __future__ import annotations

import math
import random
import string

from policylab.lm.tasks.base import Problem, Score, SplitSampler


def _parse_int(text: str) -> int | None:
    text = text.strip()
    if not text or len(text) > 12:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def numeric_score(answer: str, response: str, scale: float) -> Score:
    """Exact integer match; dense = 1 - |error| / scale, floored at 0; unparseable -> 0."""
    value = _parse_int(response)
    if value is None:
        return Score(0.0, 0.0)
    target = int(answer)
    return Score(float(value == target), max(0.0, 1.0 - abs(value - target) / scale))


class IntegerTask(SplitSampler):
    scale = 10.0

    def score(self, problem: Problem, response: str) -> Score:
        return numeric_score(problem.answer, response, self.scale)


class PairFunctionTask(IntegerTask):
    """`name(a,b)=` -> function(a, b) for a, b uniform in 1..max_value."""

    function = staticmethod(math.gcd)

    def draw(self, rng: random.Random) -> Problem:
        a, b = rng.randint(1, self.max_value), rng.randint(1, self.max_value)
        return Problem(self.name, f"{self.name}({a},{b})=", str(self.function(a, b)), {"numbers": (a, b)})


class GCD(PairFunctionTask):
    name = "gcd"
    max_value = 60
    scale = 20.0
    function = staticmethod(math.gcd)


class LCM(PairFunctionTask):
    name = "lcm"
    max_value = 30
    scale = 100.0
    function = staticmethod(math.lcm)


class CountBits(IntegerTask):
    name = "count_bits"
    max_value = 1023
    scale = 5.0

    def draw(self, rng: random.Random) -> Problem:
        n = rng.randint(1, self.max_value)
        return Problem(self.name, f"bits({n})=", str(n.bit_count()), {"n": n})


class SimpleEquations(IntegerTask):
    """`h + 6 = 7; h=` -> `1`: one unknown, one other term, values <= 10, + or -."""

    name = "simple_equations"
    max_value = 10
    scale = 10.0

    def draw(self, rng: random.Random) -> Problem:
        var = rng.choice(string.ascii_lowercase)
        x, c = rng.randint(1, self.max_value), rng.randint(1, self.max_value)
        if rng.random() < 0.5:
            text, rhs = f"{var} + {c} = {x + c}", x + c
        else:
            text, rhs = f"{var} - {c} = {x - c}", x - c
        return Problem(self.name, f"{text}; {var}=", str(x), {"equation": text, "variable": var, "rhs": rhs})


class NumberSorting(SplitSampler):
    """`sort 59 37 62=` -> `37 59 62`; dense = share of positions right."""

    name = "number_sorting"
    count = 3
    max_value = 99

    def draw(self, rng: random.Random) -> Problem:
        numbers = [rng.randint(0, self.max_value) for _ in range(self.count)]
        return Problem(self.name, f"sort {' '.join(map(str, numbers))}=", " ".join(map(str, sorted(numbers))),
                       {"numbers": tuple(numbers)})

    def score(self, problem: Problem, response: str) -> Score:
        got, want = response.strip().split(), problem.answer.split()
        if not got:
            return Score(0.0, 0.0)
        right = sum(g == w for g, w in zip(got, want))
        return Score(float(got == want), right / max(len(want), len(got)))


BUILTIN_TASKS = {cls.name: cls for cls in (GCD, SimpleEquations, LCM, CountBits, NumberSorting)}
DEFAULT_MIX = ("gcd", "simple_equations", "lcm", "count_bits", "number_sorting")
