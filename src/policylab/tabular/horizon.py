"""Finite-horizon planning and the stochastic effective horizon (Laidlaw, Zhu, Russell, Dragan, "The
Effective Horizon Explains Deep RL Performance in Stochastic Environments", ICLR 2024, arXiv 2312.08369;
official analysis `EffectiveHorizon.jl`, `calculate_minimum_k`).

Horizon T, undiscounted, state-action rewards R_t[s, a] (the same at every t, or time-indexed, as a
potential-shaped reward R_t + P Phi_{t+1} - Phi_t is), time-indexed values (t = 0..T-1):
    Q^rand_t = R_t + P V^rand_{t+1},   V^rand_t(s) = mean_a Q^rand_t(s, a),   V_T = 0
    Q^1 = Q^rand,   Q^{i+1}_t = R_t + P max_a' Q^i_{t+1}(., a')                  (k steps of value iteration)
    k-QVI-solvable: every policy greedy on Q^k (any tie-break) is optimal, checked at every (t, s)
    reachable from the start by such policies: each tied greedy action a has Q*_t(s, a) >= V*_t(s) - tol
    gap  Delta_k = min over those (t, s) and a outside argmax Q^k_t(s, .) of max Q^k_t(s, .) - Q^k_t(s, a)
    stochastic effective horizon  H_k = k + log_A(1 / Delta_k^2),  H = min over solvable k of H_k
The form of H_k is the notes' reading of the paper's definition (the sample count to estimate Q^k to
within its gap, Delta^-2, in units of A^k rollouts); the reachable-set criterion follows the official code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from policylab.core.errors import ConfigError
from policylab.tabular.mdp import FiniteSpaces, sample_rows


@dataclass(frozen=True)
class FiniteHorizonMDP(FiniteSpaces):
    """P[s, a, s'], state-action rewards R[s, a] or R[t, s, a] (stored as [T, S, A]), horizon T, start
    distribution; undiscounted."""

    transitions: torch.Tensor
    rewards: torch.Tensor
    horizon: int
    initial: torch.Tensor

    def __post_init__(self) -> None:
        if self.rewards.dim() == 2:
            _check(self.transitions, self.rewards, self.horizon)
            object.__setattr__(self, "rewards", self.rewards.expand(self.horizon, -1, -1).contiguous())
        if self.rewards.shape != (self.horizon, *self.transitions.shape[:2]):
            raise ConfigError(f"FiniteHorizonMDP.rewards has shape {tuple(self.rewards.shape)}; it must be [S, A] "
                              f"or [T, S, A] = {(self.horizon, *self.transitions.shape[:2])}")
        if not torch.allclose(self.transitions.sum(-1), torch.ones_like(self.rewards[0]), atol=1e-9):
            raise ConfigError("FiniteHorizonMDP.transitions: every P[s, a, :] must be a probability distribution")

    def sample_starts(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self.num_states, size=n, p=self.initial.numpy())

    def step(self, t: int, states: np.ndarray, actions: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorized: next states drawn from P[s, a] and the rewards R_t[s, a]."""
        nxt = sample_rows(self.transitions.numpy()[states, actions], rng)
        return nxt, self.rewards.numpy()[t, states, actions]

    def shaped(self, potentials: torch.Tensor) -> FiniteHorizonMDP:
        """R_t + E_{S'} Phi_{t+1}(S') - Phi_t(s) for potentials [T, S] (Phi_T = 0): every policy's Q_t moves by
        -Phi_t(s), so greedy actions, gaps and the effective horizon are unchanged."""
        nxt = torch.cat([potentials[1:], torch.zeros_like(potentials[:1])])
        extra = torch.einsum("sat,ht->hsa", self.transitions, nxt) - potentials[:, :, None]
        return FiniteHorizonMDP(self.transitions, self.rewards + extra, self.horizon, self.initial)

    def policy_value(self, actions: torch.Tensor) -> float:
        """Exact expected return of a deterministic time-indexed policy actions[t, s]."""
        values = torch.zeros(self.num_states, dtype=torch.float64)
        rows = torch.arange(self.num_states)
        for t in range(self.horizon - 1, -1, -1):
            q = self.rewards[t] + self.transitions @ values
            values = q[rows, actions[t]]
        return float(self.initial @ values)


def _check(transitions: torch.Tensor, rewards: torch.Tensor, horizon: int) -> None:
    if rewards.shape != transitions.shape[:2]:
        raise ConfigError(f"rewards has shape {tuple(rewards.shape)}; finite-horizon tools take state-action "
                          f"rewards [S, A] = {tuple(transitions.shape[:2])}")
    if horizon < 1:
        raise ConfigError(f"horizon = {horizon} is not allowed: must be >= 1")


def backward_q(mdp: FiniteHorizonMDP, backup: str) -> torch.Tensor:
    """Q_t for t = 0..T-1, [T, S, A]; backup 'max' (optimal), 'min' (worst) or 'mean' (uniform random policy)."""
    reduce = {"max": lambda q: q.amax(-1), "min": lambda q: q.amin(-1), "mean": lambda q: q.mean(-1)}[backup]
    q = torch.zeros_like(mdp.rewards)
    values = torch.zeros(mdp.num_states, dtype=torch.float64)
    for t in range(mdp.horizon - 1, -1, -1):
        q[t] = mdp.rewards[t] + mdp.transitions @ values
        values = reduce(q[t])
    return q


def qvi_iterate(mdp: FiniteHorizonMDP, q: torch.Tensor) -> torch.Tensor:
    """One step of value iteration on time-indexed Q: R_t + P max_a' Q_{t+1}, with Q_T = 0."""
    nxt = torch.cat([q[1:].amax(-1), torch.zeros_like(q[:1, :, 0])])
    return mdp.rewards + torch.einsum("sat,ht->hsa", mdp.transitions, nxt)


def greedy_sets(q: torch.Tensor, tol: float) -> torch.Tensor:
    """Boolean [T, S, A]: the actions within `tol` of the best."""
    return q >= q.amax(-1, keepdim=True) - tol


def reachable(transitions: torch.Tensor, initial: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Boolean [T, S]: states reachable at each t when any allowed action may be taken."""
    horizon = allowed.shape[0]
    out = torch.zeros((horizon, transitions.shape[0]), dtype=torch.bool)
    out[0] = initial > 0
    for t in range(horizon - 1):
        moves = transitions * (allowed[t] & out[t][:, None]).to(transitions.dtype)[:, :, None]
        out[t + 1] = moves.sum((0, 1)) > 0
    return out


@dataclass(frozen=True)
class HorizonAnalysis:
    min_k: int | None
    """The smallest k (<= max_k) for which the MDP is k-QVI-solvable; None if none is."""
    effective_horizon: float
    """min over solvable k <= max_k of k + log_A(1 / Delta_k^2); inf if none is solvable."""
    per_k: dict[int, tuple[bool, float, float]]
    """k -> (solvable, gap Delta_k, H_k)."""
    optimal_return: float
    random_return: float


def analyze(mdp: FiniteHorizonMDP, max_k: int = 10, tol: float = 1e-9) -> HorizonAnalysis:
    transitions, initial = mdp.transitions, mdp.initial
    q_star = backward_q(mdp, "max")
    v_star = q_star.amax(-1)
    q = backward_q(mdp, "mean")
    random_return = float(initial @ q[0].mean(-1))
    num_actions = mdp.num_actions
    per_k = {}
    for k in range(1, max_k + 1):
        greedy = greedy_sets(q, tol)
        seen = reachable(transitions, initial, greedy)
        chosen = greedy & seen[:, :, None]
        solvable = bool((q_star[chosen] >= v_star[:, :, None].expand_as(q_star)[chosen] - tol).all())
        shortfall = q.amax(-1, keepdim=True) - q
        others = seen[:, :, None] & ~greedy
        gap = float(shortfall[others].min()) if others.any() else math.inf
        h_k = k + (math.log(1 / gap**2, num_actions) if 0 < gap < math.inf else (math.inf if gap == 0 else 0.0))
        per_k[k] = (solvable, gap, h_k)
        q = qvi_iterate(mdp, q)
    solvable_k = [k for k, (ok, _, _) in per_k.items() if ok]
    return HorizonAnalysis(min(solvable_k) if solvable_k else None,
                           min((per_k[k][2] for k in solvable_k), default=math.inf), per_k,
                           float(initial @ v_star[0]), random_return)
