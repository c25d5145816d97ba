"""Distances between reward functions that ignore what does not change any policy's ranking.

STARC (Skalse et al. 2023, arXiv 2309.15257), value-adjusted levelling canonicalization with a fixed
policy pi (uniform by default), L2 normalization and L2 metric:
    c(R)(s, a) = E_{S'}[R(s, a, S') - V^pi_R(s) + gamma V^pi_R(S')]   (0 for any potential shaping and any
                                                                        S'-redistribution of R)
    s(R) = c(R) / ||c(R)||_2  (0 when c(R) = 0),   d(R1, R2) = ||s(R1) - s(R2)||_2 / 2  in [0, 1]
EPIC (Gleave et al. 2021), uniform coverage over states and actions:
    C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S'') - R(s, A, S') - gamma R(S, A, S')]
    d(R1, R2) = sqrt((1 - rho(C(R1), C(R2))) / 2) over uniform (s, a, s') triples
Normalized regret: how much worse, under R1, the optimal policy of R2 is than R1's optimum, over the
span between R1's best and worst policies (from the initial distribution).
Rewards are [S, A, S'] or [S, A]; STARC also takes a batch [N, S, A] of expected rewards.
"""

from __future__ import annotations

import torch

from policylab.tabular.mdp import TabularMDP
from policylab.tabular.planning import optimal_policy, policy_evaluation, uniform_policy, value_iteration


def canonicalize(mdp: TabularMDP, rewards: torch.Tensor, policy: torch.Tensor | None = None,
                 batched: bool = False) -> torch.Tensor:
    """Value-adjusted levelling c(R)(s, a), [..., S, A]; `batched`: rewards are [N, S, A] expected rewards."""
    expected = rewards if batched else mdp.expected_rewards(rewards)
    _, values = policy_evaluation(mdp, uniform_policy(mdp) if policy is None else policy, expected)
    next_values = torch.einsum("sat,...t->...sa", mdp.transitions, values)
    return expected - values.unsqueeze(-1) + mdp.gamma * next_values


def _unit(c: torch.Tensor) -> torch.Tensor:
    norm = c.flatten(-2).norm(dim=-1)[..., None, None]
    return torch.where(norm > 1e-12, c / norm.clamp(min=1e-300), torch.zeros_like(c))


def starc_distance(mdp: TabularMDP, r1: torch.Tensor, r2: torch.Tensor, policy: torch.Tensor | None = None,
                   batched: bool = False) -> torch.Tensor:
    """STARC-VAL distance in [0, 1]; with `batched`, r2 is [N, S, A] (expected) and the result is [N]."""
    s1 = _unit(canonicalize(mdp, mdp.expected_rewards(r1), policy, batched=True))
    s2 = _unit(canonicalize(mdp, r2 if batched else mdp.expected_rewards(r2), policy, batched=True))
    return (s1 - s2).flatten(-2).norm(dim=-1) / 2


def _triples(mdp: TabularMDP, rewards: torch.Tensor) -> torch.Tensor:
    R = rewards if rewards.dim() == 3 else rewards[:, :, None].expand_as(mdp.transitions)
    return R.to(torch.float64)


def epic_canonical(mdp: TabularMDP, rewards: torch.Tensor) -> torch.Tensor:
    """C(R)[s, a, s'] with uniform state and action distributions."""
    R = _triples(mdp, rewards)
    from_each = R.mean((1, 2))  # E_{A, S'~uniform} R(x, A, S') for each first state x
    return R + mdp.gamma * from_each[None, None, :] - from_each[:, None, None] - mdp.gamma * R.mean()


def epic_distance(mdp: TabularMDP, r1: torch.Tensor, r2: torch.Tensor) -> float:
    a, b = epic_canonical(mdp, r1).flatten(), epic_canonical(mdp, r2).flatten()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    rho = float(a @ b) / denominator if denominator > 1e-300 else 0.0
    return float(max(0.0, (1 - rho) / 2) ** 0.5)


def normalized_regret(mdp: TabularMDP, true_rewards: torch.Tensor, learned_rewards: torch.Tensor) -> float:
    """(V*_1 - V^{pi_2}_1) / (V*_1 - V^min_1) at the initial distribution; pi_2 uniform over R2's optimal
    actions; 0 when every policy is equally good under R1."""
    q_learned, _ = value_iteration(mdp, learned_rewards)
    _, best = value_iteration(mdp, true_rewards)
    _, worst = value_iteration(mdp, -mdp.expected_rewards(true_rewards))
    _, achieved = policy_evaluation(mdp, optimal_policy(q_learned), mdp.expected_rewards(true_rewards))
    span = float(mdp.initial @ (best + worst))  # V^min = -V*(-R)
    return float(mdp.initial @ (best - achieved)) / span if span > 1e-12 else 0.0
