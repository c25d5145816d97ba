"""Observations beyond a flat vector: Dict and image spaces, and a running observation normalizer.

Every observation travels flat. `VectorEnv` flattens what an env returns with gymnasium's own
`spaces.flatten` (Box parts reshaped, Discrete parts one-hot, a Dict's parts concatenated in its key
order), so replay buffers, rollouts, checkpoints and `predict` all hold plain float32 rows. An algorithm
then reads the rows through two optional modules:

- `ObservationEncoder(space)`: the multi-input encoder. Image parts (a 3-dim uint8 Box, SB3's rule;
  channels first or last) go through a CNN each (the Nature DQN stack for images of 36 pixels or more,
  a two-layer 3x3 stack below that), scaled by 1/255; every other part passes through as it is, which is
  exactly SB3's `CombinedExtractor` for vectors. With no image part it is the identity and has no
  parameters, so flat-Box runs are bitwise what they were.
- `ObservationNormalizer(dim)`: running mean and variance per dimension (SB3's VecNormalize: clip 10,
  eps 1e-8), image dimensions left alone. Observations seen while acting are counted as pending and
  merged by `commit()` at the end of each update, so one rollout and the update that consumes it see
  the same statistics (raw observations are stored; PPO's old log-probs stay exact). The statistics are
  module buffers: they are checkpointed and saved with the model.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policylab.core.errors import ConfigError


def is_flat_box(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def check_observation_space(space: gym.Space) -> None:
    """Refuse, in one line, a space policylab cannot flatten and encode."""
    parts = space.spaces.items() if isinstance(space, gym.spaces.Dict) else [("", space)]
    for key, part in parts:
        if not isinstance(part, (gym.spaces.Box, gym.spaces.Discrete)):
            where = f" (key {key!r})" if key else ""
            raise ConfigError(f"observation space {space} is not supported{where}: expected a Box, a Discrete, or a "
                              "Dict of them")
        if isinstance(part, gym.spaces.Box) and len(part.shape) == 0:
            raise ConfigError(f"observation space {space} is not supported: a Box needs at least one dimension")


def layout(space: gym.Space) -> list[tuple[str, int, int, gym.Space]]:
    """(key, start, size, part) of each part in the flattened row, in gymnasium's flatten order."""
    check_observation_space(space)
    parts = list(space.spaces.items()) if isinstance(space, gym.spaces.Dict) else [("", space)]
    out, start = [], 0
    for key, part in parts:
        size = int(gym.spaces.flatdim(part))
        out.append((key, start, size, part))
        start += size
    return out


def flat_dim(space: gym.Space) -> int:
    return sum(size for _, _, size, _ in layout(space))


def flatten_observation(space: gym.Space, obs: object) -> np.ndarray:
    """One observation as a flat float32 row."""
    if is_flat_box(space):
        return np.asarray(obs, dtype=np.float32)
    return np.asarray(gym.spaces.flatten(space, obs), dtype=np.float32)


def flatten_batch(space: gym.Space, obs: object, field: str = "obs") -> tuple[np.ndarray, bool]:
    """([n, flat_dim] float32, whether `obs` was one observation) for any supported space; a wrong shape is
    refused with one line naming the part, the shape given and the shapes allowed."""
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(obs, dict):
            raise ConfigError(f"{field}: the observation space is a Dict, got {type(obs).__name__}")
        missing = [k for k in space.spaces if k not in obs]
        if missing:
            raise ConfigError(f"{field} lacks the key {missing[0]!r} (keys: {', '.join(space.spaces)})")
        pieces = [_part_batch(part, obs[key], f"{field}[{key!r}]") for key, part in space.spaces.items()]
        singles = {single for _, single in pieces}
        if len(singles) > 1 or len({len(p) for p, _ in pieces}) > 1:
            raise ConfigError(f"{field}: its parts disagree on the batch size (one observation, or n of each part)")
        return np.concatenate([p for p, _ in pieces], axis=1), singles.pop()
    return _part_batch(space, obs, field)


