"""reasoning-gym tasks through the task protocol (the `lm` extra installs the package).

rg's own scorer is kept, but RLVR's reward is exact match only: rg's default scorer gives
len(oracle)/len(answer) credit when the oracle is a substring of the answer ("16" earns 0.5
for oracle "6"), a hole a policy learns to exploit. The rg score stays available as `dense`.

The response is stripped of surrounding whitespace before rg scores it, which rg itself does not do:
its default scorer gives " 3" 0.5 for oracle "3" (the substring credit above); here " 3" is exact.
Inner whitespace is left to rg's scorer.
"""

from __future__ import annotations

import random
from typing import Any

from policylab.core.errors import ConfigError
from policylab.lm.tasks.base import Problem, Score, SplitSampler


def _compact(name: str, entry: dict[str, Any]) -> str | None:
    """Short prompts for character-level models, rendered from rg's metadata (notes §7.1)."""
    meta = entry["metadata"]
    if name in ("gcd", "lcm") and "numbers" in meta:
        return f"{name}({','.join(map(str, meta['numbers']))})="
    if name == "count_bits" and "number" in meta:
        return f"bits({meta['number']})="
    if name == "simple_equations" and "equation" in meta:
        return f"{meta['equation']}; {meta['variable']}="
    return None


class ReasoningGymTask(SplitSampler):
    """An rg dataset of `pool` items; problems are drawn from it and split by question hash."""

    def __init__(self, name: str, pool: int = 20_000, seed: int = 0, compact: bool = True, **config: Any):
        try:
            import reasoning_gym
        except ImportError:
            raise ConfigError("reasoning-gym is not installed: pip install 'policylab[lm]'") from None
        try:
            self.dataset = reasoning_gym.create_dataset(name, size=pool, seed=seed, **config)
        except (ValueError, TypeError, KeyError, AssertionError) as err:
            raise ConfigError(f"reasoning-gym dataset {name!r} with config {config} failed: {err}") from None
        self.name = f"rg:{name}"
        self.rg_name = name
        self.pool = pool
        self.compact = compact

    def draw(self, rng: random.Random) -> Problem:
        index = rng.randrange(self.pool)
        entry = self.dataset[index]
        prompt = (_compact(self.rg_name, entry) if self.compact else None) or entry["question"]
        return Problem(self.name, prompt, str(entry["answer"]), {"index": index})

    def score(self, problem: Problem, response: str) -> Score:
        if not response.strip():
            return Score(0.0, 0.0)
        entry = self.dataset[problem.meta["index"]]
        try:
            dense = float(self.dataset.score_answer(response.strip(), entry))
        except Exception:  # noqa: BLE001 - rg scorers can raise on malformed answers; that earns 0
            dense = 0.0
        return Score(float(dense == 1.0), dense)
