"""Finite-horizon tools and the effective horizon (policylab.tabular.horizon, .corridor) and SQIRL
(policylab.rl.sqirl): backward induction by hand, k_min on the corridor family, invariance under
potential shaping and reward scale, exact greedy ties, the simple effective horizon by hand, the
inverse-gap reading's old values, vectorized sampling, and SQIRL needing k >= k_min."""

import math

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.rl.sqirl import near_optimal, q_learning_sample_complexity, sqirl, sqirl_sample_complexity
from policylab.tabular.corridor import corridor
from policylab.tabular.horizon import HORIZON_FORMS, FiniteHorizonMDP, analyze, backward_q, greedy_sets, reachable


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
    greedy = greedy_sets(q)
    seen = reachable(mdp.transitions, mdp.initial, greedy)
    assert seen[:, 0].tolist() == [True, False, False] and seen[1:, 1].all()


def test_corridor_family_difficulty():
    for length in range(2, 8):
        assert analyze(corridor(length, 0.15, 0.0), max_k=12).min_k == 1  # greedy on random Q suffices
    distracted = analyze(corridor(2, 0.15, 0.05), max_k=12, method="inverse_gap")
    assert distracted.min_k == 5
    assert distracted.effective_horizon > analyze(corridor(2), max_k=12, method="inverse_gap").effective_horizon
    # the simple horizon cannot rank these: with A = 2 and T = 5 no k has H_k < T, so H = T for both
    assert analyze(corridor(2, 0.15, 0.05)).effective_horizon == analyze(corridor(2)).effective_horizon == 5.0
    mdp = corridor(3, 0.15, 0.2)
    assert torch.allclose(mdp.transitions.sum(-1), torch.ones(5, 2, dtype=torch.float64))
    assert mdp.rewards[0, 0].tolist() == [0.2, 0.2] and mdp.rewards[0, 2, 1] == pytest.approx(0.85)
    with pytest.raises(ConfigError, match="length = 1"):
        corridor(1)


