"""Trajectory weighting for mixed datasets — "Harnessing Mixed Offline Reinforcement Learning Datasets
via Trajectory Weighting" (Hong, Agrawal, Tachet des Combes, Laroche; ICLR 2023; official code
github.com/Improbable-AI/harness-offline-rl, `implicit_q_learning/dataset_utils.py`).

When a dataset holds a few high-return trajectories among many poor ones, an offline learner that
stays close to the behaviour policy stays close to the *average* trajectory. Sampling trajectories
by their quality instead builds an artificial dataset with the same support whose behaviour policy
has a higher return (§3-4). Only the batch index distribution changes; every algorithm's loss is
untouched, so these are samplers (`cfg.sampler = "rw" | "aw" | "top"`):

  RW:  G_hat_i = (G_i - min_j G_j) / (max_j G_j - min_j G_j),   w_i = exp(G_hat_i / alpha)
  AW:  V_hat(s_0) = linear regression of G on the initial states,  A_i = G_i - V_hat(s_{i,0}),
       A_hat_i min-max normalized as above,                         w_i = exp(A_hat_i / alpha)
  P(transition t of trajectory i) = w_i / sum_j T_j w_j   (so a trajectory's mass is T_i w_i)
  Top-K%: uniform over the transitions of the best K% trajectories.

AW takes away the credit of a lucky start: a trajectory is good if it beat what its initial state
predicted. Defaults: alpha = 0.1, K = 10 (the paper's). Sources: the formulas follow the official
code; its d3rlpy-v2 example computes the normalized weights and then overwrites them with a softmax
of the *raw* returns (at alpha = 0.1 a near one-hot on the single best trajectory) — we keep the
normalized form, as the paper and the main code do. When every trajectory has the same return (or
advantage) the weights are uniform. The effective sample size 1 / sum p^2 (in transitions and in
trajectories) is logged, since a too-small alpha collapses training onto a handful of episodes.
Indices are drawn by inverse-CDF lookup (one `searchsorted` per batch, no per-step Python).
"""

from __future__ import annotations

from typing import Any

import torch

from policylab.data import SAMPLERS, OfflineData, UniformTransitions
from policylab.offline.bc import top_episode_transitions

RELATIVE_TIE = 1e-9


def min_max(values: torch.Tensor) -> torch.Tensor:
    """(v - min) / (max - min); all zeros when the values are equal up to rounding (a regression's
    residuals of 1e-15 must not be stretched to [0, 1])."""
    spread = values.max() - values.min()
    if spread <= RELATIVE_TIE * max(1.0, float(values.abs().max())):
        return torch.zeros_like(values)
    return (values - values.min()) / spread


def return_weights(returns: torch.Tensor, temperature: float) -> torch.Tensor:
    """RW trajectory weights exp(G_hat / alpha)."""
    return torch.exp(min_max(returns.double()) / temperature)


def initial_state_value_fit(returns: torch.Tensor, initial_obs: torch.Tensor) -> torch.Tensor:
    """V_hat(s_0) for every trajectory: least squares of G on [s_0, 1]."""
    design = torch.cat([initial_obs.double(), torch.ones(len(returns), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, returns.double()[:, None]).solution
    return (design @ coef).squeeze(1)


def advantage_weights(returns: torch.Tensor, initial_obs: torch.Tensor, temperature: float) -> torch.Tensor:
    """AW trajectory weights exp(A_hat / alpha), A = G - V_hat(s_0)."""
    advantage = returns.double() - initial_state_value_fit(returns, initial_obs)
    return torch.exp(min_max(advantage) / temperature)


class WeightedTrajectories(UniformTransitions):
    """Transitions drawn with probability proportional to their trajectory's weight (with replacement)."""

    def __init__(self, data: OfflineData, batch_size: int, trajectory_weights: torch.Tensor, seed: int = 0):
        super().__init__(data, batch_size, seed)
        if trajectory_weights.shape != (data.num_episodes,) or not torch.isfinite(trajectory_weights).all() \
                or (trajectory_weights < 0).any() or trajectory_weights.sum() <= 0:
            raise ValueError(f"trajectory weights must be {data.num_episodes} finite non-negative numbers, not all 0")
        per_transition = trajectory_weights.double()[data.episode_ids]
        self.probabilities = per_transition / per_transition.sum()
        self.cdf = torch.cumsum(self.probabilities, 0)
        lengths = (data.episode_starts[1:] - data.episode_starts[:-1]).double()
        mass = trajectory_weights.double() * lengths
        mass = mass / mass.sum()
        self.stats = {"sampler/ess_transitions": float(1.0 / self.probabilities.square().sum()),
                      "sampler/ess_trajectories": float(1.0 / mass.square().sum())}

    def indices(self) -> torch.Tensor:
        u = torch.rand(self.batch_size, generator=self.generator, dtype=torch.float64) * self.cdf[-1]
        return torch.searchsorted(self.cdf, u, right=True).clamp(max=len(self.cdf) - 1)

    def metrics(self) -> dict[str, float]:
        return dict(self.stats)


def initial_observations(data: OfflineData) -> torch.Tensor:
    return data.observations[data.episode_starts[:-1]]


@SAMPLERS.register("rw")
def return_weighted(data: OfflineData, batch_size: int, seed: int, cfg: Any) -> WeightedTrajectories:
    return WeightedTrajectories(data, batch_size, return_weights(data.episode_returns(), cfg.sampler_temperature),
                                seed)


@SAMPLERS.register("aw")
def advantage_weighted(data: OfflineData, batch_size: int, seed: int, cfg: Any) -> WeightedTrajectories:
    weights = advantage_weights(data.episode_returns(), initial_observations(data), cfg.sampler_temperature)
    return WeightedTrajectories(data, batch_size, weights, seed)


@SAMPLERS.register("top")
def top_trajectories(data: OfflineData, batch_size: int, seed: int, cfg: Any) -> UniformTransitions:
    return UniformTransitions(data, batch_size, seed, top_episode_transitions(data, cfg.sampler_top_percent))
