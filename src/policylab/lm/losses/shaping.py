"""Slot 6 of the RLVR objective: data shaping between scoring and the advantage transform.

A shaper maps a `RolloutBatch` to a `RolloutBatch`. Reward shapers change rewards or masks;
group filters (marked `filters_groups`) drop whole groups, and the rollout source keeps
generating until the step's prompt count is met or its generation budget is spent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from policylab.core.registry import Registry

SHAPERS: Registry = Registry("data shaper")


def group_filter(fn: Callable) -> Callable:
    fn.filters_groups = True
    return fn


@SHAPERS.register("dynamic_sampling")
@group_filter
def dynamic_sampling(batch: Any, cfg: Any) -> Any:
    """DAPO eq. (11): keep a group only if 0 < #correct < G (all-equal groups have zero advantage)."""
    correct = batch.exact.view(-1, batch.group_size).sum(-1)
    return batch.select_groups((correct > 0) & (correct < batch.group_size))


@SHAPERS.register("overlong_penalty")
def overlong_penalty(batch: Any, cfg: Any) -> Any:
    """DAPO eq. (13), soft overlong punishment added to the reward.

    With L_max = max_new_tokens and L_cache = overlong_buffer: 0 up to L_max - L_cache tokens,
    then a linear ramp to -1 at L_max; a truncated response (no EOS within L_max) gets -1.
    """
    L_max, L_cache = cfg.max_new_tokens, cfg.overlong_buffer
    lengths = batch.response_mask.sum(-1)
    ramp = ((L_max - L_cache) - lengths) / max(L_cache, 1)
    penalty = torch.where(lengths <= L_max - L_cache, torch.zeros_like(lengths), ramp)
    penalty = torch.where(batch.truncated, torch.full_like(penalty, -1.0), penalty)
    return batch.with_rewards(batch.rewards + cfg.overlong_penalty_factor * penalty)


@SHAPERS.register("overlong_filter")
def overlong_filter(batch: Any, cfg: Any) -> Any:
    """Mask truncated responses out of the loss (they still count in the group's statistics)."""
    keep = (~batch.truncated).float()[:, None]
    return batch.with_response_mask(batch.response_mask * keep)
