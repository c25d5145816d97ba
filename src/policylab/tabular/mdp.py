"""Finite MDPs as arrays: transitions P[s, a, s'], rewards R[s, a, s'], discount, initial distribution.

Everything is a float64 torch tensor so that exact quantities (values, occupancies, distances) are
exact to ~1e-12 and an IRL objective can differentiate through them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from policylab.core.errors import ConfigError


def sample_rows(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of `probabilities` [n, k] (inverse-CDF with one uniform draw per row)."""
    cumulative = np.cumsum(probabilities, axis=-1)
    draws = rng.random(len(probabilities))[:, None]
    return np.minimum((draws > cumulative).sum(-1), probabilities.shape[-1] - 1)


class FiniteSpaces:
    """Sizes read off a `transitions` tensor P[s, a, s']."""

    transitions: torch.Tensor

    @property
    def num_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def num_actions(self) -> int:
        return self.transitions.shape[1]


@dataclass(frozen=True)
class TabularMDP(FiniteSpaces):
    transitions: torch.Tensor
    """P[s, a, s'], each row a distribution."""
    rewards: torch.Tensor
    """R[s, a, s']."""
    gamma: float
    initial: torch.Tensor
    """mu_0[s]."""

    def __post_init__(self) -> None:
        P, R, mu = self.transitions, self.rewards, self.initial
        if P.dim() != 3 or P.shape[0] != P.shape[2]:
            raise ConfigError(f"TabularMDP.transitions has shape {tuple(P.shape)}; it must be [S, A, S]")
        if R.shape != P.shape:
            raise ConfigError(f"TabularMDP.rewards has shape {tuple(R.shape)}; it must match transitions "
                              f"{tuple(P.shape)} ([S, A, S'])")
        if mu.shape != (P.shape[0],):
            raise ConfigError(f"TabularMDP.initial has shape {tuple(mu.shape)}; it must be [{P.shape[0]}]")
        if not 0 <= self.gamma < 1:
            raise ConfigError(f"TabularMDP.gamma = {self.gamma} is not allowed: must be in [0, 1)")
        if (P < 0).any() or not torch.allclose(P.sum(-1), torch.ones_like(P[..., 0]), atol=1e-9):
            raise ConfigError("TabularMDP.transitions: every P[s, a, :] must be a probability distribution")
        if (mu < 0).any() or abs(float(mu.sum()) - 1) > 1e-9:
            raise ConfigError("TabularMDP.initial must be a probability distribution over states")

    def expected_rewards(self, rewards: torch.Tensor | None = None) -> torch.Tensor:
        """E_{S'~P(s, a)} R(s, a, S'), [S, A]; `rewards` [S, A, S'] or [S, A] (returned as is) instead of the MDP's."""
        R = self.rewards if rewards is None else rewards
        return R if R.dim() == 2 else (self.transitions * R).sum(-1)

    def with_rewards(self, rewards: torch.Tensor) -> TabularMDP:
        """The same dynamics with other rewards ([S, A] is broadcast over s')."""
        R = rewards if rewards.dim() == 3 else rewards[:, :, None].expand_as(self.transitions)
        return replace(self, rewards=R.to(torch.float64).contiguous())


def random_mdp(num_states: int, num_actions: int, seed: int, gamma: float = 0.9, concentration: float = 0.3,
               reward_std: float = 1.0) -> TabularMDP:
    """P(s, a, .) ~ Dirichlet(concentration), R(s, a, s') ~ N(0, reward_std^2), uniform start."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(num_states, concentration), size=(num_states, num_actions))
    P = np.maximum(P, 0.0)
    P /= P.sum(-1, keepdims=True)  # a tiny concentration can underflow a row to all zeros but one
    R = reward_std * rng.standard_normal((num_states, num_actions, num_states))
    return TabularMDP(torch.from_numpy(P), torch.from_numpy(R), gamma,
                      torch.full((num_states,), 1.0 / num_states, dtype=torch.float64))


def sticky_actions(mdp: TabularMDP, stickiness: float) -> TabularMDP:
    """With probability `stickiness` the previous action is repeated instead of the chosen one; the
    previous action joins the state, (s, a_prev) -> index s * A + a_prev, so the result is Markov.
    Rewards follow the action actually executed; the start has a uniform previous action."""
    if not 0 <= stickiness < 1:
        raise ConfigError(f"sticky_actions: stickiness = {stickiness} is not allowed: must be in [0, 1)")
    S, A = mdp.num_states, mdp.num_actions
    P = torch.zeros((S * A, A, S * A), dtype=torch.float64)
    R = torch.zeros_like(P)
    for s in range(S):
        for prev in range(A):
            for a in range(A):
                for executed, p in ((a, 1 - stickiness), (prev, stickiness)):
                    targets = torch.arange(S) * A + executed
                    P[s * A + prev, a, targets] += p * mdp.transitions[s, executed]
                    R[s * A + prev, a, targets] += p * mdp.transitions[s, executed] * mdp.rewards[s, executed]
    R = torch.where(P > 0, R / P.clamp(min=1e-300), 0.0)  # the mean reward of each (state, action, next) triple
    initial = (mdp.initial[:, None] / A).expand(S, A).reshape(-1)
    return TabularMDP(P, R, mdp.gamma, initial.contiguous())
