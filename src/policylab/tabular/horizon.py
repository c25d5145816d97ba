"""Finite-horizon planning, k-QVI-solvability and the effective horizon (Laidlaw, Zhu, Russell, Dragan,
"Bridging RL Theory and Practice with the Effective Horizon", NeurIPS 2023, arXiv 2304.09853, and "The
Effective Horizon Explains Deep RL Performance in Stochastic Environments", ICLR 2024, arXiv 2312.08369;
official analysis in cassidylaidlaw/effective-horizon, `EffectiveHorizon.jl`, read at commit 1a83eb7).

Horizon T, undiscounted, state-action rewards R_t[s, a] (the same at every t, or time-indexed, as a
potential-shaped reward R_t + P Phi_{t+1} - Phi_t is), time-indexed values (t = 0..T-1):
    Q^rand_t = R_t + P V^rand_{t+1},   V^rand_t(s) = mean_a Q^rand_t(s, a),   V_T = 0   (likewise Q*, Q^worst)
    Q^1 = Q^rand,   Q^{i+1}_t = R_t + P max_a' Q^i_{t+1}(., a')                  (k steps of value iteration)
    optimal action: Q*_t(s, a) >= V*_t(s) - rtol * span,  span = max over visitable (t, s) of V*_t - V^worst_t
    k-QVI-solvable: walking forward from the start through every action tied exactly (up to float64 rounding,
        TIE_RTOL) for max Q^k_t(s, .), each such action is optimal    (`calculate_minimum_k`, min_k below)
Two readings of the effective horizon H = min over k of H_k (`method`):
  "simple" (default; the reference's `compute_simple_effective_horizon`, the first paper's Theorem 5.4 bound):
    var^1_t(s, a) = (Q^rand - Q^worst)(Q* - Q^worst),  var^{j+1}_t(s, a) = max over s' ~ P(s, a), a' of var^j_{t+1}
    at each (t, s) reached through the actions whose Q^k beats every suboptimal action's:
        gap = max_a Q^k - max over suboptimal a of Q^k  (k fails where it is 0),  var = max_a var^k_t(s, a)
        m_k(t, s) = max(1, ceil(16 var / gap^2 * ln(2 T A^k)))
    H_k = k + log_A max_{t, s} m_k(t, s),   H = min(T, min over k that do not fail of H_k)
  "inverse_gap" (policylab's earlier reading of the stochastic paper): over the states reachable through the
    exact greedy actions, Delta_k = min gap between max Q^k and a non-greedy action, H_k = k + log_A(1 / Delta_k^2),
    H = min over k-QVI-solvable k of H_k (inf if none). It is not scale-free: multiplying R by c moves it by -2 log_A c.

Checked against the official code (file:line at 1a83eb7):
- greedy ties are exact, `current_qs[t, s, a] >= max_q` (value_iteration.jl:289 and :444); the optimality test
  is the only tolerance, Q* < V* - REWARD_PRECISION with REWARD_PRECISION = 1e-4 absolute (EffectiveHorizon.jl:41,
  value_iteration.jl:291-296); the reached set follows the tied actions (value_iteration.jl:297-311);
- the simple horizon as written above (gorp_bounds.jl:788-920): the variance bound (:810), its backup through the
  next step's max (:898-913), the gap to the best suboptimal action (:846-858), m (:861-866), the reached set
  (:870-876), H_k (:890), the cap at T (H starts at `horizon`, :823, and k runs while k < H, :827);
- on the reference's KeyCorridorS3R1 (data/mdps/MiniGrid-KeyCorridorS3R1-v0, horizon 100) this module gives its
  stored `consolidated_analyzed.json`: min_k 1, effective horizon 16.0, the same m_k and gaps for k = 1..16; with
  sticky actions (0.25, the first step not sticky) the stored `..._sticky_0.25.json`: min_k 1, the same optimal and
  random returns (the old one-tolerance code gave min_k 3 there and H 8.38, the inverse-gap reading, deterministic).
Not the reference's, so not checked:
- ties up to rounding (TIE_RTOL, ~2e-13 of |Q|): the reference compares floats exactly, but a tie exact in exact
  arithmetic (cell 0 at t = 2 of corridor(4, 0.15, 0.05)) must survive a potential shaping's rounding;
- the relative optimality tolerance: the reference's 1e-4 is absolute, for BRIDGE rewards of order 1 (span = 1
  makes the two equal); scaling R by c scales rtol * span with it, so min_k and the simple H are scale-free;
- stochastic transitions in the simple horizon: the reference's is for deterministic MDPs only; here every s' with
  P > 0 is reached and the variance backup takes its max over them;
- the "inverse_gap" formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


TIE_RTOL = 1e3 * torch.finfo(torch.float64).eps
"""Q values this close, relative to the largest |Q_t(s, .)|, are equal up to float64 rounding."""


def rounding(q: torch.Tensor) -> torch.Tensor:
    """[T, S, 1]: the rounding error Q_t(s, .) may carry."""
    return TIE_RTOL * q.abs().amax(-1, keepdim=True)


def greedy_sets(q: torch.Tensor) -> torch.Tensor:
    """Boolean [T, S, A]: the actions whose Q equals the best, exactly up to rounding."""
    return q >= q.amax(-1, keepdim=True) - rounding(q)


def reachable(transitions: torch.Tensor, initial: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Boolean [T, S]: states reachable at each t when any allowed action may be taken."""
    horizon = allowed.shape[0]
    out = torch.zeros((horizon, transitions.shape[0]), dtype=torch.bool)
    out[0] = initial > 0
    for t in range(horizon - 1):
        moves = transitions * (allowed[t] & out[t][:, None]).to(transitions.dtype)[:, :, None]
        out[t + 1] = moves.sum((0, 1)) > 0
    return out


