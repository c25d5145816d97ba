"""IGPO: answer probabilities P_t, turn rewards, joint/separate normalization, turn discounting, broadcast."""

from __future__ import annotations

import math

import pytest
import torch
from episodes import random_policy, search_episodes

from policylab.core.registry import ALGORITHMS
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.multiturn.igpo import (
    IGPOConfig,
    answer_log_probabilities,
    broadcast_to_turn_tokens,
    discounted_turn_advantages,
    igpo_advantage,
    normalized_turn_rewards,
    turn_rewards,
)
from policylab.lm.trainer import RLVR


def search_batch(G: int = 4, prompts: int = 2, seed: int = 0):
    policy = random_policy(seed, block_size=64)
    return policy, search_episodes(policy, prompts, G, max_turns=4, seed=seed)


def pipeline(log_p, turns, outcome, G, mode="joint", gamma=1.0, kind="prob_diff"):
    r, valid, is_gain = turn_rewards(log_p, turns, outcome, kind)
    return discounted_turn_advantages(normalized_turn_rewards(r, valid, is_gain, G, mode), valid, gamma)


def zscore(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / (std + 1e-6) for v in values]


# one group of G = 2: row 0 plays 2 turns (P_0 = 0.1, P_1 = 0.3, then answers right), row 1 answers wrong at once
LOG_P = torch.tensor([[math.log(0.1), math.log(0.3)], [math.log(0.2), float("nan")]])
TURNS = torch.tensor([2, 1])
OUTCOME = torch.tensor([1.0, 0.0])


def test_turn_rewards_gain_then_outcome():
    r, valid, is_gain = turn_rewards(LOG_P, TURNS, OUTCOME)
    assert torch.allclose(r, torch.tensor([[0.2, 1.0], [0.0, 0.0]]))
    assert valid.tolist() == [[True, True], [True, False]] and is_gain.tolist() == [[True, False], [False, False]]
    r_log, _, _ = turn_rewards(LOG_P, TURNS, OUTCOME, "log_prob_diff")
    assert r_log[0, 0].item() == pytest.approx(math.log(3.0))


def test_joint_normalization_and_gamma_one_by_hand():
    z = zscore([0.2, 1.0, 0.0])  # every turn reward of the group in one z-score
    adv = pipeline(LOG_P, TURNS, OUTCOME, G=2)
    expected = torch.tensor([[z[0] + z[1], z[1]], [z[2], 0.0]])
    assert torch.allclose(adv, expected, atol=1e-5)


def test_separate_normalization_and_discount_by_hand():
    # gains {0.2} alone -> 0; outcomes {1, 0} -> +-1; gamma = 0.5 carries half the outcome back to turn 1
    adv = pipeline(LOG_P, TURNS, OUTCOME, G=2, mode="separate", gamma=0.5)
    assert torch.allclose(adv, torch.tensor([[0.5, 1.0], [-1.0, 0.0]]), atol=1e-5)
    adv_joint = pipeline(LOG_P, TURNS, OUTCOME, G=2, mode="joint", gamma=0.5)
    z = zscore([0.2, 1.0, 0.0])
    assert adv_joint[0, 0].item() == pytest.approx(z[0] + 0.5 * z[1], abs=1e-5)


def test_discounting_three_turns_by_hand():
    r_norm = torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 0.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    assert discounted_turn_advantages(r_norm, valid, 1.0).tolist() == [[7.0, 6.0, 4.0], [3.0, 2.0, 0.0]]
    assert discounted_turn_advantages(r_norm, valid, 0.5).tolist() == [[3.0, 4.0, 4.0], [2.0, 2.0, 0.0]]


def test_all_equal_rewards_give_zero_advantage():
    log_p = torch.log(torch.tensor([[0.3, 0.3], [0.3, 0.3], [0.5, 0.5], [0.5, 0.5]]))
    turns = torch.tensor([2, 2, 2, 2])
    for mode in ("joint", "separate"):
        adv = pipeline(log_p, turns, torch.zeros(4), G=2, mode=mode)
        assert adv.abs().max().item() == 0.0


def test_equal_outcomes_with_different_gains_are_not_collapsed():
    # every episode fails (GRPO would give all zeros), but one query raised P and the other did not
    log_p = torch.log(torch.tensor([[0.1, 0.4], [0.1, 0.1]]))
    adv = pipeline(log_p, torch.tensor([2, 2]), torch.zeros(2), G=2)
    assert adv[0, 0] > 0 > adv[1, 0]
    separate = pipeline(log_p, torch.tensor([2, 2]), torch.zeros(2), G=2, mode="separate")
    assert separate[0, 0] > 0 > separate[1, 0] and separate[:, 1].abs().max() == 0


