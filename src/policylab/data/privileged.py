"""Privileged knowledge e in offline datasets: values a simulator knows per episode (the dynamics parameters it
drew) and a deployed robot does not.

They live in the metadata, one row per episode (`metadata["privileged"]`: names, values, the base env and the
parameter box the values were drawn from), never in the observations: a learner reads them per transition
with `privileged_values`, for training losses only. `with_privileged_observations` is the one deliberate
exception, the oracle that sees e (its env appends e to the observation at evaluation too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from policylab.data.format import DatasetError, Episode, OfflineData
from policylab.envs.factory import make_env
from policylab.envs.robust import ParamBox, privileged_randomized_env_id, randomized_env_id

PRIVILEGED = "privileged"


def split_privileged(episodes: Sequence[Episode], count: int) -> tuple[list[Episode], np.ndarray]:
    """Episodes collected in an env whose observations end with `count` per-episode constants (a
    `ParamsInObservation` env): (the episodes without those columns, their values [E, count])."""
    if count < 1:
        raise DatasetError(f"count = {count} is not allowed: must be >= 1 privileged column")
    stripped, values = [], []
    for i, ep in enumerate(episodes):
        e = ep.observations[:, -count:]
        if not np.all(e == e[0]):
            raise DatasetError(f"episode {i}: the last {count} observation columns change within the episode, so "
                               "they are not per-episode privileged values")
        stripped.append(replace(ep, observations=np.ascontiguousarray(ep.observations[:, :-count])))
        values.append(e[0])
    return stripped, np.asarray(values, dtype=np.float64)


def privileged_metadata(base_env_id: str, box: ParamBox, values: np.ndarray) -> dict[str, Any]:
    """The metadata of a dataset collected in `box`'s randomized env: its env id and the values per episode."""
    return {"env_id": randomized_env_id(base_env_id, box),
            PRIVILEGED: {"names": list(box.names), "values": np.asarray(values).round(6).tolist(),
                         "base_env_id": base_env_id,
                         "box": {"names": list(box.names), "low": list(box.low), "high": list(box.high)}}}


def _spec(data: OfflineData) -> dict[str, Any]:
    if PRIVILEGED not in data.metadata:
        raise DatasetError(f"dataset {data.metadata.get('name', '?')!r} carries no privileged values "
                           "(metadata['privileged'] is missing)")
    return data.metadata[PRIVILEGED]


def privileged_box(data: OfflineData) -> ParamBox:
    box = _spec(data)["box"]
    return ParamBox(tuple(box["names"]), tuple(box["low"]), tuple(box["high"]))


def register_privileged_from_metadata(data: OfflineData) -> None:
    """Make the dataset's randomized env id (and its privileged twin) resolvable in this process."""
    spec = _spec(data)
    randomized_env_id(spec["base_env_id"], privileged_box(data))
    privileged_randomized_env_id(spec["base_env_id"], privileged_box(data))


def deployable_observation_dim(data: OfflineData) -> int:
    """The observation width of the base env, what a deployed policy sees (no privileged columns)."""
    env = make_env(_spec(data)["base_env_id"])
    dim = int(env.observation_space.shape[0])
    env.close()
    return dim


def privileged_values(data: OfflineData) -> torch.Tensor:
    """[N, k] e of each transition's episode (float32)."""
    values = torch.as_tensor(_spec(data)["values"], dtype=torch.float32)
    if values.ndim != 2 or len(values) != data.num_episodes:
        raise DatasetError(f"dataset {data.metadata.get('name', '?')!r}: privileged values have shape "
                           f"{tuple(values.shape)}, expected one row per episode ({data.num_episodes})")
    return values[data.episode_ids].contiguous()


def with_privileged_observations(data: OfflineData) -> OfflineData:
    """The oracle's dataset: observations o + e, its env the randomized env that appends e (not deployable)."""
    register_privileged_from_metadata(data)
    e = privileged_values(data)
    spec = _spec(data)
    meta = {**data.metadata, "env_id": privileged_randomized_env_id(spec["base_env_id"], privileged_box(data)),
            "observation_dim": int(data.observations.shape[1] + e.shape[1])}
    return replace(data, observations=torch.cat([data.observations, e], 1).contiguous(),
                   next_observations=torch.cat([data.next_observations, e], 1).contiguous(), metadata=meta)
