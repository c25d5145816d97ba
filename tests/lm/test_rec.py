"""The REC / OPMD / AsymRE loss forms on hand-made tokens (policylab.lm.losses.rec)."""

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm import AsymREConfig, GRPOConfig, OPMDConfig, RECConfig
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.losses import RLVRObjective
from policylab.lm.losses.rec import keep_mask

RHO = torch.tensor([0.5, 0.9, 1.1, 1.5, 3.5])


@pytest.mark.parametrize("mode, positive, negative", [
    # eps = 0.2: one-side keeps A>0 tokens with rho <= 1.2 and A<0 tokens with rho >= 0.8
    ("one-side", [1, 1, 1, 0, 0], [0, 1, 1, 1, 1]),
    ("two-side", [0, 1, 1, 0, 0], [0, 1, 1, 0, 0]),
    # ring adds A>0 with rho <= 1 - 0.6 = 0.4 (none here) and A<0 with rho >= 1 + 2.0 = 3.0 (3.5)
    ("ring", [0, 1, 1, 0, 0], [0, 1, 1, 0, 1]),
    ("none", [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]),
])
def test_masks_by_hand(mode, positive, negative):
    cfg = RECConfig(rec_mask=mode)
    assert keep_mask(RHO, torch.ones(5), cfg).int().tolist() == positive
    assert keep_mask(RHO, -torch.ones(5), cfg).int().tolist() == negative


def test_one_side_keeps_every_zero_advantage_token():
    assert keep_mask(RHO, torch.zeros(5), RECConfig()).all()


def _grads(cfg, logp0, old, adv, mask):
    logp = logp0.clone().requires_grad_(True)
    loss, _ = RLVRObjective(cfg)(logp, old, adv, mask)
    loss.backward()
    return loss, logp.grad


def _random_tokens(seed=0):
    g = torch.Generator().manual_seed(seed)
    logp0 = -torch.rand(6, 4, generator=g) * 3
    old = logp0 + 0.5 * torch.randn(6, 4, generator=g)
    adv = torch.randn(6, 1, generator=g).expand(6, 4).contiguous()
    mask = (torch.rand(6, 4, generator=g) > 0.2).float()
    return logp0, old, adv, mask


def test_one_side_with_importance_weights_has_ppo_s_gradient():
    """GRPO = REC one-side + IS (the paper's reading): same gradient as the clipped surrogate."""
    logp0, old, adv, mask = _random_tokens()
    _, rec = _grads(RECConfig(rec_weight="importance_sampling"), logp0, old, adv, mask)
    _, ppo = _grads(GRPOConfig(aggregation="token-mean"), logp0, old, adv, mask)
    assert torch.allclose(rec, ppo, atol=1e-6)


def test_no_is_gradient_is_masked_reinforce():
    logp0, old, adv, mask = _random_tokens(1)
    _, grad = _grads(RECConfig(rec_mask="none"), logp0, old, adv, mask)
    assert torch.allclose(grad, -adv * mask / mask.sum(), atol=1e-7)  # d/dlogp of -mean(A log pi)


def test_opmd_adds_the_squared_log_ratio():
    logp0, old, _, mask = _random_tokens(2)
    zero = torch.zeros(6, 4)
    loss, grad = _grads(OPMDConfig(), logp0, old, zero, mask)
    delta = logp0 - old
    assert loss.item() == pytest.approx(float((0.1 * delta.square() * mask).sum() / mask.sum()), rel=1e-5)
    assert torch.allclose(grad, 0.2 * delta * mask / mask.sum(), atol=1e-6)


def test_forward_kl_regularizer_pulls_every_sampled_token_up():
    logp0, old, _, mask = _random_tokens(3)
    _, grad = _grads(RECConfig(rec_mask="none", rec_regularizer="forward-kl", rec_reg_coef=0.5), logp0, old,
                     torch.zeros(6, 4), mask)
    assert torch.allclose(grad, -0.5 * mask / mask.sum(), atol=1e-7)


