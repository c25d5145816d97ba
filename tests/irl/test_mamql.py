"""Markov games (policylab.tabular.games) and MAMQL (policylab.irl.mamql): marginal MDPs, the QRE fixed
point, exact joint returns against sampled play, tabular IQ-Learn recovering a soft-optimal expert's
reward, and the log-BC inverse."""

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.irl.mamql import MAMQLConfig, iq_learn, log_bc, mamql, read_reward, recovery, soft_value
from policylab.tabular import mce_policy, random_mdp, soft_value_iteration, starc_distance
from policylab.tabular.games import gems, quantal_response_equilibrium


@pytest.fixture(scope="module")
def equilibrium():
    game = gems()
    experts = quantal_response_equilibrium(game, 3.0)
    return game, experts, [game.marginal_mdp(0, experts[1]), game.marginal_mdp(1, experts[0])]


def test_gems_rewards_and_marginals(equilibrium):
    game, experts, marginals = equilibrium
    purple_both = 4 * 9 + 4  # both players on the centre cell
    assert game.rewards[:, purple_both].unique().tolist() == [2.0 - 0.05]
    own = 2 * 9 + 8  # player 0 on its gem (cell 2, top right), player 1 in the bottom-right corner
    assert game.rewards[0, own, 0, 0] == pytest.approx(1.0 - 0.05)
    for mdp in marginals:
        assert torch.allclose(mdp.transitions.sum(-1), torch.ones(81, 5, dtype=torch.float64))


def test_qre_is_a_fixed_point_of_soft_best_responses(equilibrium):
    game, experts, _ = equilibrium
    for i in (0, 1):
        mdp = game.marginal_mdp(i, experts[1 - i])
        q, v = soft_value_iteration(mdp, 1 / 3.0)
        assert torch.allclose(mce_policy(q, v, 1 / 3.0), experts[i], atol=1e-8)


def test_joint_returns_match_sampled_play(equilibrium):
    game, experts, _ = equilibrium
    exact = game.joint_returns(experts)
    demos = game.sample(experts, 4000, 60, seed=0)
    pos = demos["states"][:, :-1]
    discounts = game.gamma ** np.arange(60)
    for i in (0, 1):
        rewards = game.rewards[i].numpy()[pos, demos["actions"][0], demos["actions"][1]]
        assert (rewards * discounts).sum(1).mean() == pytest.approx(float(exact[i]), rel=0.03)


def test_iq_learn_recovers_a_soft_expert_reward_up_to_shaping():
    mdp = random_mdp(6, 3, seed=0)
    q_true, v_true = soft_value_iteration(mdp, 1 / 3.0)
    expert = mce_policy(q_true, v_true, 1 / 3.0)
    rng = np.random.default_rng(0)
    s = rng.integers(6, size=20_000)
    a = np.array([rng.choice(3, p=expert[x].numpy()) for x in s])
    s2 = np.array([rng.choice(6, p=mdp.transitions[x, y].numpy()) for x, y in zip(s, a)])
    q = iq_learn(s, a, s2, 6, 3, mdp.gamma, MAMQLConfig(), seed=0)
    recovered = read_reward(q, mdp.transitions, mdp.gamma, 3.0)
    assert float(starc_distance(mdp, mdp.rewards, recovered)) < 0.25
    assert float(starc_distance(mdp, mdp.rewards, torch.randn(6, 3, dtype=torch.float64))) > 0.3
    assert torch.allclose(torch.softmax(3.0 * q, -1), expert, atol=0.1)  # the critic's policy is the expert's
    assert torch.allclose(soft_value(q, 3.0), torch.logsumexp(3.0 * q, -1) / 3.0)


def test_methods_on_the_game_and_the_expert_sanity_check(equilibrium):
    game, experts, marginals = equilibrium
    truth = recovery(game, marginals, [experts[0].log() / 3.0, experts[1].log() / 3.0], list(experts))
    assert truth["starc"] < 1e-9  # the exact MCE inverse of the experts
    demos = game.sample(experts, 10, 30, seed=1)
    cfg = MAMQLConfig(steps=300)
    for rewards, policies in (mamql(game, demos, cfg, marginals, 0), log_bc(game, demos, cfg, marginals)):
        out = recovery(game, marginals, rewards, policies)
        assert 0 < out["starc"] < 1 and np.isfinite(out["return"])
        assert all(torch.allclose(p.sum(-1), torch.ones(81, dtype=torch.float64)) for p in policies)


def test_bad_games_are_named():
    game = gems()
    with pytest.raises(ConfigError, match="do not fit"):
        type(game)(game.transitions, game.rewards[:1], 0.9, game.initial)
    with pytest.raises(ConfigError, match="slip"):
        gems(slip=1.0)
