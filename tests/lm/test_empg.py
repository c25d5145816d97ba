"""EMPG: step entropies, batch min-max normalization, the self-calibrating scale, the next-step bonus, the final
re-centring, and the broadcast to each turn's agent tokens."""

from __future__ import annotations

import math

import pytest
import torch
from episodes import random_policy, search_episodes

from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.multiturn import MultiTurnConfig
from policylab.lm.multiturn.empg import (
    EMPGConfig,
    empg_advantage,
    modulated_advantages,
    step_entropies,
    token_advantages_from_steps,
    turn_token_mask,
)
from policylab.lm.trainer import RLVR


def search_batch(policy, n_groups=4, G=2, max_turns=4, seed=0, temperature=1.0):
    return search_episodes(policy, n_groups, G, max_turns, seed, temperature)


# -- the modulated advantage on hand cases ------------------------------------------------------------

def test_min_max_normalization_and_self_calibrating_scale_hand_case():
    H = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    valid = torch.tensor([[True, True], [True, False]])
    A = torch.tensor([1.0, -1.0])
    out, stats = modulated_advantages(H, valid, A, k=1.0, zeta=0.0)
    raw = torch.tensor([1.0, math.exp(-1.0), math.exp(-0.5)])  # Hhat = 0, 1, 0.5 over the valid steps
    g = raw / raw.mean()
    expected = torch.tensor([[g[0] * 1, g[1] * 1], [g[2] * -1, 0.0]])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    assert float(stats["empg/g_max"]) == pytest.approx(float(g[0]), abs=1e-6)
    # g has batch mean 1 over the valid steps, with a sharper k too
    g3, _ = modulated_advantages(H, valid, torch.ones(2), k=3.0, zeta=0.0, bonus=False)
    assert float(g3[valid].mean()) == pytest.approx(1.0, abs=1e-6)


def test_bonus_uses_the_next_step_and_the_last_step_gets_none():
    H = torch.tensor([[0.0, 2.0, 1.0, 9.0]])
    valid = torch.tensor([[True, True, True, False]])
    out, _ = modulated_advantages(H, valid, torch.zeros(1), k=1.0, k_future=1.0, zeta=0.1)
    # Hhat = 0, 1, 0.5 on the three played steps; f(Hhat_{k+1}) for k = 0, 1; the last played step has no k+1
    expected = torch.tensor([[0.1 * math.exp(-1.0), 0.1 * math.exp(-0.5), 0.0, 0.0]])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    out2, _ = modulated_advantages(H, valid, torch.zeros(1), k_future=2.0, zeta=0.3)
    torch.testing.assert_close(out2[0, :2], 0.3 * torch.exp(-2.0 * torch.tensor([1.0, 0.5])), atol=1e-6, rtol=1e-6)


def test_equal_entropies_give_unit_scale_without_division_by_zero():
    H = torch.full((2, 3), 0.7)
    valid = torch.tensor([[True, True, True], [True, True, False]])
    A = torch.tensor([2.0, -1.0])
    out, _ = modulated_advantages(H, valid, A, zeta=0.1)
    assert torch.isfinite(out).all()
    # g = 1 and f = exp(0) = 1: A_i + zeta before the last step, A_i on it
    torch.testing.assert_close(out, torch.tensor([[2.1, 2.1, 2.0], [-0.9, -1.0, 0.0]]), atol=1e-6, rtol=1e-6)


def test_single_step_episodes_get_no_bonus():
    H = torch.tensor([[0.2, 0.0], [0.9, 0.0], [0.5, 0.0]])
    valid = torch.tensor([[True, False], [True, False], [True, False]])
    A = torch.tensor([1.0, 1.0, -2.0])
    with_bonus, _ = modulated_advantages(H, valid, A, zeta=0.5)
    without, _ = modulated_advantages(H, valid, A, zeta=0.0)
    torch.testing.assert_close(with_bonus, without)
    assert with_bonus[0, 0] > with_bonus[1, 0] > 0  # the confident step is amplified