def optimal_actions(mdp: FiniteHorizonMDP, q_star: torch.Tensor, q_worst: torch.Tensor, rtol: float) -> torch.Tensor:
    """Boolean [T, S, A]: Q*_t(s, a) >= V*_t(s) - rtol * span, span the largest V* - V^worst over visitable (t, s)."""
    visitable = reachable(mdp.transitions, mdp.initial, torch.ones_like(q_star, dtype=torch.bool))
    v_star = q_star.amax(-1)
    span = float((v_star - q_worst.amin(-1))[visitable].max())
    return q_star >= v_star[:, :, None] - rtol * span


def variance_backup(mdp: FiniteHorizonMDP, var: torch.Tensor) -> torch.Tensor:
    """var_t(s, a) <- max over s' with P(s' | s, a) > 0 and a' of var_{t+1}(s', a'); the last step keeps its own."""
    support = (mdp.transitions > 0).to(var.dtype)
    out = var.clone()
    for t in range(mdp.horizon - 1):
        out[t] = (support * var[t + 1].amax(-1)).amax(-1)  # var >= 0, so the zeros off the support never win
    return out


def simple_horizon_k(mdp: FiniteHorizonMDP, k: int, q: torch.Tensor, optimal: torch.Tensor, var: torch.Tensor
                     ) -> tuple[float, float]:
    """(gap at the (t, s) needing the most rollouts, H_k); H_k = inf where a suboptimal action ties for max Q^k."""
    best, tie = q.amax(-1), rounding(q)[:, :, 0]
    best_suboptimal = torch.where(optimal, -math.inf, q).amax(-1)
    seen = reachable(mdp.transitions, mdp.initial, q > (best_suboptimal + tie)[:, :, None])
    if (seen & (best <= best_suboptimal + tie)).any():
        return 0.0, math.inf
    gap = best - best_suboptimal  # inf where every action is optimal: one rollout suffices (m = 1)
    rollouts = 16 * var.amax(-1) / gap**2 * math.log(2 * mdp.horizon * float(mdp.num_actions) ** k)
    m = torch.where(seen, torch.ceil(rollouts).clamp(min=1), 0.0)
    worst = int(m.argmax())
    log_a = math.log(mdp.num_actions) if mdp.num_actions > 1 else math.inf
    return float(gap.flatten()[worst]), k + math.log(float(m.flatten()[worst])) / log_a


