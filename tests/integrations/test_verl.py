"""policylab's objectives through verl's own registries (verl 0.9, CPU): the estimator and loss verl looks up
equal policylab's native advantage transform and objective on identical tensors, and equal verl's own GRPO
estimator and vanilla loss where the methods coincide."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.integrations.objectives import SINGLE_TURN, objective_config
from policylab.lm.advantages import ADVANTAGES, token_advantages
from policylab.lm.losses.objective import RLVRObjective

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
pv = pytest.importorskip("policylab.integrations.verl")

P, G, R = 4, 4, 6
ESTIMATED = [n for n in SINGLE_TURN if n not in pv.NO_ESTIMATOR]
LOSSES = [n for n in SINGLE_TURN if n not in pv.NO_LOSS]


@pytest.fixture(scope="module", autouse=True)
def registered():
    return pv.register()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def shuffled_batch(seed: int = 0, shuffle: bool = True):
    """P prompts x G responses in [0, 1], rows shuffled as verl may hold them, each labelled by its prompt's uid."""
    g = torch.Generator().manual_seed(seed)
    rewards = 0.9 * torch.randint(0, 2, (P, G), generator=g).float() + 0.1 * torch.rand(P, G, generator=g)
    rewards[0] = 1.0  # one all-equal group (zero advantages, the degenerate case)
    perm = torch.randperm(P * G, generator=g) if shuffle else torch.arange(P * G)
    uid = np.array([f"prompt-{i}" for i in range(P) for _ in range(G)], dtype=object)[perm.numpy()]
    lengths = torch.randint(1, R + 1, (P * G,), generator=g)
    mask = (torch.arange(R) < lengths[:, None]).float()
    token_rewards = torch.zeros(P * G, R)
    token_rewards[torch.arange(P * G), lengths - 1] = rewards.reshape(-1)[perm]  # the score on the last token
    return rewards, perm, uid, mask, token_rewards


@pytest.mark.parametrize("name", ESTIMATED)
def test_the_estimator_verl_looks_up_is_policylab_native(name):
    # red_drop's random drops follow the group order, so its rows stay in prompt order here
    rewards, perm, uid, mask, token_rewards = shuffled_batch(shuffle=name != "red_drop")
    cfg = objective_config(name)
    torch.manual_seed(5)  # red_drop draws which negatives to drop
    native = ADVANTAGES.get(cfg.advantage)(rewards, eps=cfg.adv_eps, cfg=cfg, metrics={})
    native_rows = token_advantages(native, torch.ones(P * G, R))[perm] * mask  # [B, R] in verl's row order
    torch.manual_seed(5)
    adv, returns = core_algos.get_adv_estimator_fn(f"policylab_{name}")(token_level_rewards=token_rewards,
                                                                          response_mask=mask, index=uid, config=None)
    assert adv.shape == (P * G, R) and returns is adv
    assert float((adv - native_rows).abs().max()) <= 1e-6, name


def test_policylab_grpo_equals_verls_grpo_on_groups_of_two_or_more():
    _, _, uid, mask, token_rewards = shuffled_batch(1)
    ours, _ = core_algos.get_adv_estimator_fn("policylab_grpo")(token_level_rewards=token_rewards, response_mask=mask,
                                                                 index=uid)
    theirs, _ = core_algos.get_adv_estimator_fn("grpo")(token_level_rewards=token_rewards, response_mask=mask,
                                                         index=uid, epsilon=1e-6)
    assert float((ours - theirs).abs().max()) <= 1e-6


def loss_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    _, _, _, mask, _ = shuffled_batch(seed)
    old = -torch.rand(P * G, R, generator=g) * 2
    new = (old + 0.3 * torch.randn(P * G, R, generator=g)).requires_grad_(True)  # ratios in about [0.4, 2.5]
    adv = torch.randn(P * G, generator=g)
    return old, new, adv, mask


@pytest.mark.parametrize("name", LOSSES)
def test_the_loss_verl_looks_up_is_policylab_native_in_value_and_gradient(name):
    old, new, adv, mask = loss_batch()
    cfg = objective_config(name)
    native, _ = RLVRObjective(cfg, default_constant=float(R))(new, old, adv[:, None] * mask, mask)
    (native_grad,) = torch.autograd.grad(native, new)
    loss, metrics = core_algos.get_policy_loss_fn(f"policylab_{name}")(
        old_log_prob=old, log_prob=new, advantages=adv[:, None] * mask, response_mask=mask,
        loss_agg_mode="token-mean", config=None, rollout_is_weights=None)
    (grad,) = torch.autograd.grad(loss, new)
    assert rel_err(loss.detach(), native.detach()) <= 1e-6 and rel_err(grad, native_grad) <= 1e-6, name
    assert all(isinstance(v, float) for v in metrics.values()) and "actor/pg_clipfrac" in metrics


