"""Estimator diagnostics on a frozen policy: how noisy is a policy-gradient estimator?

`gradient_spread` draws minibatches of prompt groups from one fixed rollout pool, computes the
on-policy gradient of each advantage transform on each minibatch, and reports the relative
variance trace(Cov[g]) / ||E[g]||^2 and the mean cosine of the minibatch gradients to the full-pool
gradient. Both are invariant to a rescaling of the advantages, so transforms with different scales
(BNPO's density normalization, GRPO's std) compare fairly.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from policylab.lm.advantages import token_advantages
from policylab.lm.policy import CausalPolicy
from policylab.lm.rollout import RolloutBatch


def policy_gradient(policy: CausalPolicy, batch: RolloutBatch, advantage_fn: Callable, cfg=None) -> torch.Tensor:
    """Flat gradient of the on-policy surrogate -(1/N) sum_i (1/|o_i|) sum_t A_{i,t} log pi(o_{i,t})."""
    adv = advantage_fn(batch.rewards.view(-1, batch.group_size), eps=1e-6, batch=batch, policy=policy, cfg=cfg,
                       metrics={})
    adv = token_advantages(adv, batch.response_mask)
    out = policy.response_outputs(batch.input_ids, batch.attention_mask, batch.prompt_len, want_entropy=False)
    mask = batch.response_mask
    per_seq = (adv * out.logprobs * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    policy.zero_grad(set_to_none=True)
    (-per_seq.mean()).backward()
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                      for p in policy.parameters()])


def gradient_spread(policy: CausalPolicy, pool: RolloutBatch, advantage_fns: dict[str, Callable],
                    prompts: int, resamples: int, seed: int, cfg=None) -> dict[str, dict[str, float]]:
    """{name: {relative_variance, cosine_to_full}} over `resamples` minibatches of `prompts` groups."""
    if not 1 < prompts <= pool.num_groups:
        raise ValueError(f"prompts = {prompts} is not allowed: need 1 < prompts <= {pool.num_groups} (the pool)")
    rng = random.Random(seed)
    picks = [sorted(rng.sample(range(pool.num_groups), prompts)) for _ in range(resamples)]
    was_training = policy.training
    policy.eval()  # no dropout: the spread must come from the data alone
    out = {}
    for name, fn in advantage_fns.items():
        full = policy_gradient(policy, pool, fn, cfg)
        total = torch.zeros_like(full, dtype=torch.float64)
        total_sq = torch.zeros((), dtype=torch.float64)
        cosines = []
        for pick in picks:
            keep = torch.zeros(pool.num_groups, dtype=torch.bool)
            keep[pick] = True
            g = policy_gradient(policy, pool.select_groups(keep), fn, cfg).double()
            total += g
            total_sq += g.square().sum()
            cosines.append(float(torch.nn.functional.cosine_similarity(g, full.double(), dim=0)))
        mean = total / resamples
        trace_cov = (total_sq / resamples - mean.square().sum()) * resamples / (resamples - 1)
        out[name] = {"relative_variance": float(trace_cov / mean.square().sum().clamp(min=1e-30)),
                     "cosine_to_full": sum(cosines) / len(cosines)}
    policy.zero_grad(set_to_none=True)
    policy.train(was_training)
    return out


def rollout_pool(policy: CausalPolicy, tokenizer, task, cfg, prompts: int, seed: int) -> RolloutBatch:
    """One scored batch of `prompts` train questions x cfg.group_size responses from `policy`."""
    from dataclasses import replace
    from types import SimpleNamespace

    from policylab.lm.rollout import RolloutSource

    source = RolloutSource(task, tokenizer, replace(cfg, prompts_per_step=prompts, staleness=0, shaping=()), seed)
    return source.next_batch(SimpleNamespace(policy=policy))