def test_asymre_shifts_the_baseline():
    cfg = AsymREConfig()
    adv = ADVANTAGES.get("asymre")(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), cfg=cfg)
    assert torch.allclose(adv, torch.tensor([[0.6, -0.4], [0.1, 0.1]]))


@pytest.mark.parametrize("name", ["asymre", "red_drop"])
def test_one_response_groups_get_zero_advantage(name):
    """The rule of policylab.lm.advantages: no group baseline, no signal; AsymRE's shift does not apply."""
    adv = ADVANTAGES.get(name)(torch.tensor([[1.0], [0.0], [0.5]]), cfg=AsymREConfig(asymre_shift=-0.1))
    assert torch.equal(adv, torch.zeros(3, 1))


def test_asymre_equals_reinforce_plus_a_log_likelihood_term():
    """A = R - (mu + delta) on the sampled tokens is REINFORCE plus |delta| log pi (the paper's reading)."""
    logp0, old, _, mask = _random_tokens(4)
    rewards = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    shifted = ADVANTAGES.get("asymre")(rewards, cfg=AsymREConfig()).reshape(-1, 1).expand(6, 4)
    plain = ADVANTAGES.get("dr_grpo")(rewards).reshape(-1, 1).expand(6, 4)
    _, asym = _grads(AsymREConfig(), logp0, old, shifted, mask)
    _, reinforce = _grads(RECConfig(rec_mask="none", rec_regularizer="forward-kl", rec_reg_coef=0.1), logp0, old,
                          plain, mask)
    assert torch.allclose(asym, reinforce, atol=1e-6)


def test_advantage_weight_is_exp_a_over_temp():
    logp0, old, adv, mask = _random_tokens(5)
    _, grad = _grads(RECConfig(rec_mask="none", rec_weight="advantage", advantage_temp=2.0), logp0, old, adv, mask)
    assert torch.allclose(grad, -torch.exp(adv / 2) * adv * mask / mask.sum(), atol=1e-6)


def test_bad_fields_are_named():
    with pytest.raises(ConfigError, match="rec_mask"):
        RECConfig(rec_mask="both")
    with pytest.raises(ConfigError, match="rec_weight"):
        RECConfig(rec_weight="is")
    with pytest.raises(ConfigError, match="RECConfig"):
        GRPOConfig(loss="rec")


def test_red_drop_balances_each_group_and_recentres_on_the_kept():
    torch.manual_seed(0)
    rewards = torch.tensor([[1.0, 0, 0, 0, 0, 0],     # 1 positive, 5 negatives: 4 dropped
                            [1.0, 1, 0, 0, 0, 0],     # 2 vs 4: 2 dropped
                            [1.0, 1, 1, 0, 0, 0],     # balanced: none dropped
                            [1.0, 1, 1, 1, 1, 0],     # more positives: none dropped
                            [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])  # all equal: all positive, advantage 0
    metrics = {}
    adv = ADVANTAGES.get("red_drop")(rewards, metrics=metrics)
    kept = adv != 0
    assert kept[0].sum() == 2 and adv[0, 0] == 0.5 and (adv[0, 1:][kept[0, 1:]] == -0.5).all()
    assert kept[1].sum() == 4 and torch.equal(adv[1, :2], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(adv[2], torch.tensor([0.5, 0.5, 0.5, -0.5, -0.5, -0.5]))
    torch.testing.assert_close(adv[3], rewards[3] - rewards[3].mean())
    assert (adv[4] == 0).all()
    assert float(metrics["red/drop_frac"]) == pytest.approx(6 / 30)
    # which negatives go is random: over many draws every negative of the first group is kept sometimes
    hits = sum((ADVANTAGES.get("red_drop")(rewards[:1]) != 0)[0, 1:].int() for _ in range(200))
    assert (hits > 0).all()


def test_red_configs_pick_the_unmasked_reinforce_form():
    from policylab.lm import REDDropConfig, REDWeightConfig

    drop, weight = REDDropConfig(), REDWeightConfig()
    assert (drop.advantage, drop.rec_mask, drop.rec_weight) == ("red_drop", "none", "none")
    assert (weight.advantage, weight.rec_mask, weight.rec_weight) == ("dr_grpo", "none", "advantage")
