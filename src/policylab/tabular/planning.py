"""Exact planning in a `TabularMDP`: hard and soft (maximum causal entropy) value iteration, exact
policy evaluation, the three behavioural models of IRL, and discounted occupancy measures.

    Q(s, a)  = E_{S'}[R(s, a, S') + gamma V(S')]
    hard     V(s) = max_a Q(s, a)
    soft     V(s) = alpha log sum_a exp(Q(s, a) / alpha)          (log-sum-exp, stable near gamma -> 1)
    Boltzmann  pi(a|s) ∝ exp(beta Q*(s, a))                        (the hard Q*)
    MCE        pi(a|s) = exp((Q^soft(s, a) - V^soft(s)) / alpha)    (the soft Q)
    occupancy  d(s, a) = (1 - gamma) sum_t gamma^t Pr(s_t = s, a_t = a)
Planners take rewards as [S, A, S'] or [S, A] (default: the MDP's); `policy_evaluation` takes expected
rewards [..., S, A] with any leading batch dimensions (many reward functions, one linear solve).
"""

from __future__ import annotations

import torch

from policylab.core.errors import PolicylabError
from policylab.tabular.mdp import TabularMDP


class NotConverged(PolicylabError):
    pass


def q_from_values(mdp: TabularMDP, values: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """One Bellman backup r(s, a) + gamma E_{S'} V(S'): [..., S, A] from values [..., S] and expected
    rewards [..., S, A]."""
    return expected + mdp.gamma * torch.einsum("sat,...t->...sa", mdp.transitions, values)


def _iterate(mdp: TabularMDP, backup, rewards: torch.Tensor | None, tol: float, max_iter: int, name: str
             ) -> tuple[torch.Tensor, torch.Tensor]:
    expected = mdp.expected_rewards(rewards)
    values = torch.zeros(mdp.num_states, dtype=torch.float64)
    for _ in range(max_iter):
        new = backup(q_from_values(mdp, values, expected))
        if (new - values).abs().max() < tol:
            return q_from_values(mdp, new, expected), new
        values = new
    raise NotConverged(f"{name} did not converge to {tol} in {max_iter} sweeps (gamma = {mdp.gamma}); "
                       "raise max_iter or tol")


def value_iteration(mdp: TabularMDP, rewards: torch.Tensor | None = None, tol: float = 1e-11,
                    max_iter: int = 100_000) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q*, V*) of `rewards` (default: the MDP's)."""
    return _iterate(mdp, lambda q: q.amax(-1), rewards, tol, max_iter, "value_iteration")


def soft_value_iteration(mdp: TabularMDP, alpha: float = 1.0, rewards: torch.Tensor | None = None,
                         tol: float = 1e-11, max_iter: int = 100_000) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q^soft, V^soft) at temperature alpha."""
    if alpha <= 0:
        raise ValueError(f"alpha = {alpha} is not allowed: must be > 0 (alpha -> 0 is value_iteration)")
    return _iterate(mdp, lambda q: alpha * torch.logsumexp(q / alpha, -1), rewards, tol, max_iter,
                    "soft_value_iteration")


def policy_evaluation(mdp: TabularMDP, policy: torch.Tensor, expected: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (Q^pi, V^pi) by one linear solve, V = (I - gamma P_pi)^-1 r_pi, for expected rewards [..., S, A]
    (default: the MDP's)."""
    r = mdp.expected_rewards() if expected is None else expected
    r_pi = (policy * r).sum(-1)
    P_pi = torch.einsum("sa,sat->st", policy, mdp.transitions)
    system = torch.eye(mdp.num_states, dtype=torch.float64) - mdp.gamma * P_pi
    values = torch.linalg.solve(system, r_pi.unsqueeze(-1)).squeeze(-1)
    return q_from_values(mdp, values, r), values


def uniform_policy(mdp: TabularMDP) -> torch.Tensor:
    return torch.full((mdp.num_states, mdp.num_actions), 1.0 / mdp.num_actions, dtype=torch.float64)


def optimal_policy(q: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """Uniform over the actions within `tol` of the best (the optimality model's canonical member)."""
    best = (q >= q.amax(-1, keepdim=True) - tol).to(torch.float64)
    return best / best.sum(-1, keepdim=True)


def boltzmann_policy(q: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.softmax(beta * q, -1)


def mce_policy(q_soft: torch.Tensor, v_soft: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.exp((q_soft - v_soft.unsqueeze(-1)) / alpha)


def occupancy(mdp: TabularMDP, policy: torch.Tensor) -> torch.Tensor:
    """Normalized discounted state-action occupancy d[s, a] (sums to 1)."""
    P_pi = torch.einsum("sa,sat->st", policy, mdp.transitions)
    system = torch.eye(mdp.num_states, dtype=torch.float64) - mdp.gamma * P_pi.T
    states = torch.linalg.solve(system, (1 - mdp.gamma) * mdp.initial)
    return states[:, None] * policy
