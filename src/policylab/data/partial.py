"""The dataset side of partial observability: the same hide / noise transform as `envs.partial`.

Noise is drawn once per observation o_k of an episode (T + 1 of them), so `next_observations[t]` and
`observations[t + 1]` stay the same noisy vector.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from policylab.data.format import DatasetError, OfflineData
from policylab.envs.partial import PartialSpec, register_partial


def partially_observed(data: OfflineData, hide: tuple[int, ...] = (), noise_std: float = 0.0,
                       noise_seed: int = 0) -> OfflineData:
    """The dataset as a partially observed agent sees it; its metadata names the wrapped env and the spec."""
    if "partial_observation" in data.metadata:
        raise DatasetError(f"dataset {data.metadata.get('name', '?')!r} is already partially observed "
                           f"({data.metadata['partial_observation']})")
    spec = PartialSpec(data.metadata["env_id"], tuple(int(d) for d in hide), float(noise_std), int(noise_seed))
    keep = torch.as_tensor(spec.kept(data.observations.shape[1]))
    obs, next_obs = data.observations[:, keep], data.next_observations[:, keep]
    if spec.noise_std > 0:
        row = torch.arange(len(data)) + data.episode_ids  # o_t's row among all N + E observations
        noise = torch.randn(len(data) + data.num_episodes, len(keep),
                            generator=torch.Generator().manual_seed(spec.noise_seed)) * spec.noise_std
        obs, next_obs = obs + noise[row], next_obs + noise[row + 1]
    meta = {**data.metadata, "env_id": register_partial(spec), "observation_dim": int(len(keep)),
            "partial_observation": spec.to_dict()}
    return replace(data, observations=obs.contiguous(), next_observations=next_obs.contiguous(), metadata=meta)


def register_from_metadata(data: OfflineData) -> None:
    """Make a saved partially observed dataset's `env_id` resolvable in this process."""
    if "partial_observation" in data.metadata:
        register_partial(PartialSpec.from_dict(data.metadata["partial_observation"]))
