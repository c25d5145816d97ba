"""Finite-horizon tools and the effective horizon (policylab.tabular.horizon, .corridor) and SQIRL
(policylab.rl.sqirl): backward induction by hand, k_min on the corridor family, invariance under
potential shaping, vectorized sampling, and SQIRL needing k >= k_min."""

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.rl.sqirl import near_optimal, q_learning_sample_complexity, sqirl, sqirl_sample_complexity
from policylab.tabular.corridor import corridor
from policylab.tabular.horizon import FiniteHorizonMDP, analyze, backward_q, greedy_sets, reachable


def chain():
    """Two states; action 1 moves 0 -> 1, state 1 pays 1 per action; action 0 stays."""
    P = torch.zeros(2, 2, 2, dtype=torch.float64)
    P[0, 0, 0] = P[0, 1, 1] = P[1, 0, 1] = P[1, 1, 1] = 1.0
    R = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    return FiniteHorizonMDP(P, R, 3, torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_backward_induction_by_hand():
    mdp = chain()
    q = backward_q(mdp, "max")
    # t = 2: Q = R; t = 1: state 0 moving gets 0 + 1; state 1 gets 1 + 1; t = 0: 0 + 2 / 1 + 2
    assert torch.allclose(q[:, 0], torch.tensor([[1.0, 2.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(q[:, 1], torch.tensor([[3.0, 3.0], [2.0, 2.0], [1.0, 1.0]], dtype=torch.float64))
    rand = backward_q(mdp, "mean")
    assert torch.isclose(rand[1, 0, 1], torch.tensor(1.0, dtype=torch.float64))  # 0 now, then V^rand_2(1) = 1
    assert mdp.policy_value(q.argmax(-1)) == pytest.approx(2.0)
    greedy = greedy_sets(q, 1e-9)
    seen = reachable(mdp.transitions, mdp.initial, greedy)
    assert seen[:, 0].tolist() == [True, False, False] and seen[1:, 1].all()


def test_corridor_family_difficulty():
    for length in range(2, 8):
        assert analyze(corridor(length, 0.15, 0.0), max_k=12).min_k == 1  # greedy on random Q suffices
    distracted = analyze(corridor(2, 0.15, 0.05), max_k=12)
    assert distracted.min_k == 5 and distracted.effective_horizon > analyze(corridor(2), max_k=12).effective_horizon
    mdp = corridor(3, 0.15, 0.2)
    assert torch.allclose(mdp.transitions.sum(-1), torch.ones(5, 2, dtype=torch.float64))
    assert mdp.rewards[0, 0].tolist() == [0.2, 0.2] and mdp.rewards[0, 2, 1] == pytest.approx(0.85)
    with pytest.raises(ConfigError, match="length = 1"):
        corridor(1)


def test_potential_shaping_leaves_the_effective_horizon_unchanged():
    mdp = corridor(4, 0.15, 0.05)
    phi = 3 * torch.randn(mdp.horizon, mdp.num_states, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before, after = analyze(mdp, max_k=8), analyze(mdp.shaped(phi), max_k=8)
    assert after.min_k == before.min_k and after.effective_horizon == pytest.approx(before.effective_horizon)
    span = before.optimal_return - before.random_return
    assert after.optimal_return - after.random_return == pytest.approx(span)
    assert after.optimal_return - before.optimal_return == pytest.approx(-float(mdp.initial @ phi[0]))


def test_vectorized_step_samples_the_transition_probabilities():
    mdp = corridor(3, 0.15, 0.0)
    rng = np.random.default_rng(0)
    nxt, rewards = mdp.step(0, np.full(20_000, 1), np.full(20_000, 1), rng)
    assert np.mean(nxt == 2) == pytest.approx(0.85, abs=0.01) and np.mean(nxt == 0) == pytest.approx(0.15, abs=0.01)
    assert np.all(rewards == 0)


def test_sqirl_needs_k_at_least_k_min():
    mdp = corridor(2, 0.15, 0.2)  # k_min = 3: greedy on random Q walks to the distractor
    a = analyze(mdp, max_k=6)
    assert a.min_k == 3
    for k, expected in ((1, False), (2, False), (3, True)):
        results = [near_optimal(mdp, sqirl(mdp, k, 512, seed), a.optimal_return, a.random_return, 0.0)
                   for seed in range(3)]
        assert results == [expected] * 3, (k, results)
    assert sqirl_sample_complexity(mdp, a.optimal_return, a.random_return, 0.05, (1, 2), 6, 1, 0) == float("inf")
    solved = sqirl_sample_complexity(mdp, a.optimal_return, a.random_return, 0.05, (3,), 9, 3, 0)
    assert np.isfinite(solved) and solved % mdp.horizon ** 2 == 0


def test_q_learning_solves_the_easiest_corridor():
    mdp = corridor(2, 0.15, 0.0)
    a = analyze(mdp)
    samples = q_learning_sample_complexity(mdp, a.optimal_return, a.random_return, 0.05, max_episodes=3000, seed=0)
    assert np.isfinite(samples) and samples % mdp.horizon == 0
    assert q_learning_sample_complexity(mdp, a.optimal_return, a.random_return, 0.05, max_episodes=1,
                                        check_every=10, seed=0) == float("inf")


def test_bad_finite_mdps_are_named():
    P = corridor(2).transitions
    with pytest.raises(ConfigError, match="rewards has shape"):
        FiniteHorizonMDP(P, torch.zeros(3, 3, dtype=torch.float64), 4, torch.ones(4, dtype=torch.float64) / 4)
    with pytest.raises(ConfigError, match="k = 0"):
        sqirl(corridor(2), 0, 4, 0)
