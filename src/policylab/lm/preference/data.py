"""Preference data made here: policy samples, pairs of distinct responses, Bradley-Terry labels.

For a pair (y1, y2) of one prompt, the labeller prefers y1 with probability
    P(y1 > y2) = sigmoid((gold(y1) - gold(y2)) / temperature)          (Bradley-Terry; temperature 0: argmax)
and a share `noise` of the labels is then flipped uniformly at random (Coste et al.'s 25% setting).
`gold_margin` keeps gold(chosen) - gold(rejected) as labelled, so an evaluation can score a reward
model against the gold order rather than against the noisy labels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.errors import ConfigError
from policylab.lm.generate import SamplingConfig, generate
from policylab.lm.policy import CausalPolicy
from policylab.lm.tasks import Problem, Tokenizer, distinct_problems, prompt_ids


@dataclass
class Samples:
    """n responses for each of a list of problems, with their truncation flags."""

    problems: list[Problem]
    responses: list[list[str]]
    truncated: list[list[bool]]
    log_ratio: list[list[float]] | None = None
    """sum_t log pi(y_t | .) - log pi_ref(y_t | .) per response, when a reference was given: its mean over
    responses is the k1 estimate of KL(pi || pi_ref) in nats (unbiased, since y ~ pi)."""

    def kl(self) -> float:
        if self.log_ratio is None:
            raise ConfigError("these samples were drawn without a reference policy: no KL to report")
        values = [v for row in self.log_ratio for v in row]
        return sum(values) / max(len(values), 1)

    def flat(self) -> tuple[list[Problem], list[str], list[bool]]:
        problems = [p for p, rs in zip(self.problems, self.responses) for _ in rs]
        return problems, [r for rs in self.responses for r in rs], [c for cs in self.truncated for c in cs]


@torch.no_grad()
def sample_responses(policy: CausalPolicy, tokenizer: Tokenizer, problems: Sequence[Problem], n: int,
                     max_new_tokens: int, temperature: float = 1.0, seed: int = 0, chunk: int = 512,
                     reference: CausalPolicy | None = None) -> Samples:
    """n sampled responses per problem (batched with the KV cache, `chunk` rows per call); with a
    `reference`, also each response's log-ratio to it (at temperature 1, the sampling distribution)."""
    if n < 1:
        raise ConfigError(f"n = {n} is not allowed: must be >= 1 response per prompt")
    was_training = policy.training
    policy.eval()
    rows = [prompt_ids(tokenizer, p.prompt) for p in problems for _ in range(n)]
    generator = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    if reference is not None and temperature != 1.0:
        raise ConfigError(f"temperature = {temperature} is not allowed with a reference: the KL is of the policy "
                          "itself, sampled at temperature 1")
    texts, cut, ratio = [], [], []
    for start in range(0, len(rows), chunk):
        gen = generate(policy, rows[start:start + chunk], sampling, tokenizer.eos_id, tokenizer.pad_id, generator)
        texts += [tokenizer.decode(r.tolist()) for r in gen.responses]
        cut += gen.truncated.tolist()
        if reference is not None:
            ref = reference.response_outputs(gen.input_ids, gen.attention_mask, gen.prompt_len,
                                             want_entropy=False).logprobs
            ratio += ((gen.logprobs - ref) * gen.response_mask).sum(-1).tolist()
    policy.train(was_training)
    per_problem = lambda values: [values[i * n:(i + 1) * n] for i in range(len(problems))]
    return Samples(list(problems), per_problem(texts), per_problem(cut), per_problem(ratio) if reference else None)


def train_samples(policy: CausalPolicy, tokenizer: Tokenizer, task: Any, prompts: int, seed: int, n: int = 8,
                  max_new_tokens: int = 12) -> Samples:
    """n samples of the policy on `prompts` distinct train-split prompts, both drawn by the seed (the prompt list
    by 1000 + seed, so that it differs from the seed's sampling stream)."""
    return sample_responses(policy, tokenizer, distinct_problems(task, prompts, "train", seed=1000 + seed), n,
                            max_new_tokens, seed=seed)


