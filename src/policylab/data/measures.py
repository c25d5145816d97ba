"""Dataset measures of "A Dataset Perspective on Offline RL" (Schweighofer et al. 2022, §3).

    TQ(D)    = (g(D) - g(D_random)) / (g_max - g(D_random))     trajectory quality
    SACo(D)  = u_sa(D) / u_sa(D_replay)                          state-action coverage
    lSACo(D) = log u_sa(D) / log u_sa(D_replay)
g(D) is the mean episode return in D, D_random a uniform-random dataset of the same environment,
g_max the best evaluation return of the online agent whose replay is D_replay. u_sa counts the
unique (state, action) pairs after binning every state and action dimension into 100 bins
between the replay data's per-dimension minimum and maximum (`np.digitize` on a 100-point
linspace, as the authors' evaluator does). States and actions are cast to float64 first, so the bin edges
are float64 linspaces, as NumPy 1 made them from float32 data; under NumPy 2's promotion rules (NEP 50) a
linspace between float32 minima and maxima is float32, which can move a value lying on an edge into the
neighbouring bin. The authors count with HyperLogLog (1% error); policylab
counts exactly with `np.unique`, which is cheap at these sizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from policylab.core.errors import ConfigError
from policylab.data.format import OfflineData

BINS = 100


def state_action_matrix(data: OfflineData) -> np.ndarray:
    """[transitions, obs_dim + act_dim] float64: each transition's state with its action appended."""
    actions = data.actions.double().reshape(len(data), -1)
    return torch.cat([data.observations.double(), actions], 1).numpy()


def bin_limits(reference: OfflineData) -> np.ndarray:
    """[dims, 2] per-dimension (min, max) of the reference (replay) data's states and actions."""
    matrix = state_action_matrix(reference)
    return np.stack([matrix.min(0), matrix.max(0)], 1)


def unique_state_actions(data: OfflineData, limits: np.ndarray, bins: int = BINS) -> int:
    """Number of distinct binned (state, action) pairs of `data` on the grid `limits` [dims, 2]."""
    matrix = state_action_matrix(data)
    if limits.shape != (matrix.shape[1], 2):
        raise ConfigError(f"limits has shape {tuple(limits.shape)}; this dataset needs ({matrix.shape[1]}, 2) "
                          "(one (min, max) per state and action dimension)")
    binned = np.stack([np.digitize(matrix[:, d], np.linspace(lo, hi, num=bins)) for d, (lo, hi) in enumerate(limits)],
                      1)
    return int(len(np.unique(binned, axis=0)))


def trajectory_quality(mean_return: float, random_return: float, max_return: float) -> float:
    if max_return == random_return:
        raise ConfigError(f"max_return = random_return = {max_return}: TQ is undefined (no spread to normalize by)")
    return (mean_return - random_return) / (max_return - random_return)


def state_action_coverage(unique: int, replay_unique: int, log: bool = False) -> float:
    if replay_unique <= (1 if log else 0):
        raise ConfigError(f"replay_unique = {replay_unique}: the reference must hold more than "
                          f"{1 if log else 0} distinct state-action pairs")
    return math.log(unique) / math.log(replay_unique) if log else unique / replay_unique


def dataset_measures(data: OfflineData, *, random_return: float, max_return: float, limits: np.ndarray,
                     replay_unique: int, bins: int = BINS) -> dict[str, Any]:
    """TQ, SACo, lSACo and the raw counts of `data`, against a replay reference (its limits and count)."""
    mean_return = float(data.episode_returns().mean())
    unique = unique_state_actions(data, limits, bins)
    return {"mean_return": mean_return, "unique_state_actions": unique,
            "tq": trajectory_quality(mean_return, random_return, max_return),
            "saco": state_action_coverage(unique, replay_unique),
            "lsaco": state_action_coverage(unique, replay_unique, log=True)}
