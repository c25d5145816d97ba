"""Network blocks shared by every pillar: MLPs, vectorized ensembles, policy heads, init."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from policylab.core.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU}


def activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def orthogonal_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


MAX_NETWORK_PARAMETERS = 200_000_000
"""The most parameters one MLP (all ensemble members together) may have: 0.8 GB in float32, before Adam's two
moments triple it. Checked before anything is allocated, so that a width each within its bound, but many of
them, fails with one line instead of filling the machine."""


def check_network_size(dims: Sequence[int], members: int = 1) -> int:
    """The parameter count of an MLP through `dims` (weights and biases, times `members`); a ConfigError past
    `MAX_NETWORK_PARAMETERS`."""
    count = members * sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
    if count > MAX_NETWORK_PARAMETERS:
        raise ConfigError(f"a network with layer sizes {tuple(dims)}{f' x {members} members' if members > 1 else ''} "
                          f"has {count:,} parameters: the most allowed is {MAX_NETWORK_PARAMETERS:,} (make `hidden` "
                          "narrower or shorter)")
    return count


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256), act: str = "relu",
        orthogonal: bool = False, out_gain: float = 1.0, layer_norm: bool = False) -> nn.Sequential:
    """Linear-activation stack. `orthogonal` uses PPO's init (sqrt 2 hidden, `out_gain` last);
    `layer_norm` normalizes each hidden layer before its activation."""
    check_network_size([in_dim, *hidden, out_dim])
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        linear = nn.Linear(a, b)
        layers += [orthogonal_init(linear) if orthogonal else linear, *([nn.LayerNorm(b)] if layer_norm else []),
                   activation(act)()]
    last = nn.Linear(dims[-1], out_dim)
    layers.append(orthogonal_init(last, out_gain) if orthogonal else last)
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """N independent linear layers applied with one batched matmul.

    Input (N, B, in) or (B, in) broadcast to every member; output (N, B, out).
    """

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        self.n, self.in_dim, self.out_dim = n, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # same as nn.Linear's default, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.n, -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)

    @torch.no_grad()
    def orthogonal_(self, gains: float | Sequence[float], bias: float = 0.0) -> EnsembleLinear:
        """Orthogonal init per member (PPO's init), with one gain per member or one for all."""
        gains = [gains] * self.n if isinstance(gains, (int, float)) else list(gains)
        for member, gain in zip(self.weight, gains, strict=True):
            member.copy_(nn.init.orthogonal_(torch.empty(self.out_dim, self.in_dim), gain).T)
        self.bias.fill_(bias)
        return self

    def extra_repr(self) -> str:
        return f"n={self.n}, in_dim={self.in_dim}, out_dim={self.out_dim}"


class EnsembleMLP(nn.Module):
    """N MLPs of the same shape evaluated together: (B, in) or (N, B, in) -> (N, B, out)."""

    def __init__(self, n: int, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256),
                 act: str = "relu", orthogonal: bool = False, out_gain: float | Sequence[float] = 1.0):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        check_network_size(dims, n)
        self.layers = nn.ModuleList(EnsembleLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:]))
        if orthogonal:  # PPO's init: sqrt(2) on hidden layers, `out_gain` (per member) on the last
            for layer in self.layers[:-1]:
                layer.orthogonal_(math.sqrt(2))
            self.layers[-1].orthogonal_(out_gain)
        self.act = activation(act)()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


class CategoricalHead(nn.Module):
    """Logits -> torch Categorical."""

    def forward(self, logits: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=logits, validate_args=False)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent learned log-std (PPO's continuous head)."""

    def __init__(self, act_dim: int, init_log_std: float = 0.0):
        super().__init__()
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))

    def forward(self, mean: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)


class TanhGaussianHead(nn.Module):
    """Squashed Gaussian (SAC): splits (mean, log_std), samples with the tanh log-det correction."""

    def __init__(self, log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, params: torch.Tensor, deterministic: bool = False, with_pre_tanh: bool = False
                ) -> tuple[torch.Tensor, ...]:
        """Return (action in [-1, 1], log-prob summed over action dims[, the pre-tanh sample])."""
        mean, log_std = params.chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        std = log_std.exp()
        pre_tanh = mean if deterministic else mean + std * torch.randn_like(mean)
        out = torch.tanh(pre_tanh), self._log_prob(mean, log_std, std, pre_tanh)
        return (*out, pre_tanh) if with_pre_tanh else out

    def log_prob(self, params: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        """log pi(tanh(u)) for the pre-tanh value u under the distribution `params` (any policy's)."""
        mean, log_std = params.chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        return self._log_prob(mean, log_std, log_std.exp(), pre_tanh)

    @staticmethod
    def _log_prob(mean: torch.Tensor, log_std: torch.Tensor, std: torch.Tensor, pre_tanh: torch.Tensor
                  ) -> torch.Tensor:
        # one std tensor shared with the sample, as before log_prob existed: SAC / CQL runs stay bit-identical
        normal_log_prob = (-0.5 * ((pre_tanh - mean) / std) ** 2 - log_std
                           - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), the numerically stable form
        log_det = (2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
        return normal_log_prob - log_det


def adam(params, lr: float, *, decoupled: bool = False, **kwargs) -> torch.optim.Optimizer:
    """Adam (AdamW when `decoupled`, its weight decay kept out of the moments) with the fused kernel (one pass over
    all tensors) where torch has it, else foreach.

    With small networks an optimizer step is dominated by per-tensor dispatch; the fused CPU
    kernel removes most of it.
    """
    params = list(params)
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    try:
        return kind(params, lr=lr, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return kind(params, lr=lr, foreach=True, **kwargs)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging target <- (1 - tau) target + tau source, in one fused op per tensor list."""
    with torch.no_grad():
        t_params = list(target.parameters())
        s_params = list(source.parameters())
        torch._foreach_lerp_(t_params, s_params, tau)