def _part_batch(space: gym.Space, obs: object, field: str) -> tuple[np.ndarray, bool]:
    try:
        array = np.asarray(obs, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{field}: cannot read it as an array of numbers ({err})") from None
    if isinstance(space, gym.spaces.Discrete):
        if array.ndim > 1:
            raise ConfigError(f"{field} has shape {array.shape}: expected one integer or a batch of shape (n,)")
        index = array.reshape(-1).astype(np.int64) - int(space.start)
        if np.any((index < 0) | (index >= space.n)):
            raise ConfigError(f"{field} holds a value outside the Discrete({space.n}) space")
        return np.eye(int(space.n), dtype=np.float32)[index], array.ndim == 0
    shape = tuple(space.shape)
    if array.shape == shape:
        return array.reshape(1, -1), True
    if array.ndim == len(shape) + 1 and array.shape[1:] == shape:
        return array.reshape(len(array), -1), False
    raise ConfigError(f"{field} has shape {array.shape}: expected one observation of shape {shape} or a batch of "
                      f"shape (n, {', '.join(map(str, shape))})")


def _image_cnn(channels: int, height: int, width: int, features: int) -> nn.Module:
    if min(height, width) >= 36:  # Mnih et al. 2015 (SB3's NatureCNN)
        convs = [nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                 nn.Conv2d(64, 64, 3, stride=1), nn.ReLU()]
    else:  # small images (grid worlds, MinAtar-sized): two 3x3 layers keep the spatial detail
        convs = [nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                 nn.ReLU()]
    body = nn.Sequential(*convs, nn.Flatten())
    with torch.no_grad():
        n_flat = body(torch.zeros(1, channels, height, width)).shape[1]
    return nn.Sequential(body, nn.Linear(n_flat, features), nn.ReLU())


class ObservationEncoder(nn.Module):
    """Flat rows -> features: a CNN per image part, every other part passed through (see the module docstring)."""

    def __init__(self, space: gym.Space, image_features: int = 256):
        super().__init__()
        self.parts = layout(space)
        self.image_shapes: list[tuple[int, int, tuple[int, int, int], bool]] = []
        cnns = []
        for _, start, size, part in self.parts:
            if is_image(part):
                shape = tuple(part.shape)
                channels_last = shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4)
                c, h, w = (shape[2], shape[0], shape[1]) if channels_last else shape
                self.image_shapes.append((start, size, shape, channels_last))
                cnns.append(_image_cnn(c, h, w, image_features))
        self.cnns = nn.ModuleList(cnns)
        self.vector_index = torch.tensor([i for _, start, size, part in self.parts if not is_image(part)
                                          for i in range(start, start + size)], dtype=torch.long)
        self.out_dim = len(self.vector_index) + image_features * len(cnns)

    @property
    def has_images(self) -> bool:
        return len(self.cnns) > 0

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.has_images:
            return obs
        lead = obs.shape[:-1]
        flat = obs.reshape(-1, obs.shape[-1])
        features = [flat[:, self.vector_index]] if len(self.vector_index) else []
        for (start, size, shape, channels_last), cnn in zip(self.image_shapes, self.cnns):
            image = flat[:, start:start + size].reshape(-1, *shape) / 255.0
            features.append(cnn(image.permute(0, 3, 1, 2) if channels_last else image))
        return torch.cat(features, -1).reshape(*lead, -1)


def image_mask(space: gym.Space) -> torch.Tensor:
    """[flat_dim] True where the flattened row holds pixels."""
    mask = torch.zeros(flat_dim(space), dtype=torch.bool)
    for _, start, size, part in layout(space):
        if is_image(part):
            mask[start:start + size] = True
    return mask


class ObservationNormalizer(nn.Module):
    """Running per-dimension standardization with pending counts merged at `commit` (module docstring)."""

    def __init__(self, space: gym.Space, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        dim = flat_dim(space)
        self.clip, self.eps = clip, eps
        self.register_buffer("keep", image_mask(space))
        for name in ("mean", "pending_sum", "pending_sq"):
            self.register_buffer(name, torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("pending_count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def observe(self, obs: torch.Tensor) -> None:
        rows = obs.reshape(-1, obs.shape[-1]).double()
        self.pending_sum += rows.sum(0)
        self.pending_sq += rows.pow(2).sum(0)
        self.pending_count += rows.shape[0]

    @torch.no_grad()
    def commit(self) -> None:
        """Merge the pending observations into the statistics (Chan et al.'s parallel update)."""
        n_b = self.pending_count
        if n_b == 0:
            return
        mean_b = self.pending_sum / n_b
        var_b = (self.pending_sq / n_b - mean_b.pow(2)).clamp(min=0)
        n_a, total = self.count, self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self.var.copy_((self.var * n_a + var_b * n_b + delta.pow(2) * n_a * n_b / total) / total)
        self.count.copy_(total)
        for name in ("pending_sum", "pending_sq"):
            getattr(self, name).zero_()
        self.pending_count.zero_()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        scaled = ((obs.double() - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)
        return torch.where(self.keep, obs.double(), scaled).to(obs.dtype)


class ObservationInput:
    """What an online algorithm holds for its observations: the optional normalizer, the encoder, and the
    sizes its networks take."""

    def __init__(self, space: gym.Space, normalize: bool, algo: str):
        self.encoder = ObservationEncoder(space)
        self.normalizer = ObservationNormalizer(space) if normalize else None
        self.features = self.encoder.out_dim

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized (not encoded) observations; the encoder runs inside the networks that learn it."""
        return obs if self.normalizer is None else self.normalizer(obs)

    def observe(self, obs: torch.Tensor) -> None:
        if self.normalizer is not None:
            self.normalizer.observe(obs)

    def commit(self) -> None:
        if self.normalizer is not None:
            self.normalizer.commit()

    def state_dict(self) -> dict:
        """Keys to merge into the algorithm's state: none for a flat Box without normalization, so such
        checkpoints keep their old layout."""
        state = {}
        if self.normalizer is not None:
            state["obs_normalizer"] = self.normalizer.state_dict()
        if self.encoder.has_images:
            state["obs_encoder"] = self.encoder.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.normalizer is not None:
            self.normalizer.load_state_dict(state["obs_normalizer"])
        if self.encoder.has_images:
            self.encoder.load_state_dict(state["obs_encoder"])