@pytest.mark.parametrize("name,mode", [("grpo", "seq-mean-token-mean"), ("dapo", "token-mean")])
def test_policylab_grpo_and_dapo_losses_equal_verls_vanilla_loss(name, mode):
    """Where the methods coincide (the clipped surrogate; no dual clip binds at these ratios)."""
    from omegaconf import OmegaConf

    old, new, adv, mask = loss_batch(2)
    cfg = objective_config(name)
    verl_cfg = OmegaConf.create({"clip_ratio": cfg.eps_low, "clip_ratio_low": cfg.eps_low,
                                 "clip_ratio_high": cfg.eps_high, "clip_ratio_c": 1e9, "global_batch_info": {}})
    ours, _ = core_algos.get_policy_loss_fn(f"policylab_{name}")(old, new, adv[:, None] * mask, mask, mode, None)
    theirs, _ = core_algos.get_policy_loss_fn("vanilla")(old, new, adv[:, None] * mask, mask, mode, verl_cfg)
    (g_ours,) = torch.autograd.grad(ours, new)
    (g_theirs,) = torch.autograd.grad(theirs, new)
    assert rel_err(ours.detach(), theirs.detach()) <= 1e-6 and rel_err(g_ours, g_theirs) <= 1e-6


def test_what_verl_cannot_take_is_not_registered_and_bad_input_is_one_line():
    assert "policylab_thr" not in core_algos.ADV_ESTIMATOR_REGISTRY
    assert "policylab_nft" not in core_algos.POLICY_LOSS_REGISTRY
    assert "policylab_nft" in core_algos.ADV_ESTIMATOR_REGISTRY
    assert pv.register() == pv.register()  # registering again replaces, never raises
    with pytest.raises(ConfigError, match="overrides has 'grpoo': known objectives"):
        pv.register({"grpoo": {}})
    _, _, uid, mask, token_rewards = shuffled_batch()
    with pytest.raises(ConfigError, match=r"groups have sizes \[1, 15\]"):
        core_algos.get_adv_estimator_fn("policylab_grpo")(token_level_rewards=token_rewards, response_mask=mask,
                                                          index=np.array(["a"] * 15 + ["b"], dtype=object))
    with pytest.raises(ConfigError, match="needs verl's prompt index"):
        core_algos.get_adv_estimator_fn("policylab_grpo")(token_level_rewards=token_rewards, response_mask=mask)


def test_overrides_reach_the_registered_objective():
    old, new, adv, mask = loss_batch()
    pv.register({"grpo": {"eps_high": 0.01, "eps_low": 0.01}})
    tight, _ = core_algos.get_policy_loss_fn("policylab_grpo")(old, new, adv[:, None] * mask, mask)
    pv.register()
    default, _ = core_algos.get_policy_loss_fn("policylab_grpo")(old, new, adv[:, None] * mask, mask)
    assert not torch.isclose(tight, default)


@pytest.mark.parametrize("name", ["grpo", "bnpo", "asymre"])
def test_verls_own_compute_advantage_call_site_reaches_the_policylab_estimator(name):
    """Through `verl.trainer.ppo.ray_trainer.compute_advantage` on a DataProto with verl's uid column, the
    keyword set verl's trainer really passes (token_level_rewards, response_mask, config, index)."""
    ray_trainer = pytest.importorskip("verl.trainer.ppo.ray_trainer")
    from verl import DataProto

    rewards, perm, uid, mask, token_rewards = shuffled_batch(3)
    data = DataProto.from_dict(tensors={"token_level_rewards": token_rewards, "response_mask": mask},
                               non_tensors={"uid": uid})
    out = ray_trainer.compute_advantage(data, f"policylab_{name}", config=None)
    direct, _ = core_algos.get_adv_estimator_fn(f"policylab_{name}")(token_level_rewards=token_rewards,
                                                                       response_mask=mask, index=uid)
    assert torch.equal(out.batch["advantages"], direct) and torch.equal(out.batch["returns"], direct)