def test_potential_shaping_leaves_the_effective_horizon_unchanged():
    mdp = corridor(4, 0.15, 0.05)
    phi = 3 * torch.randn(mdp.horizon, mdp.num_states, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for method in HORIZON_FORMS:
        before, after = analyze(mdp, max_k=8, method=method), analyze(mdp.shaped(phi), max_k=8, method=method)
        assert after.min_k == before.min_k and after.effective_horizon == pytest.approx(before.effective_horizon)
        assert [h for _, _, h in after.per_k.values()] == pytest.approx([h for _, _, h in before.per_k.values()])
    span = before.optimal_return - before.random_return
    assert after.optimal_return - after.random_return == pytest.approx(span)
    assert after.optimal_return - before.optimal_return == pytest.approx(-float(mdp.initial @ phi[0]))


def scaled(mdp: FiniteHorizonMDP, factor: float) -> FiniteHorizonMDP:
    return FiniteHorizonMDP(mdp.transitions, mdp.rewards * factor, mdp.horizon, mdp.initial)


def sticky_lock(cells: int, stickiness: float = 0.25) -> FiniteHorizonMDP:
    """A combination lock with sticky actions: action 1 advances a cell, action 0 goes back to cell 0, reaching
    cell `cells` pays 1 and ends; with probability `stickiness` the previous action (part of the state,
    index cell * 2 + previous) is executed instead. A random walk opens it with probability ~2^-cells."""
    done = cells * 2
    P = torch.zeros(done + 1, 2, done + 1, dtype=torch.float64)
    R = torch.zeros(done + 1, 2, dtype=torch.float64)
    for cell in range(cells):
        for prev in range(2):
            for a in range(2):
                for executed, p in ((a, 1 - stickiness), (prev, stickiness)):
                    target = cell + 1 if executed == 1 else 0
                    P[cell * 2 + prev, a, done if target == cells else target * 2 + executed] += p
                    R[cell * 2 + prev, a] += p * (target == cells)
    P[done, :, done] = 1.0
    initial = torch.zeros(done + 1, dtype=torch.float64)
    initial[1] = 1.0  # cell 0, previous action 1
    return FiniteHorizonMDP(P, R, cells + 2, initial)


def test_small_q_values_keep_k_min():
    # fails on the old code: one absolute 1e-9 for ties and optimality made every action of a 1e-9-scaled
    # corridor tied and optimal (k_min 1), and tied all of the lock's random-policy Q values (k_min None)
    for length, distractor in ((2, 0.05), (4, 0.2), (3, 0.0)):
        mdp = corridor(length, 0.15, distractor)
        big, small = analyze(mdp, max_k=12), analyze(scaled(mdp, 1e-9), max_k=12)
        assert small.min_k == big.min_k and small.min_k == {0.05: 5, 0.2: 4, 0.0: 1}[distractor]
        assert small.effective_horizon == pytest.approx(big.effective_horizon)  # the simple horizon is scale-free
    lock = sticky_lock(45)
    assert float(backward_q(lock, "mean")[0, 1].max()) < 2e-9
    analysis = analyze(lock, max_k=3)
    assert analysis.min_k == 1 and analysis.optimal_return == pytest.approx(1.0)


def test_greedy_ties_are_exact():
    # the reference keeps an action greedy only when its Q equals the max exactly (value_iteration.jl:289)
    q = torch.tensor([[[1.0, 1.0 - 1e-12, 1.0]]], dtype=torch.float64)
    assert greedy_sets(q).tolist() == [[[True, False, True]]]
    # t = 0: action 0 leads to X (rewards 1 or 0), action 1 to Y (0.5 either way); both have V^rand = 0.5, and
    # action 0 also pays 1e-12 now, so it alone is greedy on Q^rand, and it is optimal: k_min = 1. Tying the
    # two (the old 1e-9 tolerance) let the suboptimal action 1 in and gave k_min = 2.
    P = torch.zeros(4, 2, 4, dtype=torch.float64)
    P[0, 0, 1] = P[0, 1, 2] = 1.0
    P[1:, :, 3] = 1.0
    R = torch.tensor([[1e-12, 0.0], [1.0, 0.0], [0.5, 0.5], [0.0, 0.0]], dtype=torch.float64)
    mdp = FiniteHorizonMDP(P, R, 2, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    assert analyze(mdp).min_k == 1


def test_simple_effective_horizon_by_hand():
    # t = 0: action 0 goes to X, actions 1 and 2 to Y; at t = 1 X pays [1, 0, 0] and Y nothing, then an absorbing
    # cell with no reward until T = 6. A = 3.
    P = torch.zeros(4, 3, 4, dtype=torch.float64)
    P[0, 0, 1] = P[0, 1, 2] = P[0, 2, 2] = 1.0
    P[1:, :, 3] = 1.0
    R = torch.zeros(4, 3, dtype=torch.float64)
    R[1, 0] = 1.0
    T, A = 6, 3
    mdp = FiniteHorizonMDP(P, R, T, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    analysis = analyze(mdp)
    # k = 1 at (0, start): Q^rand = [1/3, 0, 0], Q* = [1, 0, 0], Q^worst = 0, so var = max_a (Q^rand - Q^worst)
    # (Q* - Q^worst) = 1/3 and gap = 1/3 - 0; X at t = 1 has var 0 (m = 1); nothing else is reached.
    var, gap = 1 / 3, 1 / 3
    m = math.ceil(16 * var / gap**2 * math.log(2 * T * A**1))
    assert m == 173
    solvable, got_gap, h_1 = analysis.per_k[1]
    assert solvable and got_gap == pytest.approx(gap) and h_1 == pytest.approx(1 + math.log(m, A))
    # k = 2: Q^2 = Q* at the start and var^2 is the max of X's var^1 = 0, so m = 1 and H_2 = 2 = H (< T)
    assert analysis.per_k[2][2] == pytest.approx(2.0) and analysis.effective_horizon == pytest.approx(2.0)
    assert analysis.min_k == 1 and analysis.method == "simple"


def test_inverse_gap_form_keeps_its_old_values():
    # values of the earlier default (k + log_A(1 / Delta_k^2)) on the corridors, before issue 20
    for (length, distractor), (min_k, h) in {(2, 0.0): (1, 5.5842142967173345), (2, 0.2): (3, 12.821003698321794),
                                               (4, 0.05): (2, 12.673002535434241)}.items():
        analysis = analyze(corridor(length, 0.15, distractor), max_k=12, method="inverse_gap")
        assert (analysis.min_k, analysis.method) == (min_k, "inverse_gap")
        assert analysis.effective_horizon == pytest.approx(h, rel=1e-12)
    with pytest.raises(ConfigError, match="method = 'bound'"):
        analyze(corridor(2), method="bound")


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
