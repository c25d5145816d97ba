"""policylab.tabular: planning on a hand-solved MDP, exact evaluation and occupancies, and the reward
distances' invariances (potential shaping, positive scaling, S'-redistribution)."""

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.tabular import (
    NotConverged,
    TabularMDP,
    boltzmann_policy,
    canonicalize,
    epic_distance,
    mce_policy,
    normalized_regret,
    occupancy,
    optimal_policy,
    policy_evaluation,
    random_mdp,
    soft_value_iteration,
    starc_distance,
    sticky_actions,
    uniform_policy,
    value_iteration,
)


def two_state(gamma=0.5):
    """Action 0 stays, action 1 switches; reward 1 for acting in state 1."""
    P = torch.zeros(2, 2, 2, dtype=torch.float64)
    P[0, 0, 0] = P[1, 0, 1] = P[0, 1, 1] = P[1, 1, 0] = 1.0
    R = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)[:, :, None].expand(2, 2, 2).contiguous()
    return TabularMDP(P, R, gamma, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_value_iteration_by_hand():
    q, v = value_iteration(two_state())
    # V(1) = 1 / (1 - 0.5) = 2 (stay); V(0) = 0 + 0.5 V(1) = 1 (switch)
    assert torch.allclose(v, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(q, torch.tensor([[0.5, 1.0], [2.0, 1.5]], dtype=torch.float64))
    assert torch.equal(optimal_policy(q), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))


def test_soft_values_approach_hard_ones_and_satisfy_the_soft_bellman_equation():
    mdp = random_mdp(6, 3, seed=0)
    q_hard, v_hard = value_iteration(mdp)
    q, v = soft_value_iteration(mdp, alpha=1e-3)
    assert torch.allclose(v, v_hard, atol=1e-2)
    q, v = soft_value_iteration(mdp, alpha=0.7)
    assert torch.allclose(v, 0.7 * torch.logsumexp(q / 0.7, -1))
    pi = mce_policy(q, v, 0.7)
    assert torch.allclose(pi.sum(-1), torch.ones(6, dtype=torch.float64))
    assert torch.all(v >= v_hard - 1e-9)  # the entropy bonus only adds
    assert torch.allclose(boltzmann_policy(q_hard, 1e6), optimal_policy(q_hard), atol=1e-6)


def test_policy_evaluation_is_exact_and_batched():
    mdp = random_mdp(5, 2, seed=1)
    pi = torch.softmax(torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), -1)
    q, v = policy_evaluation(mdp, pi)
    assert torch.allclose(v, (pi * q).sum(-1))  # V = E_pi Q
    r = mdp.expected_rewards()
    assert torch.allclose(q, r + mdp.gamma * mdp.transitions @ v)  # Bellman
    batch = torch.stack([r, 2 * r, -r])
    _, vb = policy_evaluation(mdp, pi, batch)
    assert torch.allclose(vb, torch.stack([v, 2 * v, -v]))


def test_occupancy_sums_to_one_and_gives_the_return():
    mdp = random_mdp(7, 3, seed=2)
    pi = uniform_policy(mdp)
    d = occupancy(mdp, pi)
    assert torch.isclose(d.sum(), torch.tensor(1.0, dtype=torch.float64))
    _, v = policy_evaluation(mdp, pi)
    assert torch.isclose((d * mdp.expected_rewards()).sum() / (1 - mdp.gamma), mdp.initial @ v)


