"""Observation-history windows: h_t = the last H pairs (o_k, a_{k-1}) up to o_t, never crossing an episode.

Every observation of every episode (T + 1 per episode) gets one row of a feature table:
(o_k, a_{k-1} (zeros at k = 0; optional), 1). The trailing 1 marks a real step, so the zero rows that pad
a window before its episode's start differ from an observation that happens to be zero. A window is a
gather of H rows, zeroed where they fall before the episode's first row: one indexing op per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from policylab.core.errors import ConfigError
from policylab.data.format import OfflineData
from policylab.data.samplers import UniformTransitions


def history_table(data: OfflineData, previous_action: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(table [N + E, features], row of o_t for each transition t [N], row of its episode's o_0 [N])."""
    n, d = data.observations.shape
    row = torch.arange(n) + data.episode_ids
    first = (data.episode_starts[:-1] + torch.arange(data.num_episodes))[data.episode_ids]
    obs = data.observations.new_zeros(n + data.num_episodes, d)
    obs[row + 1] = data.next_observations  # the episode's final observation only exists here
    obs[row] = data.observations
    columns = [obs]
    if previous_action:
        actions = data.actions
        if data.discrete:
            actions = F.one_hot(actions, int(data.metadata.get("num_actions", int(actions.max()) + 1))).float()
        prev = actions.new_zeros(n + data.num_episodes, actions.shape[1])
        prev[row + 1] = actions  # a_t is paired with o_{t+1}; every o_0 keeps zeros
        columns.append(prev)
    columns.append(obs.new_ones(n + data.num_episodes, 1))
    return torch.cat(columns, 1).contiguous(), row, first


def history_windows(table: torch.Tensor, end: torch.Tensor, first: torch.Tensor, length: int) -> torch.Tensor:
    """[B, length, features]: rows end - length + 1 .. end, zero where a row precedes `first`."""
    rows = end[:, None] - torch.arange(length - 1, -1, -1)[None, :]
    valid = rows >= first[:, None]
    return table[rows.clamp(min=0)] * valid[..., None]


class HistoryWindows(UniformTransitions):
    """Uniform transitions with their histories: `histories` h_t and `next_histories` h_{t+1}, [B, H, F] each,
    besides the usual transition keys and the rows of each `extra` tensor [N, ...] (per-transition values such as
    privileged knowledge, drawn with the same indices)."""

    def __init__(self, data: OfflineData, batch_size: int, length: int, seed: int = 0, previous_action: bool = True,
                 extra: dict[str, torch.Tensor] | None = None):
        if length <= 0:
            raise ConfigError(f"HistoryWindows: length = {length} is not allowed: must be >= 1 step")
        super().__init__(data, batch_size, seed)
        self.length = length
        self.table, self.row, self.first = history_table(data, previous_action)
        self.extra = dict(extra or {})
        for key, values in self.extra.items():
            if len(values) != len(data):
                raise ConfigError(f"HistoryWindows: extra[{key!r}] has {len(values)} rows, the data {len(data)} "
                                  "transitions")

    def sample(self) -> dict[str, torch.Tensor]:
        i = self.indices()
        d = self.data
        end, first = self.row[i], self.first[i]
        return {"observations": d.observations[i], "actions": d.actions[i], "rewards": d.rewards[i],
                "next_observations": d.next_observations[i], "terminals": d.terminals[i], "timeouts": d.timeouts[i],
                "histories": history_windows(self.table, end, first, self.length),
                "next_histories": history_windows(self.table, end + 1, first, self.length),
                **{key: values[i] for key, values in self.extra.items()}}