def test_single_turn_episodes_reduce_to_grpo_on_outcomes():
    outcome = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    log_p = torch.randn(6, 3)
    adv = pipeline(log_p, torch.ones(6, dtype=torch.long), outcome, G=3)
    z = zscore([1.0, 0.0, 0.0]) + zscore([1.0, 0.0, 0.0])
    assert torch.allclose(adv[:, 0], torch.tensor(z), atol=1e-5) and adv[:, 1:].abs().max() == 0


def test_missing_turns_are_ignored():
    log_p = LOG_P.clone()
    base = pipeline(log_p, TURNS, OUTCOME, G=2)
    log_p[1, 1] = 5.0  # a value where row 1 played no turn must change nothing
    assert torch.allclose(pipeline(log_p, TURNS, OUTCOME, G=2), base)
    assert base[1, 1] == 0


def test_broadcast_only_to_the_agent_tokens_of_their_turn():
    turn_adv = torch.tensor([[1.5, -2.0]])
    turn_of_token = torch.tensor([[0, 0, -1, -1, 1, 1, -1]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]])
    out = broadcast_to_turn_tokens(turn_adv, turn_of_token, mask)
    assert out.tolist() == [[1.5, 1.5, 0.0, 0.0, -2.0, -2.0, 0.0]]


def test_answer_probability_matches_a_direct_forward():
    policy, batch = search_batch()
    assert batch.turns.max() >= 3  # several contexts per row are probed
    log_p = answer_log_probabilities(policy, batch, chunk=5)  # chunks smaller than the batch
    P, G = batch.prompt_len, batch.group_size
    checked = 0
    for i in range(batch.input_ids.shape[0]):
        prompt = batch.input_ids[i, :P][batch.attention_mask[i, :P] > 0].tolist()
        probe = batch.answer_probes[i // G]
        for t in range(batch.max_turns):
            if t >= batch.turns[i]:
                assert math.isnan(log_p[i, t])
                continue
            end = int(batch.turn_end[i, t - 1]) if t > 0 else 0
            seq = torch.tensor([prompt + batch.input_ids[i, P:P + end].tolist() + probe])
            with torch.no_grad():
                logits = policy.step(seq, torch.ones_like(seq), torch.arange(seq.shape[1]).unsqueeze(0)).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            start = seq.shape[1] - len(probe)
            direct = sum(logp[start - 1 + j, tok].item() for j, tok in enumerate(probe)) / len(probe)
            assert log_p[i, t].item() == pytest.approx(direct, abs=1e-4)
            checked += 1
    assert checked > batch.input_ids.shape[0]


def test_igpo_advantage_on_episodes_is_per_turn_and_masked():
    policy, batch = search_batch()
    metrics: dict = {}
    cfg = IGPOConfig(group_size=batch.group_size)
    adv = igpo_advantage(batch.rewards.view(-1, batch.group_size), batch=batch, policy=policy, cfg=cfg,
                         metrics=metrics)
    assert adv.shape == batch.response_mask.shape
    assert (adv[batch.response_mask == 0] == 0).all()
    assert (adv[batch.turn_of_token < 0] == 0).all()
    for i in range(adv.shape[0]):
        for t in range(int(batch.turns[i])):
            values = adv[i][(batch.turn_of_token[i] == t) & (batch.response_mask[i] > 0)]
            assert values.numel() > 0 and torch.allclose(values, values[0].expand_as(values))
    assert adv.abs().sum() > 0  # random episodes all fail, yet the information gains give a signal
    assert metrics["igpo/equal_outcome_group_frac"].item() == 1.0
    assert metrics["igpo/zero_adv_group_frac"].item() == 0.0


def test_registered_and_trains_on_the_engine():
    assert "igpo" in ADVANTAGES and "igpo" in ALGORITHMS
    cfg = IGPOConfig()
    assert (cfg.advantage, cfg.env, cfg.base_model, cfg.ig_gamma, cfg.norm_mode) == (
        "igpo", "search", "tiny-search", 1.0, "joint")
    policy, batch = search_batch()
    before = [p.detach().clone() for p in policy.parameters()]
    metrics = RLVR(policy, IGPOConfig(group_size=batch.group_size, minibatches=1, lr=1e-3)).update(batch)
    assert "igpo/zero_adv_group_frac" in metrics and metrics["zero_adv_group_frac"].item() == 0.0
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters()))
