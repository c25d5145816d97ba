"""Held-out evaluation of a policy on tasks: greedy accuracy and unbiased pass@k."""

from __future__ import annotations

import math

import torch

from policylab.lm.generate import SamplingConfig, generate
from policylab.lm.policy import CausalPolicy
from policylab.lm.tasks import Problem, Task, TaskMix, Tokenizer, prompt_ids


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. (2021): 1 - C(n-c, k) / C(n, k), the chance that k of n samples hold a correct one."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got n = {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@torch.no_grad()
def _correct(policy: CausalPolicy, tokenizer: Tokenizer, task: Task | TaskMix, problems: list[Problem],
             sampling: SamplingConfig, repeats: int, generator: torch.Generator | None, chunk: int) -> torch.Tensor:
    """[len(problems), repeats] exact-match outcomes; truncated responses count as wrong."""
    rows = [(i, prompt_ids(tokenizer, p.prompt)) for i, p in enumerate(problems) for _ in range(repeats)]
    outcomes = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        gen = generate(policy, [ids for _, ids in part], sampling, tokenizer.eos_id, tokenizer.pad_id, generator)
        for (i, _), row, cut in zip(part, gen.responses, gen.truncated.tolist()):
            outcomes.append(0.0 if cut else task.score(problems[i], tokenizer.decode(row.tolist())).exact)
    return torch.tensor(outcomes).view(len(problems), repeats)


def evaluate_lm(policy: CausalPolicy, tokenizer: Tokenizer, task: Task | TaskMix, problems: list[Problem],
                max_new_tokens: int, ks: tuple[int, ...] = (1, 4, 16), temperature: float = 1.0,
                seed: int = 0, chunk: int = 512) -> dict[str, float]:
    """Greedy accuracy (overall and per task) and pass@k at `temperature` with max(ks) samples each."""
    was_training = policy.training
    policy.eval()
    greedy = _correct(policy, tokenizer, task, problems, SamplingConfig(max_new_tokens=max_new_tokens, greedy=True),
                      1, None, chunk)[:, 0]
    result = {"greedy_acc": float(greedy.mean())}
    by_task: dict[str, list[int]] = {}
    for i, p in enumerate(problems):
        by_task.setdefault(p.task, []).append(i)
    if len(by_task) > 1:
        for name, index in by_task.items():
            result[f"greedy_acc/{name}"] = float(greedy[index].mean())
    if ks:
        n = max(ks)
        sampled = _correct(policy, tokenizer, task, problems,
                           SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature), n,
                           torch.Generator(device=next(policy.parameters()).device).manual_seed(seed), chunk)
        counts = sampled.sum(-1).long().tolist()
        for k in ks:
            result[f"pass@{k}"] = sum(pass_at_k(n, c, k) for c in counts) / len(counts)
    policy.train(was_training)
    return result