def test_unplayed_steps_are_left_out_of_the_batch_statistics():
    H = torch.tensor([[0.1, 0.4], [0.3, 0.0]])
    valid = torch.tensor([[True, True], [True, False]])
    A = torch.tensor([1.0, -1.0])
    base, _ = modulated_advantages(H, valid, A)
    H_outlier = H.clone()
    H_outlier[1, 1] = 100.0  # an unplayed turn with an absurd entropy must change nothing
    outlier, _ = modulated_advantages(H_outlier, valid, A)
    torch.testing.assert_close(base, outlier)
    assert outlier[1, 1] == 0.0
    none, stats = modulated_advantages(H, torch.zeros_like(valid), A)
    assert (none == 0).all() and stats == {}


def test_ablation_switches():
    H = torch.tensor([[0.0, 1.0, 0.5]])
    valid = torch.ones_like(H, dtype=torch.bool)
    A = torch.tensor([1.0])
    f_only, _ = modulated_advantages(H, valid, A, zeta=0.1, scale=False)
    torch.testing.assert_close(f_only, torch.tensor([[1 + 0.1 * math.exp(-1.0), 1 + 0.1 * math.exp(-0.5), 1.0]]))
    g_only, _ = modulated_advantages(H, valid, A, zeta=0.1, bonus=False)
    g_zero_zeta, _ = modulated_advantages(H, valid, A, zeta=0.0)
    torch.testing.assert_close(g_only, g_zero_zeta)
    assert not torch.allclose(g_only, f_only)


# -- broadcast and final re-centring --------------------------------------------------------------------

def test_broadcast_and_token_level_centring_hand_case():
    # one row: turn 0 = 2 agent tokens, 1 observation token, turn 1 = 1 agent token, 1 padding token
    turn_of_token = torch.tensor([[0, 0, -1, 1, -1]])
    response_mask = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0]])
    in_turn = turn_token_mask(turn_of_token, response_mask, 2)
    tokens = token_advantages_from_steps(torch.tensor([[1.0, 4.0]]), in_turn, center="token")
    # before centring 1, 1, -, 4, -; mean over agent tokens is 2
    torch.testing.assert_close(tokens, torch.tensor([[-1.0, -1.0, 0.0, 2.0, 0.0]]))


