"""Rewards for your own prompts, in TRL's shape: a reward function is `fn(prompts, completions, **columns)
-> list[float | None]`, called on a batch; several combine as a weighted sum (None counts as 0, as TRL's
nansum does). The answer extractors turn a reasoning model's completion into the part to check:

    reward = exact_match(extract=boxed)            # compares \\boxed{...} with the dataset's "answer" column
    trainer = policylab.RLVRTrainer(model, [reward, format_bonus], train_dataset=ds, reward_weights=[1, 0.1])

`exact_match` compares numbers numerically (1e-6 relative) when both sides parse as numbers, else the
stripped strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from policylab.core.errors import ConfigError

RewardFunction = Callable[..., Sequence[Any]]
Extractor = Callable[[str], "str | None"]

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)


def last_number(text: str) -> str | None:
    """The last number in the text (thousands commas dropped), or None."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def boxed(text: str) -> str | None:
    r"""The content of the last \boxed{...}, braces balanced, or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed{") - 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip()
    return None


def answer_tag(text: str) -> str | None:
    """The content of the last <answer>...</answer>, or None."""
    found = _ANSWER_TAG.findall(text)
    return found[-1].strip() if found else None


def regex(pattern: str, group: int = 1) -> Extractor:
    """An extractor returning `group` of the last match of `pattern`."""
    try:
        compiled = re.compile(pattern, re.S)
    except re.error as err:
        raise ConfigError(f"pattern = {pattern!r} is not a regular expression: {err}") from None
    if group > compiled.groups:
        raise ConfigError(f"group = {group} is not allowed: pattern {pattern!r} has {compiled.groups} groups")

    def extract(text: str) -> str | None:
        matches = list(compiled.finditer(text))
        return matches[-1].group(group).strip() if matches else None

    return extract


def same_answer(given: str | None, expected: Any) -> bool:
    if given is None:
        return False
    expected = str(expected).strip()
    try:
        a, b = float(given.replace(",", "")), float(expected.replace(",", ""))
    except ValueError:
        return given.strip() == expected
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes conversational ones as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise ConfigError(f"completion of type {type(completion).__name__} is not allowed: text or a message list")


def exact_match(extract: Extractor = last_number, column: str = "answer") -> RewardFunction:
    """1.0 when the extracted answer equals the dataset's `column`, else 0.0 (a TRL reward function)."""

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        if column not in columns:
            raise ConfigError(f"exact_match needs the dataset column {column!r}; columns: {', '.join(columns)}")
        return [float(same_answer(extract(completion_text(c)), want)) for c, want in zip(completions, columns[column])]

    reward.__name__ = f"exact_match_{getattr(extract, '__name__', 'extract')}"
    return reward


class RewardFunctions:
    """Several TRL-signature reward functions and their weights, called on one batch."""

    def __init__(self, funcs: RewardFunction | Sequence[RewardFunction], weights: Sequence[float] | None = None):
        self.funcs = [funcs] if callable(funcs) else list(funcs)
        if not self.funcs or not all(callable(f) for f in self.funcs):
            raise ConfigError("reward_funcs must be a callable or a non-empty list of callables "
                              "fn(prompts, completions, **columns) -> list[float]")
        self.weights = [1.0] * len(self.funcs) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.funcs):
            raise ConfigError(f"reward_weights has {len(self.weights)} entries for {len(self.funcs)} reward functions")

    def __call__(self, prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]]) -> torch.Tensor:
        total = torch.zeros(len(completions), dtype=torch.float64)
        for fn, weight in zip(self.funcs, self.weights):
            values = list(fn(prompts=prompts, completions=completions, **columns))
            name = getattr(fn, "__name__", type(fn).__name__)
            if len(values) != len(completions):
                raise ConfigError(f"reward function {name} returned {len(values)} values for {len(completions)} "
                                  "completions")
            try:
                scores = torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)
            except (TypeError, ValueError):
                raise ConfigError(f"reward function {name} returned a value that is not a number or None") from None
            total += weight * torch.where(torch.isnan(scores), torch.zeros_like(scores), scores)
        return total.float()


def ensemble(funcs: Sequence[RewardFunction], objective: str = "mean", uwo_weight: float = 0.5,
             unbiased_variance: bool = False) -> RewardFunction:
    """Reward-model ensembles (Coste et al. 2024) as one reward function for RLVRTrainer or TRL: each of
    `funcs` (a member reward model, its scores already normalized) scores the batch, and mean, WCO (the
    minimum) or UWO (mean - uwo_weight * variance) combines them, by `preference.rm_ensemble`'s code."""
    from policylab.lm.preference.rm_ensemble import RewardEnsemble

    combiner = RewardEnsemble(list(funcs), objective, uwo_weight, unbiased_variance)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        scores = torch.tensor([[float(v) for v in fn(prompts=prompts, completions=completions, **columns)]
                               for fn in combiner.members], dtype=torch.float64)
        return combiner.combine(scores).tolist()

    reward.__name__ = f"ensemble_{objective}"
    return reward
