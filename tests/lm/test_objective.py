"""The six slots of the RLVR objective on hand-computed tensors."""

import math

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES, token_advantages
from policylab.lm.losses import AGGREGATIONS, CLIPS, LOSS_FORMS, RATIOS, SHAPERS, ObjectiveConfig, RLVRObjective, k3_kl
from policylab.lm.rollout import RolloutBatch
from policylab.lm.tasks import Problem


def adv(name, rewards):
    return ADVANTAGES.get(name)(torch.tensor(rewards, dtype=torch.float32), eps=0.0)


# -- slot 1: advantages ------------------------------------------------------------------------

def test_grpo_advantage_uses_the_unbiased_group_std():
    a = adv("grpo", [[1.0, 0.0, 0.0, 1.0]])
    # mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735
    assert torch.allclose(a, torch.tensor([[0.8660254, -0.8660254, -0.8660254, 0.8660254]]), atol=1e-6)


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "lite_ppo", "rloo"])
def test_all_equal_rewards_give_zero_advantage(name):
    a = ADVANTAGES.get(name)(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), eps=1e-6)
    assert torch.equal(a, torch.zeros(2, 3))


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "lite_ppo", "rloo"])
def test_groups_of_one_have_no_baseline_and_zero_advantage(name):
    a = ADVANTAGES.get(name)(torch.tensor([[1.0], [0.0], [1.0]]), eps=1e-6)
    assert torch.equal(a, torch.zeros(3, 1)) and torch.isfinite(a).all()


def test_dr_grpo_only_centres():
    assert torch.allclose(adv("dr_grpo", [[1.0, 0.0, 0.0, 0.0]]), torch.tensor([[0.75, -0.25, -0.25, -0.25]]))


