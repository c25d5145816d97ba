"""Ensembles equal their members run one by one; the squashed Gaussian's log-prob is right."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from policylab.core.nn import (
    EnsembleLinear,
    EnsembleMLP,
    GaussianHead,
    TanhGaussianHead,
    activation,
    mlp,
    soft_update,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_ensemble_linear_broadcast_input_equals_per_member_matmul():
    layer = EnsembleLinear(3, 5, 4)
    x = torch.randn(6, 5)
    out = layer(x)
    assert out.shape == (3, 6, 4)
    for i in range(3):
        expected = x @ layer.weight[i] + layer.bias[i]
        assert torch.allclose(out[i], expected, atol=1e-6)


def test_ensemble_linear_per_member_input_equals_per_member_matmul():
    layer = EnsembleLinear(3, 5, 4)
    x = torch.randn(3, 6, 5)
    out = layer(x)
    assert out.shape == (3, 6, 4)
    for i in range(3):
        expected = x[i] @ layer.weight[i] + layer.bias[i]
        assert torch.allclose(out[i], expected, atol=1e-6)
    # members differ, so the same input gives different outputs per member
    assert not torch.allclose(out[0], x[0] @ layer.weight[1] + layer.bias[1])


def test_ensemble_linear_init_is_within_nn_linear_bound():
    layer = EnsembleLinear(4, 16, 3)
    bound = 1.0 / math.sqrt(16)
    assert layer.weight.shape == (4, 16, 3)
    assert layer.bias.shape == (4, 1, 3)
    assert layer.weight.abs().max() <= bound
    assert layer.bias.abs().max() <= bound
    assert "n=4, in_dim=16, out_dim=3" in repr(layer)


def _member_forward(model: EnsembleMLP, i: int, x: torch.Tensor) -> torch.Tensor:
    for k, layer in enumerate(model.layers):
        x = x @ layer.weight[i] + layer.bias[i]
        if k < len(model.layers) - 1:
            x = torch.relu(x)
    return x


def test_ensemble_mlp_equals_each_member_run_separately():
    model = EnsembleMLP(4, 5, 2, hidden=(7, 6))
    x = torch.randn(9, 5)
    out = model(x)
    assert out.shape == (4, 9, 2)
    for i in range(4):
        assert torch.allclose(out[i], _member_forward(model, i, x), atol=1e-5)
    xs = torch.randn(4, 9, 5)
    out = model(xs)
    for i in range(4):
        assert torch.allclose(out[i], _member_forward(model, i, xs[i]), atol=1e-5)


def test_gradient_of_one_member_reaches_only_its_slice():
    layer = EnsembleLinear(3, 5, 4)
    layer(torch.randn(6, 5))[1].sum().backward()
    for i in (0, 2):
        assert torch.count_nonzero(layer.weight.grad[i]) == 0
        assert torch.count_nonzero(layer.bias.grad[i]) == 0
    assert torch.count_nonzero(layer.weight.grad[1]) > 0
    assert torch.allclose(layer.bias.grad[1], torch.full((1, 4), 6.0))


def test_gradient_isolation_through_an_ensemble_mlp():
    model = EnsembleMLP(3, 4, 1, hidden=(8,), act="tanh")
    model(torch.randn(10, 4))[2].pow(2).sum().backward()
    for layer in model.layers:
        assert torch.count_nonzero(layer.weight.grad[:2]) == 0
        assert torch.count_nonzero(layer.bias.grad[:2]) == 0
        assert torch.count_nonzero(layer.weight.grad[2]) > 0


def _brute_log_prob(mean, log_std, u):
    normal = torch.distributions.Normal(mean, log_std.exp())
    return (normal.log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)


def test_tanh_gaussian_log_prob_matches_brute_force():
    head = TanhGaussianHead()
    mean = torch.randn(64, 3) * 0.5
    log_std = torch.rand(64, 3) * 1.5 - 1.5  # in [-1.5, 0]
    params = torch.cat([mean, log_std], dim=-1).double()
    mean, log_std = mean.double(), log_std.double()
    torch.manual_seed(123)
    noise = torch.randn_like(mean)
    torch.manual_seed(123)
    action, log_prob = head(params)
    u = mean + log_std.exp() * noise
    assert action.shape == (64, 3)
    assert log_prob.shape == (64,)
    assert torch.allclose(action, torch.tanh(u), atol=1e-10)
    assert torch.allclose(log_prob, _brute_log_prob(mean, log_std, u), atol=1e-4)


def test_tanh_gaussian_clamps_log_std():
    head = TanhGaussianHead(log_std_min=-2.0, log_std_max=0.5)
    mean = torch.zeros(5, 2, dtype=torch.float64)
    raw_log_std = torch.tensor([[3.0, -7.0]] * 5, dtype=torch.float64)
    torch.manual_seed(5)
    noise = torch.randn_like(mean)
    torch.manual_seed(5)
    _, log_prob = head(torch.cat([mean, raw_log_std], dim=-1))
    clamped = torch.tensor([[0.5, -2.0]] * 5, dtype=torch.float64)
    u = mean + clamped.exp() * noise
    assert torch.allclose(log_prob, _brute_log_prob(mean, clamped, u), atol=1e-4)


def test_tanh_gaussian_actions_stay_in_bounds_and_log_prob_is_finite():
    head = TanhGaussianHead()
    params = torch.cat([torch.randn(256, 4) * 5, torch.full((256, 4), 2.0)], dim=-1)
    action, log_prob = head(params)
    assert action.abs().max() <= 1.0
    assert torch.isfinite(log_prob).all()


def test_tanh_gaussian_deterministic_returns_tanh_of_mean():
    head = TanhGaussianHead()
    mean = torch.tensor([[0.3, -1.2], [2.0, 0.0]], dtype=torch.float64)
    log_std = torch.tensor([[-0.5, 0.1], [0.0, -1.0]], dtype=torch.float64)
    action, log_prob = head(torch.cat([mean, log_std], dim=-1), deterministic=True)
    assert torch.allclose(action, torch.tanh(mean))
    assert torch.allclose(log_prob, _brute_log_prob(mean, log_std, mean), atol=1e-6)
    again, _ = head(torch.cat([mean, log_std], dim=-1), deterministic=True)
    assert torch.equal(action, again)


def test_gaussian_head_uses_learned_log_std():
    head = GaussianHead(2, init_log_std=math.log(0.5))
    dist = head(torch.zeros(3, 2))
    assert torch.allclose(dist.stddev, torch.full((3, 2), 0.5))


def test_soft_update_tau_one_copies_and_tau_zero_keeps():
    source, target = nn.Linear(4, 3), nn.Linear(4, 3)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, source, 0.0)
    for t, b in zip(target.parameters(), before, strict=True):
        assert torch.equal(t, b)
    soft_update(target, source, 1.0)
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        assert torch.allclose(t, s)


def test_soft_update_intermediate_tau_is_polyak_average():
    source, target = nn.Linear(4, 3), nn.Linear(4, 3)
    expected = [0.75 * t.detach() + 0.25 * s.detach()
                for t, s in zip(target.parameters(), source.parameters(), strict=True)]
    soft_update(target, source, 0.25)
    for t, e in zip(target.parameters(), expected, strict=True):
        assert torch.allclose(t, e, atol=1e-6)
    assert all(p.requires_grad for p in target.parameters())  # updated in place, still trainable


def _linears(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


def _is_scaled_orthogonal(weight: torch.Tensor, gain: float) -> bool:
    w = weight.detach().double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.allclose(gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5)


def test_mlp_orthogonal_init_gives_orthogonal_weights():
    net = mlp(6, 3, hidden=(8, 4), act="tanh", orthogonal=True, out_gain=0.01)
    layers = _linears(net)
    assert [(lin.in_features, lin.out_features) for lin in layers] == [(6, 8), (8, 4), (4, 3)]
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert _is_scaled_orthogonal(layers[0].weight, math.sqrt(2))
    assert _is_scaled_orthogonal(layers[1].weight, math.sqrt(2))
    assert _is_scaled_orthogonal(layers[2].weight, 0.01)
    for lin in layers:
        assert torch.count_nonzero(lin.bias) == 0


def test_mlp_default_init_is_not_orthogonal():
    layers = _linears(mlp(6, 3, hidden=(8, 4)))
    assert not _is_scaled_orthogonal(layers[0].weight, math.sqrt(2))
    assert torch.count_nonzero(layers[0].bias) > 0


def test_unknown_activation_is_refused():
    assert activation("relu") is nn.ReLU
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        mlp(2, 2, act="swish")


def test_ensemble_orthogonal_init_gives_each_member_its_own_gain():
    layer = EnsembleLinear(2, 16, 4).orthogonal_((0.01, 1.0), bias=0.0)
    for member, gain in zip(layer.weight, (0.01, 1.0)):
        gram = member.T @ member  # (out, out): orthonormal output directions scaled by gain^2
        assert torch.allclose(gram, gain**2 * torch.eye(4), atol=1e-5)
    assert torch.count_nonzero(layer.bias) == 0