def shaped(mdp, potential, scale=1.0):
    """scale R + gamma phi(s') - phi(s), on [S, A, S']."""
    return scale * mdp.rewards + mdp.gamma * potential[None, None, :] - potential[:, None, None]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_starc_and_epic_ignore_shaping_and_scaling(seed):
    mdp = random_mdp(8, 3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    phi = 10 * torch.randn(8, dtype=torch.float64, generator=g)
    other = shaped(mdp, phi, scale=3.5)
    assert float(starc_distance(mdp, mdp.rewards, other)) < 1e-9
    assert epic_distance(mdp, mdp.rewards, other) < 1e-6
    assert float(starc_distance(mdp, mdp.rewards, -mdp.rewards)) == pytest.approx(1.0)  # opposite rewards
    assert epic_distance(mdp, mdp.rewards, -mdp.rewards) == pytest.approx(1.0)
    unrelated = random_mdp(8, 3, seed=seed + 100).rewards
    assert 0.2 < float(starc_distance(mdp, mdp.rewards, unrelated)) < 0.9


def test_starc_ignores_next_state_redistribution_and_epic_is_not_asked_to():
    mdp = random_mdp(6, 2, seed=3)
    # the same expected reward E_{S'} R for every (s, a), put on other next states
    flat = mdp.expected_rewards()[:, :, None].expand(6, 2, 6)
    assert float(starc_distance(mdp, mdp.rewards, flat)) < 1e-9
    assert torch.allclose(canonicalize(mdp, mdp.rewards), canonicalize(mdp, flat))


def test_starc_batch_matches_one_at_a_time():
    mdp = random_mdp(5, 3, seed=4)
    g = torch.Generator().manual_seed(0)
    batch = torch.randn(4, 5, 3, dtype=torch.float64, generator=g)
    together = starc_distance(mdp, mdp.rewards, batch, batched=True)
    assert together.shape == (4,)
    for i in range(4):
        assert torch.isclose(together[i], starc_distance(mdp, mdp.rewards, batch[i]))
    assert float(starc_distance(mdp, torch.zeros(5, 3, dtype=torch.float64), mdp.rewards)) == pytest.approx(0.5)


def test_regret_is_zero_for_equivalent_rewards_and_one_for_opposite():
    mdp = random_mdp(6, 3, seed=5)
    phi = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert normalized_regret(mdp, mdp.rewards, shaped(mdp, phi, 2.0)) == pytest.approx(0.0, abs=1e-9)
    assert normalized_regret(mdp, mdp.rewards, -mdp.rewards) == pytest.approx(1.0)


def test_sticky_actions_keep_values_at_zero_stickiness_and_cost_with_it():
    mdp = random_mdp(4, 2, seed=6)
    _, v = value_iteration(mdp)
    sticky0 = sticky_actions(mdp, 0.0)
    _, v0 = value_iteration(sticky0)
    assert torch.allclose(v0.view(4, 2), v[:, None].expand(4, 2), atol=1e-9)  # the previous action is irrelevant
    sticky = sticky_actions(mdp, 0.5)
    _, vs = value_iteration(sticky)
    assert torch.all(vs.view(4, 2).amax(1) <= v + 1e-9)  # less control, no better
    assert torch.allclose(sticky.transitions.sum(-1), torch.ones(8, 2, dtype=torch.float64))
    with pytest.raises(ConfigError, match="stickiness = 1.0"):
        sticky_actions(mdp, 1.0)


def test_bad_mdps_and_budgets_are_named():
    P = torch.full((3, 2, 3), 0.5, dtype=torch.float64)
    with pytest.raises(ConfigError, match="probability distribution"):
        TabularMDP(P, torch.zeros_like(P), 0.9, torch.full((3,), 1 / 3, dtype=torch.float64))
    mdp = random_mdp(3, 2, seed=0)
    with pytest.raises(ConfigError, match="gamma = 1.0"):
        TabularMDP(mdp.transitions, mdp.rewards, 1.0, mdp.initial)
    with pytest.raises(ConfigError, match="rewards has shape"):
        TabularMDP(mdp.transitions, mdp.rewards[:, :, :2], 0.9, mdp.initial)
    with pytest.raises(NotConverged, match="value_iteration did not converge"):
        value_iteration(mdp, max_iter=2)
    assert torch.equal(random_mdp(3, 2, seed=7).transitions, random_mdp(3, 2, seed=7).transitions)
