"""A synthetic gold reward: the stand-in for human judgement in preference experiments (notes §7.3).

gold(x, y) = w_exact [y is the answer] + w_dense dense(y) + w_format [y is well formed]
             - w_length min(|len(y) - len(answer)|, length_cap)
The task's own dense score grades near misses (1 - |error| / scale for numbers, the share of right
items for lists), so the gold is continuous enough for Bradley-Terry labels to carry signal, and
the length term is an axis a proxy can be fooled on. A truncated response (no EOS within the
budget) has no final answer: it earns only the length term, capped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from policylab.core.config import Config, param
from policylab.lm.tasks import Problem, Task, TaskMix


@dataclass(frozen=True)
class GoldConfig(Config):
    exact_weight: float = param(1.0, ge=0)
    dense_weight: float = param(0.5, ge=0)
    format_weight: float = param(0.2, ge=0)
    """Paid when the task's scorer can read the response at all (a dense score above 0, or exact)."""
    length_weight: float = param(0.05, ge=0)
    """Per character of distance from the answer's length."""
    length_cap: int = param(10, gt=0)


class GoldReward:
    """`score(problems, responses)` -> [B] gold values; a `RewardModel` that knows the answers."""

    def __init__(self, task: Task | TaskMix, cfg: GoldConfig = GoldConfig()):
        self.task, self.cfg = task, cfg

    def value(self, problem: Problem, response: str, truncated: bool = False) -> float:
        cfg = self.cfg
        length = min(abs(len(response) - len(problem.answer)), cfg.length_cap)
        if truncated:
            return -cfg.length_weight * cfg.length_cap
        s = self.task.score(problem, response)
        readable = float(s.exact > 0 or s.dense > 0)
        return (cfg.exact_weight * s.exact + cfg.dense_weight * s.dense + cfg.format_weight * readable
                - cfg.length_weight * length)

    def score(self, problems: Sequence[Problem], responses: Sequence[str],
              truncated: Sequence[bool] | None = None) -> torch.Tensor:
        cut = truncated if truncated is not None else [False] * len(responses)
        return torch.tensor([self.value(p, r, bool(c)) for p, r, c in zip(problems, responses, cut)])