def test_lite_ppo_divides_by_the_std_of_the_raw_batch_rewards():
    # raw rewards 1, 0, 1, 1: mean 0.75, unbiased variance 0.75 / 3 = 0.25 -> std 0.5
    a = adv("lite_ppo", [[1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(a, torch.tensor([[1.0, -1.0], [0.0, 0.0]]))


def test_rloo_subtracts_the_mean_of_the_others():
    assert torch.allclose(adv("rloo", [[1.0, 0.0, 0.0]]), torch.tensor([[1.0, -0.5, -0.5]]))


def test_sequence_advantages_broadcast_to_response_tokens_only():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = token_advantages(torch.tensor([[2.0, -1.0]]), mask)
    assert torch.equal(out, torch.tensor([[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]))


# -- slots 2-4: ratio, clip, per-token loss ----------------------------------------------------

def test_sequence_ratio_is_the_geometric_mean_over_real_tokens():
    logp = torch.tensor([[0.1, 0.3, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    s = RATIOS.get("sequence")(logp, torch.zeros_like(logp), mask)
    assert torch.allclose(s, torch.full((1, 3), math.exp(0.2)))


def test_sequence_token_ratio_has_the_sequence_value_and_a_per_token_gradient():
    logp = torch.tensor([[0.1, 0.3]], requires_grad=True)
    mask = torch.ones(1, 2)
    st = RATIOS.get("sequence_token")(logp, torch.zeros(1, 2), mask)
    assert torch.allclose(st, torch.full((1, 2), math.exp(0.2)))
    (st * torch.tensor([[1.0, 3.0]])).sum().backward()
    assert torch.allclose(logp.grad, math.exp(0.2) * torch.tensor([[1.0, 3.0]]))


def test_gspo_gradient_spreads_the_sequence_ratio_over_its_tokens():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    s = RATIOS.get("sequence")(logp, torch.tensor([[-1.2, -1.6]]), torch.ones(1, 2))
    s[0, 0].backward()  # d s / d logp_t = s / |o|
    assert torch.allclose(logp.grad, s[0, 0].detach() / 2 * torch.ones(1, 2))


class Cfg:
    eps_low, eps_high, dual_clip = 0.2, 0.28, None


@pytest.mark.parametrize("ratio,advantage,expected", [
    (1.5, 1.0, -1.28),   # positive advantage: gain capped at 1 + eps_high
    (0.5, 1.0, -0.5),    # below the band with A > 0: the unclipped (smaller) gain counts
    (0.5, -1.0, 0.8),    # negative advantage: capped at 1 - eps_low
    (1.5, -1.0, 1.5),    # above the band with A < 0: the pessimistic unclipped term
])
def test_clipped_surrogate_by_hand(ratio, advantage, expected):
    r, a = torch.tensor([ratio]), torch.tensor([advantage])
    loss = LOSS_FORMS.get("ppo")(r, CLIPS.get("clip")(r, Cfg), a, Cfg)
    assert torch.allclose(loss, torch.tensor([expected]))


def test_dual_clip_caps_negative_advantage_losses():
    class Dual(Cfg):
        dual_clip = 3.0

    r, a = torch.tensor([4.0, 4.0]), torch.tensor([-1.0, 1.0])
    loss = LOSS_FORMS.get("ppo")(r, CLIPS.get("clip")(r, Dual), a, Dual)
    assert torch.allclose(loss, torch.tensor([3.0, -1.28]))


def test_on_policy_clipped_loss_has_the_reinforce_gradient():
    """At ratio 1 (one update per rollout) PPO/GRPO's gradient is -A * grad log pi, token by token."""
    torch.manual_seed(0)
    logits = torch.randn(3, 4, requires_grad=True)
    logp = torch.log_softmax(logits, -1)[:, 0]
    a = torch.tensor([1.0, -2.0, 0.5])
    objective = RLVRObjective(ObjectiveConfig(aggregation="token-mean"))
    loss, _ = objective(logp[None], logp.detach()[None], a[None], torch.ones(1, 3))
    (g_ppo,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (g_pg,) = torch.autograd.grad(-(a * logp).mean(), logits)
    assert torch.allclose(g_ppo, g_pg, atol=1e-6)


# -- slot 5: aggregation ------------------------------------------------------------------------

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0], [7.0, 7.0, 7.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("name,expected", [
    ("token-mean", (1 + 2 + 3 + 4) / 4),
    ("seq-mean-token-mean", (6 / 3 + 4 / 1) / 2),   # the empty third row is not a sequence
    ("seq-mean-token-sum", (6 + 4) / 2),
    ("seq-mean-token-sum-norm", (6 + 4) / (3 * 10)),  # B rows x the constant 10, fixed
])
def test_aggregations_by_hand(name, expected):
    assert AGGREGATIONS.get(name)(LOSS, MASK, 10.0).item() == pytest.approx(expected)


def test_sum_norm_constant_does_not_depend_on_lengths():
    short = AGGREGATIONS.get("seq-mean-token-sum-norm")(torch.ones(2, 4), torch.tensor([[1.0, 0, 0, 0]] * 2), 8.0)
    long = AGGREGATIONS.get("seq-mean-token-sum-norm")(torch.ones(2, 4), torch.ones(2, 4), 8.0)
    assert short.item() == pytest.approx(2 / 16) and long.item() == pytest.approx(8 / 16)
    with pytest.raises(ValueError, match="positive constant"):
        AGGREGATIONS.get("seq-mean-token-sum-norm")(LOSS, MASK, None)


def test_masked_tokens_do_not_change_any_aggregation():
    for name in AGGREGATIONS:
        garbage = LOSS.clone()
        garbage[MASK == 0] = 1e6
        assert AGGREGATIONS.get(name)(garbage, MASK, 10.0) == AGGREGATIONS.get(name)(LOSS, MASK, 10.0)


def test_all_masked_batch_gives_zero_not_nan():
    for name in AGGREGATIONS:
        assert AGGREGATIONS.get(name)(LOSS, torch.zeros_like(MASK), 10.0).item() == 0.0


def test_k3_is_zero_at_the_reference_and_positive_elsewhere():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.equal(k3_kl(logp, logp), torch.zeros(3))
    ref = torch.tensor([-1.5, -1.0, -0.5])
    d = ref - logp
    assert torch.allclose(k3_kl(logp, ref), torch.exp(d) - d - 1) and (k3_kl(logp, ref)[:2] > 0).all()


def test_kl_and_entropy_terms_enter_the_loss():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    mask, zero = torch.ones(1, 2), torch.zeros(1, 2)
    entropy = torch.tensor([[0.5, 1.5]])
    base, _ = RLVRObjective(ObjectiveConfig())(logp, logp, zero, mask)
    with_kl, m = RLVRObjective(ObjectiveConfig(kl_coef=0.1))(logp, logp, zero, mask, ref_logp=ref)
    with_ent, _ = RLVRObjective(ObjectiveConfig(ent_coef=0.1))(logp, logp, zero, mask, entropy=entropy)
    assert with_kl.item() == pytest.approx(base.item() + 0.1 * k3_kl(logp, ref).mean().item())
    assert with_ent.item() == pytest.approx(base.item() - 0.1 * 1.0)
    with pytest.raises(ConfigError, match="reference"):
        RLVRObjective(ObjectiveConfig(kl_coef=0.1))(logp, logp, zero, mask)


@pytest.mark.parametrize("field,value,listed", [("advantage", "gpro", "grpo"), ("loss", "ppo2", "ppo"),
                                                ("aggregation", "mean", "token-mean"), ("ratio", "seq", "sequence")])
def test_unknown_slot_names_list_the_known_ones(field, value, listed):
    with pytest.raises(ConfigError, match=rf"ObjectiveConfig\.{field} = '{value}'.*{listed}"):
        ObjectiveConfig(**{field: value})
    with pytest.raises(ConfigError, match="known shapers: dynamic_sampling"):
        ObjectiveConfig(shaping=("dynamic",))


# -- slot 6: shaping ------------------------------------------------------------------------------

def make_batch(exact, group_size, lengths, truncated, width=12):
    B = len(exact)
    mask = torch.zeros(B, width)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1.0
    ids = torch.arange(B)[:, None].expand(B, width + 2).clone()
    exact = torch.tensor(exact, dtype=torch.float32)
    return RolloutBatch(ids, torch.ones(B, width + 2, dtype=torch.long), 2, mask, torch.zeros(B, width),
                        torch.tensor(truncated), group_size, exact.clone(), exact, exact.clone(),
                        [Problem("t", f"q{g}", "a") for g in range(B // group_size)], [str(i) for i in range(B)])


class ShapeCfg:
    max_new_tokens, overlong_buffer, overlong_penalty_factor = 12, 4, 1.0


def test_dynamic_sampling_drops_uniform_groups():
    batch = make_batch([1, 1, 0, 1, 0, 0, 1, 0], 2, [3] * 8, [False] * 8)
    kept = SHAPERS.get("dynamic_sampling")(batch, ShapeCfg)
    assert kept.num_groups == 2 and [p.prompt for p in kept.problems] == ["q1", "q3"]
    assert kept.input_ids[:, 0].tolist() == [2, 3, 6, 7] and kept.exact.tolist() == [0, 1, 1, 0]


def test_soft_overlong_penalty_by_hand():
    batch = make_batch([1, 1, 1, 0], 4, [8, 10, 12, 12], [False, False, False, True])
    shaped = SHAPERS.get("overlong_penalty")(batch, ShapeCfg)
    # L_max 12, L_cache 4: free up to 8, ramp (8 - |y|) / 4 to -1 at 12, truncated -> -1
    assert shaped.rewards.tolist() == [1.0, 0.5, 0.0, -1.0]
    assert batch.rewards.tolist() == [1.0, 1.0, 1.0, 0.0]  # shaping returns a new batch


def test_overlong_filter_masks_truncated_responses():
    batch = make_batch([0, 1], 2, [12, 3], [True, False])
    shaped = SHAPERS.get("overlong_filter")(batch, ShapeCfg)
    assert shaped.response_mask[0].sum() == 0 and shaped.response_mask[1].sum() == 3


def test_concat_repads_batches_of_different_widths():
    a = make_batch([1, 0], 2, [3, 2], [False, False], width=3)
    b = make_batch([0, 1], 2, [5, 1], [False, False], width=6)
    b.input_ids = torch.cat([torch.full((2, 1), 7), b.input_ids], 1)
    b.attention_mask = torch.cat([torch.zeros(2, 1, dtype=torch.long), b.attention_mask], 1)
    b.prompt_len = 3
    joined = RolloutBatch.concat([a, b], pad_id=0)
    assert joined.prompt_len == 3 and joined.input_ids.shape == (4, 9) and joined.response_mask.shape == (4, 6)
    assert joined.attention_mask[:2, 0].tolist() == [0, 0]  # a's prompt gained one left pad
    assert joined.response_mask.sum(-1).tolist() == [3, 2, 5, 1]
