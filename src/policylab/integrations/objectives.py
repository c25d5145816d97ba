"""The engine-free half of every integration: a registered LM objective by name, its advantages on rewards
grouped however the engine groups them, and its loss on the engine's per-token tensors.

Engines hand over rows in their own order with a group label per row (verl's `uid` index, TRL's prompt
repeats); policylab's advantage transforms take a [P, G] grid (`lm.advantages`). `group_advantages` builds
the grid, applies the transform and puts each advantage back on its row, so the math is policylab's own
code, not a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from policylab.core.config import from_dict, validate
from policylab.core.errors import ConfigError
from policylab.core.registry import ALGORITHMS
from policylab.lm import SINGLE_TURN as SINGLE_TURN_OBJECTIVES
from policylab.lm.advantages import ADVANTAGES, token_advantages
from policylab.lm.losses.objective import RLVRObjective

SINGLE_TURN = tuple(SINGLE_TURN_OBJECTIVES)
"""The single-turn RLVR objectives (`policylab.lm`); multi-turn and preference methods are not losses alone."""


def objective_config(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The validated config of objective `name` (its method's defaults), with `overrides` (field -> value)."""
    if name not in SINGLE_TURN:
        raise ConfigError(f"objective = {name!r} is not allowed: known single-turn objectives: "
                          f"{', '.join(SINGLE_TURN)}")
    return validate(from_dict(ALGORITHMS.get(name).config, dict(overrides or {}), source=f"objective {name}"))


def group_grid(groups: Sequence[Any]) -> torch.Tensor:
    """[P, G] row indices: row r of the engine's batch sits at the cell of its group (first appearance order)
    and its rank within the group. Every group must have the same size, as policylab's transforms assume."""
    order: dict[Any, list[int]] = {}
    for row, label in enumerate(groups):
        order.setdefault(label, []).append(row)
    sizes = {len(rows) for rows in order.values()}
    if len(sizes) != 1:
        raise ConfigError(f"groups have sizes {sorted(sizes)}: policylab's advantage transforms need one group size "
                          "(n responses per prompt)")
    return torch.tensor(list(order.values()), dtype=torch.long)


def group_advantages(cfg: Any, scores: torch.Tensor, groups: Sequence[Any],
                     metrics: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Advantages [B] (or [B, R] for a token-level transform) of rows with outcome `scores` [B], each row's
    group given by `groups` [B]; computed by the objective's own transform (slot 1)."""
    grid = group_grid(groups)
    rewards = scores.detach().float()[grid]  # [P, G]
    transform = ADVANTAGES.get(cfg.advantage)
    if cfg.advantage == "thr":
        raise ConfigError("objective 'thr' is not available here: its advantage reads the policy's per-token "
                          "influence scores, which an engine's advantage hook does not pass")
    adv = transform(rewards, eps=cfg.adv_eps, batch=None, policy=None, cfg=cfg,
                    metrics=metrics if metrics is not None else {})
    if adv.shape == grid.shape:  # sequence advantages [P, G]
        out = torch.empty(len(scores), dtype=adv.dtype)
        out[grid.reshape(-1)] = adv.reshape(-1)
    else:  # token advantages [P * G, R], rows in grid order
        out = torch.empty(len(scores), adv.shape[-1], dtype=adv.dtype)
        out[grid.reshape(-1)] = adv
    return out


def row_facts(scores: torch.Tensor, groups: Sequence[Any]) -> dict[str, torch.Tensor]:
    """The per-response facts some loss slots read (NFT's): correct = score > 0 (policylab's own runs use exact
    match; an engine passes its reward), success_rate = the group's mean correctness."""
    correct = (scores.detach() > 0).float()
    grid = group_grid(groups)
    success = torch.empty_like(correct)
    success[grid.reshape(-1)] = correct[grid].mean(1, keepdim=True).expand_as(grid).reshape(-1)
    return {"correct": correct, "success_rate": success}


def objective_loss(cfg: Any, logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                   mask: torch.Tensor, rows: dict[str, torch.Tensor] | None = None,
                   ref_logp: torch.Tensor | None = None, max_length: int | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective's loss (slots 2-5 and its KL) on [B, R] tensors; sequence advantages are broadcast over
    the mask. seq-mean-token-sum-norm's length constant (Dr. GRPO's L_max) is the config's `agg_constant`,
    else `max_length` (the engine's maximum response length), else the width R."""
    mask = mask.to(logp.dtype)
    adv = token_advantages(advantages.reshape(-1, 1) if advantages.dim() == 1 else advantages, mask)
    objective = RLVRObjective(cfg, default_constant=float(max_length or mask.shape[1]))
    return objective(logp, old_logp, adv, mask, ref_logp, None, rows)
