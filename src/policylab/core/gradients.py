"""Gradient surgery on flat parameter vectors: take the gradients of several losses separately,
combine them as vectors, write the result back (ODICE's orthogonal update; PCGrad-like rules)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def flat_grad(loss: torch.Tensor, params: Sequence[torch.Tensor], retain_graph: bool = False) -> torch.Tensor:
    """d loss / d params as one vector (zeros for parameters the loss does not reach)."""
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def orthogonal_part(vector: torch.Tensor, direction: torch.Tensor, floor: float = 1e-10) -> torch.Tensor:
    """vector - (<vector, direction> / max(||direction||^2, floor)) direction: the component of `vector`
    in the normal plane of `direction` (all of `vector` when `direction` is 0)."""
    coef = torch.dot(vector, direction) / torch.dot(direction, direction).clamp(min=floor)
    return vector - coef * direction


def write_grad(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Set each parameter's .grad from its slice of `flat`."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n
    if offset != flat.numel():
        raise ValueError(f"the flat gradient has {flat.numel()} entries, the parameters {offset}")