def inverse_gap_horizon_k(mdp: FiniteHorizonMDP, k: int, q: torch.Tensor, optimal: torch.Tensor,
                          var: torch.Tensor) -> tuple[float, float]:
    """(Delta_k, k + log_A(1 / Delta_k^2)) over the states the exact greedy actions reach."""
    greedy = greedy_sets(q)
    seen = reachable(mdp.transitions, mdp.initial, greedy)
    others = seen[:, :, None] & ~greedy
    gap = float((q.amax(-1, keepdim=True) - q)[others].min()) if others.any() else math.inf
    return gap, k + (math.log(1 / gap**2, mdp.num_actions) if 0 < gap < math.inf else
                     (math.inf if gap == 0 else 0.0))


@dataclass(frozen=True)
class HorizonForm:
    horizon_k: Callable[[FiniteHorizonMDP, int, torch.Tensor, torch.Tensor, torch.Tensor], tuple[float, float]]
    """(mdp, k, Q^k, optimal actions, variance bounds of Q^k) -> (gap, H_k)."""
    capped_at_horizon: bool
    """H = min(T, ...) as the reference's loop does."""


HORIZON_FORMS = {"simple": HorizonForm(simple_horizon_k, True),
                 "inverse_gap": HorizonForm(inverse_gap_horizon_k, False)}


@dataclass(frozen=True)
class HorizonAnalysis:
    min_k: int | None
    """The smallest k (<= max_k) for which the MDP is k-QVI-solvable; None if none is."""
    effective_horizon: float
    """H in the reading `method` (see the module docstring)."""
    per_k: dict[int, tuple[bool, float, float]]
    """k -> (k-QVI-solvable, gap, H_k), gap and H_k in the reading `method`."""
    optimal_return: float
    random_return: float
    method: str = "simple"


def analyze(mdp: FiniteHorizonMDP, max_k: int | None = None, method: str = "simple", rtol: float = 1e-4
            ) -> HorizonAnalysis:
    """k = 1..max_k (default T, where Q^T = Q* makes k-QVI-solvability certain)."""
    if method not in HORIZON_FORMS:
        raise ConfigError(f"analyze: method = {method!r} is not one of {sorted(HORIZON_FORMS)}")
    form = HORIZON_FORMS[method]
    transitions, initial = mdp.transitions, mdp.initial
    q_star, q_worst, q_rand = backward_q(mdp, "max"), backward_q(mdp, "min"), backward_q(mdp, "mean")
    q = q_rand
    optimal = optimal_actions(mdp, q_star, q_worst, rtol)
    var = ((q_rand - q_worst) * (q_star - q_worst)).clamp(min=0)
    per_k = {}
    for k in range(1, (mdp.horizon if max_k is None else max_k) + 1):
        greedy = greedy_sets(q)
        chosen = greedy & reachable(transitions, initial, greedy)[:, :, None]
        solvable = bool(optimal[chosen].all())
        per_k[k] = (solvable, *form.horizon_k(mdp, k, q, optimal, var))
        q, var = qvi_iterate(mdp, q), variance_backup(mdp, var)
    solvable_k = [k for k, (ok, _, _) in per_k.items() if ok]
    best = min((per_k[k][2] for k in solvable_k), default=math.inf)
    return HorizonAnalysis(min(solvable_k) if solvable_k else None,
                           min(best, mdp.horizon) if form.capped_at_horizon else best, per_k,
                           float(initial @ q_star[0].amax(-1)), float(initial @ q_rand[0].mean(-1)),
                           method)
