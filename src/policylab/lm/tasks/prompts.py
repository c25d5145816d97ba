"""A task from your own prompts and reward functions (TRL's data shape), for the native engine.

Prompts come as a list of strings, a list of dicts with a "prompt" key, or a `datasets.Dataset` with a
"prompt" column; every other column reaches the reward functions by name, one value per completion, as TRL
passes them. A conversational prompt (a list of {"role", "content"} messages) goes through the tokenizer's
chat template with the generation prompt added; completions of such prompts reach the reward functions as
[{"role": "assistant", "content": ...}], as in TRL, and `completion_ids` (each completion re-encoded) as
well. The reward is the weighted sum of the functions: it is the task's score (`Score.exact` and `.dense`),
so "correct" for objectives that read it (NFT, THR) means a reward above 0. A completion cut at
max_new_tokens earns 0 (the engine's rule for every task).
"""

from __future__ import annotations

import random
from typing import Any

from policylab.core.errors import ConfigError
from policylab.lm.rewards import RewardFunctions
from policylab.lm.tasks.base import Problem, Score, check_split


def prompt_rows(data: Any, field: str = "train_dataset") -> list[dict[str, Any]]:
    """Rows {"prompt": ..., other columns...} of a list of strings, a list of dicts or a datasets.Dataset."""
    if hasattr(data, "column_names") and hasattr(data, "to_list"):  # datasets.Dataset
        rows = data.to_list()
    elif isinstance(data, (list, tuple)):
        rows = [{"prompt": item} if isinstance(item, (str, list)) else dict(item) for item in data]
    else:
        raise ConfigError(f"{field} of type {type(data).__name__} is not allowed: a list of prompts, a list of dicts "
                          "with a 'prompt' key, or a datasets.Dataset with a 'prompt' column")
    if not rows:
        raise ConfigError(f"{field} is empty: it needs at least one prompt")
    missing = next((i for i, row in enumerate(rows) if "prompt" not in row), None)
    if missing is not None:
        raise ConfigError(f"{field} row {missing} has no 'prompt' (keys: {', '.join(rows[missing])})")
    return rows


class PromptTask:
    """`Task` over the given prompts: every prompt is in every split (hold-out prompts are a second task)."""

    def __init__(self, data: Any, rewards: RewardFunctions, tokenizer: Any = None, name: str = "prompts",
                 field: str = "train_dataset"):
        self.name, self.rewards, self.tokenizer = name, rewards, tokenizer
        self.rows = prompt_rows(data, field)
        self.problems = [Problem(name, self._text(row["prompt"], tokenizer, i), "",
                                 {"row": i, "conversational": isinstance(row["prompt"], list)})
                         for i, row in enumerate(self.rows)]

    @staticmethod
    def _text(prompt: Any, tokenizer: Any, index: int) -> str:
        if isinstance(prompt, str):
            return prompt
        template = getattr(tokenizer, "chat_template", None)
        if not isinstance(prompt, list) or not all(isinstance(m, dict) and "content" in m for m in prompt):
            raise ConfigError(f"prompt {index} is not allowed: a string or a list of {{'role', 'content'}} messages")
        if template is None:
            raise ConfigError(f"prompt {index} is a message list but the tokenizer has no chat template: give "
                              "string prompts or a tokenizer with chat_template set")
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        bos = getattr(tokenizer, "bos_token", None)
        return text[len(bos):] if bos and text.startswith(bos) else text  # the engine prepends BOS itself

    def sample(self, n: int, split: str, rng: random.Random) -> list[Problem]:
        check_split(split)
        return [self.problems[rng.randrange(len(self.problems))] for _ in range(n)]

    def score_batch(self, problems: list[Problem], responses: list[str]) -> list[Score]:
        rows = [self.rows[p.meta["row"]] for p in problems]
        completions = [[{"role": "assistant", "content": r}] if p.meta["conversational"] else r
                       for p, r in zip(problems, responses)]
        columns = {k: [row.get(k) for row in rows] for k in rows[0] if k != "prompt"}
        if self.tokenizer is not None:  # TRL passes each completion's token ids too
            columns["completion_ids"] = [self.tokenizer.encode(r, add_special_tokens=False) for r in responses]
        rewards = self.rewards([row["prompt"] for row in rows], completions, columns)
        return [Score(exact=float(r), dense=float(r)) for r in rewards]

    def score(self, problem: Problem, response: str) -> Score:
        return self.score_batch([problem], [response])[0]
