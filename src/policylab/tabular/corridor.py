"""A family of small stochastic finite-horizon MDPs whose difficulty is known exactly: slippery
corridors (the notes' effective-horizon check, §2(f)).

Cells 0..L in a row, start at cell 1, the goal at cell L, and an absorbing cell after the goal.
Actions: 0 left, 1 right; with probability `slip` the move goes the other way; walls hold at cell 0.
Entering the goal pays 1 and moves to the absorbing cell (0 forever after). Each action taken in cell
0 pays `distractor`: a nearby small reward that makes acting greedily on the random policy's Q wrong,
so more steps of value iteration (a larger k) are needed. Horizon L + 3.
"""

from __future__ import annotations

import torch

from policylab.core.errors import ConfigError
from policylab.tabular.horizon import FiniteHorizonMDP


def corridor(length: int, slip: float = 0.15, distractor: float = 0.0) -> FiniteHorizonMDP:
    if length < 2:
        raise ConfigError(f"corridor: length = {length} is not allowed: must be >= 2 (start 1, goal L)")
    if not 0 <= slip < 0.5:
        raise ConfigError(f"corridor: slip = {slip} is not allowed: must be in [0, 0.5)")
    cells, done = length + 1, length + 1
    P = torch.zeros((cells + 1, 2, cells + 1), dtype=torch.float64)
    R = torch.zeros((cells + 1, 2), dtype=torch.float64)
    for s in range(length):
        for a, direction in ((0, -1), (1, 1)):
            for moved, p in ((direction, 1 - slip), (-direction, slip)):
                target = min(max(s + moved, 0), length)
                if target == length:
                    P[s, a, done] += p
                    R[s, a] += p
                else:
                    P[s, a, target] += p
        if s == 0:
            R[s] += distractor
    P[length, :, done] = 1.0  # unreachable in practice (entering the goal leaves it at once)
    P[done, :, done] = 1.0
    initial = torch.zeros(cells + 1, dtype=torch.float64)
    initial[1] = 1.0
    return FiniteHorizonMDP(P, R, length + 3, initial)
