"""policylab's objectives in verl (0.9.x): advantage estimators and policy losses in verl's own registries.

    import policylab.integrations.verl as pv
    pv.register()   # in the process that builds verl's trainer (its driver and its actor workers)
    # then, in verl's config:
    #   algorithm.adv_estimator=policylab_bnpo  actor_rollout_ref.actor.policy_loss.loss_mode=policylab_bapo

`register()` adds, for each single-turn objective `<id>` (`objectives.SINGLE_TURN`), an estimator
`policylab_<id>` (`verl.trainer.ppo.core_algos.register_adv_est`) and a policy loss `policylab_<id>`
(`register_policy_loss`), with the signatures verl calls. Both run policylab's own code
(`integrations.objectives`): the estimator groups rows by verl's `index` (the prompt uid), applies the
objective's advantage transform to the summed token rewards and broadcasts it over `response_mask`; the
loss applies the objective's ratio, clip, loss form and aggregation with the method's defaults
(`overrides` changes them per objective).

What differs from verl's built-ins, on purpose: a group of one response gets advantage 0 (policylab's rule;
verl's GRPO returns the raw score), and the loss aggregates as the method does (its `aggregation` slot), not
by verl's `loss_agg_mode`; with data parallelism each rank's loss is its own minibatch's aggregate (verl's
global token counts are not read). Not registered, and why: `thr` (its advantage needs the policy's per-token
influence scores, which an estimator is not given), `nft` and `rft` as losses (they read each response's
correctness, which a verl policy loss is not given; their estimators are registered). DAPO's dynamic sampling
and overlong penalty are verl's own options (`algorithm.filter_groups`, `reward_model.overlong_buffer`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from policylab.core.errors import ConfigError
from policylab.integrations.objectives import SINGLE_TURN, group_advantages, objective_config, objective_loss

PREFIX = "policylab_"
NO_ESTIMATOR = {"thr": "its advantage needs the policy's per-token influence scores"}
NO_LOSS = {"thr": NO_ESTIMATOR["thr"], "nft": "its loss reads each response's correctness",
           "rft": "its loss reads each response's correctness"}


def _core_algos() -> Any:
    try:
        from verl.trainer.ppo import core_algos
    except ImportError as err:
        raise ConfigError(f"policylab.integrations.verl needs verl 0.9 (pip install verl==0.9.1 --no-deps and its "
                          f"import-time packages; `make install` does this): {err}") from None
    return core_algos


def make_estimator(name: str, overrides: dict[str, Any] | None = None):
    """verl's estimator signature -> (advantages [B, R], returns [B, R]) for objective `name`."""
    cfg = objective_config(name, overrides)

    def estimator(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: np.ndarray | None = None,
                  epsilon: float | None = None, config: Any = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if index is None:
            raise ConfigError(f"{PREFIX}{name} needs verl's prompt index (uid) to group responses")
        scores = token_level_rewards.sum(-1)
        with torch.no_grad():
            adv = group_advantages(cfg, scores, list(index)).to(token_level_rewards.device)
        adv = adv.reshape(-1, 1) * response_mask if adv.dim() == 1 else adv * response_mask
        adv = adv.to(token_level_rewards.dtype)
        return adv, adv

    estimator.__name__ = f"{PREFIX}{name}_advantage"
    return estimator


def make_policy_loss(name: str, overrides: dict[str, Any] | None = None):
    """verl's policy-loss signature -> (loss, metrics) for objective `name`."""
    cfg = objective_config(name, overrides)

    def policy_loss(old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor,
                    response_mask: torch.Tensor, loss_agg_mode: str = "token-mean", config: Any = None,
                    rollout_is_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        loss, metrics = objective_loss(cfg, log_prob, old_log_prob, advantages, response_mask)
        if rollout_is_weights is not None:  # verl's rollout-correction weights: refused, not silently dropped
            raise ConfigError(f"{PREFIX}{name} does not take verl's rollout_is_weights; turn rollout correction off")
        out = {f"actor/{k}": float(v) for k, v in metrics.items() if k != "loss/policy"}
        out["actor/pg_clipfrac"] = out.pop("actor/clip_frac", 0.0)
        return loss, out

    policy_loss.__name__ = f"{PREFIX}{name}_loss"
    return policy_loss


def register(overrides: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Register every objective's estimator and loss in verl (again: replaced); returns the names added.
    `overrides`: objective id -> config fields, e.g. {"bapo": {"bapo_target": 0.4}}."""
    core = _core_algos()
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(SINGLE_TURN))
    if unknown:
        raise ConfigError(f"overrides has {unknown[0]!r}: known objectives: {', '.join(SINGLE_TURN)}")
    added = []
    for name in SINGLE_TURN:
        key = f"{PREFIX}{name}"
        if name not in NO_ESTIMATOR:
            core.ADV_ESTIMATOR_REGISTRY.pop(key, None)  # re-registering replaces (verl refuses a changed function)
            core.register_adv_est(key)(make_estimator(name, overrides.get(name)))
            added.append(f"adv_estimator={key}")
        if name not in NO_LOSS:
            core.register_policy_loss(key)(make_policy_loss(name, overrides.get(name)))
            added.append(f"loss_mode={key}")
    return added