@dataclass
class PreferencePairs:
    problems: list[Problem]
    chosen: list[str]
    rejected: list[str]
    gold_margin: torch.Tensor
    """[N] gold(chosen) - gold(rejected): negative where the label disagrees with the gold order."""
    flipped: torch.Tensor
    """[N] bool: the label was flipped by the noise."""

    def __len__(self) -> int:
        return len(self.chosen)

    def subset(self, index: Sequence[int]) -> PreferencePairs:
        index = list(index)
        return PreferencePairs([self.problems[i] for i in index], [self.chosen[i] for i in index],
                               [self.rejected[i] for i in index], self.gold_margin[index], self.flipped[index])

    def shuffled(self, seed: int) -> PreferencePairs:
        order = list(range(len(self)))
        random.Random(seed).shuffle(order)
        return self.subset(order)

    @staticmethod
    def concat(parts: Sequence[PreferencePairs]) -> PreferencePairs:
        return PreferencePairs([p for s in parts for p in s.problems], [c for s in parts for c in s.chosen],
                               [r for s in parts for r in s.rejected], torch.cat([s.gold_margin for s in parts]),
                               torch.cat([s.flipped for s in parts]))


def preference_probability(margin: torch.Tensor, temperature: float) -> torch.Tensor:
    """P(first preferred) of the labeller `bradley_terry_label`: sigmoid(margin / T); T = 0: 1, 0 or 1/2 on ties."""
    if temperature < 0:
        raise ConfigError(f"label temperature = {temperature} is not allowed: must be >= 0 (0: argmax labels)")
    if temperature == 0:
        return (margin > 0).to(margin.dtype) + 0.5 * (margin == 0).to(margin.dtype)
    return torch.sigmoid(margin / temperature)


def bradley_terry_label(margin: float, temperature: float, rng: random.Random) -> bool:
    """True when the first response is preferred, drawn with P = sigmoid(margin / temperature)."""
    if temperature == 0:
        return margin > 0 or (margin == 0 and rng.random() < 0.5)
    return rng.random() < 1.0 / (1.0 + math.exp(-margin / temperature))


def label_pairs(samples: Samples, gold, pairs_per_prompt: int, seed: int, temperature: float = 0.1,
                noise: float = 0.0) -> PreferencePairs:
    """Up to `pairs_per_prompt` pairs of distinct responses per prompt, labelled by the gold reward.

    Prompts whose responses are all the same text give no pair. `gold` is a `GoldReward`.
    """
    if not 0 <= noise <= 0.5:
        raise ConfigError(f"noise = {noise} is not allowed: the flipped share must be in [0, 0.5]")
    if temperature < 0:
        raise ConfigError(f"temperature = {temperature} is not allowed: must be >= 0 (0: argmax labels)")
    rng = random.Random(seed)
    problems, chosen, rejected, margins, flipped = [], [], [], [], []
    for problem, responses, cut in zip(samples.problems, samples.responses, samples.truncated):
        values = {r: gold.value(problem, r, c) for r, c in zip(responses, cut)}
        distinct = sorted(values)
        candidates = [(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1:]]
        rng.shuffle(candidates)
        for a, b in candidates[:pairs_per_prompt]:
            first_wins = bradley_terry_label(values[a] - values[b], temperature, rng)
            flip = rng.random() < noise
            win, lose = (a, b) if first_wins != flip else (b, a)
            problems.append(problem)
            chosen.append(win)
            rejected.append(lose)
            margins.append(values[win] - values[lose])
            flipped.append(flip)
    return PreferencePairs(problems, chosen, rejected, torch.tensor(margins, dtype=torch.float32),
                           torch.tensor(flipped, dtype=torch.bool))