def test_step_level_centring_is_the_default_and_differs_from_token_level_on_unequal_steps():
    # row 0: step 0 has 3 agent tokens, then an observation token, step 1 has 1 agent token;
    # row 1: step 0 has 1 agent token, step 1 was never played (its 0 takes no part in the mean)
    turn_of_token = torch.tensor([[0, 0, 0, -1, 1], [0, -1, -1, -1, -1]])
    response_mask = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    in_turn = turn_token_mask(turn_of_token, response_mask, 2)
    step_adv = torch.tensor([[1.0, 5.0], [3.0, 0.0]])
    # steps 1, 5, 3: step mean 3;  tokens 1, 1, 1, 5, 3: token mean 11 / 5 = 2.2
    by_step = torch.tensor([[-2.0, -2.0, -2.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    by_token = torch.tensor([[-1.2, -1.2, -1.2, 0.0, 2.8], [0.8, 0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(token_advantages_from_steps(step_adv, in_turn), by_step)
    torch.testing.assert_close(token_advantages_from_steps(step_adv, in_turn, center="step"), by_step)
    torch.testing.assert_close(token_advantages_from_steps(step_adv, in_turn, center="token"), by_token)
    assert EMPGConfig().empg_center == "step"
    with pytest.raises(ConfigError, match="center"):
        token_advantages_from_steps(step_adv, in_turn, center="sequence")


def test_the_config_chooses_the_centring_of_the_registered_transform():
    policy = random_policy()
    batch = search_batch(policy)
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    in_turn = turn_token_mask(batch.turn_of_token, batch.response_mask, batch.max_turns)
    counts = in_turn.sum(1)[in_turn.any(1)]
    assert counts.min() < counts.max()  # steps of unequal token counts, where the two forms differ
    by_step = empg_advantage(rewards, batch=batch, policy=policy, cfg=EMPGConfig(minibatches=1), metrics={})
    by_token = empg_advantage(rewards, batch=batch, policy=policy, cfg=EMPGConfig(minibatches=1, empg_center="token"),
                              metrics={})
    agent = batch.response_mask > 0
    assert float(by_token[agent].mean()) == pytest.approx(0.0, abs=1e-5)
    assert abs(float(by_step[agent].mean())) > 1e-4
    # the two differ by one constant on every agent token
    offset = by_step[agent] - by_token[agent]
    torch.testing.assert_close(offset, offset[:1].expand_as(offset))


def test_broadcast_reaches_only_the_agent_tokens_of_the_right_turn():
    batch = search_batch(random_policy())
    T = batch.max_turns
    step_adv = torch.arange(batch.input_ids.shape[0] * T, dtype=torch.float).view(-1, T) * 10 + 1
    in_turn = turn_token_mask(batch.turn_of_token, batch.response_mask, T)
    tokens = token_advantages_from_steps(step_adv, in_turn)
    agent = batch.response_mask > 0
    assert (batch.turns > 1).any()  # several turns per row somewhere
    assert (tokens[~agent] == 0).all()
    offset = tokens[agent][0] - step_adv[0, 0]
    rows, cols = agent.nonzero(as_tuple=True)
    want = step_adv[rows, batch.turn_of_token[rows, cols]] + offset
    torch.testing.assert_close(tokens[rows, cols], want, atol=1e-4, rtol=1e-5)
    played = in_turn.any(1)
    assert float((step_adv + offset)[played].mean()) == pytest.approx(0.0, abs=1e-3)  # zero mean over steps


# -- step entropy --------------------------------------------------------------------------------------

def test_step_entropy_matches_a_direct_computation():
    policy = random_policy(1)
    batch = search_batch(policy, temperature=0.7, seed=2)
    policy.train()
    H, valid = step_entropies(policy, batch, temperature=0.7)
    assert policy.training  # mode restored
    P = batch.prompt_len
    for i in range(batch.input_ids.shape[0]):
        keep = batch.attention_mask[i].bool()
        ids = batch.input_ids[i, keep].unsqueeze(0)
        start = int((~keep[:P]).sum())  # left padding of the prompt
        prompt = P - start
        with torch.no_grad():
            logits = policy.eval().step(ids, torch.ones_like(ids), torch.arange(ids.shape[1]).unsqueeze(0)).logits[0]
        logp = torch.log_softmax(logits.float() / 0.7, -1)
        entropy = -(logp.exp() * logp).sum(-1)
        for t in range(batch.max_turns):
            cols = (batch.turn_of_token[i] == t).nonzero().flatten().tolist()
            assert bool(valid[i, t]) == bool(cols)
            if cols:
                direct = torch.stack([entropy[prompt + c - 1] for c in cols]).mean()
                assert float(H[i, t]) == pytest.approx(float(direct), abs=1e-4)
    assert valid.sum() == (batch.turn_end >= 0).sum()


# -- the registered transform and the engine ------------------------------------------------------------

def test_all_equal_outcomes_leave_only_the_bonus():
    policy = random_policy()
    batch = search_batch(policy)
    cfg = EMPGConfig(minibatches=1)
    rewards = torch.zeros(batch.input_ids.shape[0] // 2, 2)
    adv = empg_advantage(rewards, batch=batch, policy=policy, cfg=cfg, metrics={})
    H, valid = step_entropies(policy, batch, cfg.temperature)
    bonus, _ = modulated_advantages(H, valid, torch.zeros(rewards.numel()), zeta=cfg.empg_zeta)
    in_turn = turn_token_mask(batch.turn_of_token, batch.response_mask, batch.max_turns)
    torch.testing.assert_close(adv, token_advantages_from_steps(bonus, in_turn))
    assert adv.abs().sum() > 0
    no_bonus = empg_advantage(rewards, batch=batch, policy=policy, cfg=cfg.replace(empg_zeta=0.0), metrics={})
    assert (no_bonus == 0).all()


def test_engine_update_runs_empg_and_logs_its_statistics():
    assert ADVANTAGES.get("empg") is empg_advantage
    policy = random_policy()
    batch = search_batch(policy).with_rewards(torch.tensor([1.0, 0, 0, 1, 1, 1, 0, 0]))
    before = [p.detach().clone() for p in policy.parameters()]
    metrics = RLVR(policy, EMPGConfig(minibatches=1)).update(batch)
    assert {"empg/g_min", "empg/g_max", "empg/step_entropy"} <= set(metrics)
    assert float(metrics["empg/g_min"]) <= 1.0 <= float(metrics["empg/g_max"])
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_empg_refuses_other_configs_and_single_turn_batches():
    policy = random_policy()
    batch = search_batch(policy)
    with pytest.raises(ConfigError, match="EMPGConfig"):
        empg_advantage(torch.zeros(4, 2), batch=batch, policy=policy, cfg=MultiTurnConfig(), metrics={})
