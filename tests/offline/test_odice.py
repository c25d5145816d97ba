"""O-DICE (policylab.offline.odice) and the gradient surgery it uses (policylab.core.gradients):
the projection on hand-made vectors, f* by hand, each update rule against autograd of its loss."""

import math

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.core.gradients import flat_grad, orthogonal_part, write_grad
from policylab.offline import ODICE, ODICEConfig, train_offline
from policylab.offline.odice import f_prime_inverse, f_star


def test_projection_is_orthogonal_to_the_forward_gradient():
    g = torch.Generator().manual_seed(0)
    forward, backward = torch.randn(50, generator=g), torch.randn(50, generator=g)
    part = orthogonal_part(backward, forward)
    assert torch.dot(part, forward).abs() < 1e-5
    assert torch.allclose(part + torch.dot(backward, forward) / forward.square().sum() * forward, backward, atol=1e-6)


def test_conflicting_and_aligned_backward_gradients():
    forward = torch.tensor([1.0, 0.0, 0.0])
    perpendicular = torch.tensor([0.0, 2.0, -1.0])
    # conflicting: the backward gradient points against the forward one; only its perpendicular part survives
    assert torch.allclose(orthogonal_part(-3.0 * forward + perpendicular, forward), perpendicular)
    # aligned: nothing is added, the update is the forward gradient alone
    assert torch.allclose(orthogonal_part(2.5 * forward, forward), torch.zeros(3))
    # already orthogonal: the plain sum (true gradient) and the orthogonal update agree
    assert torch.allclose(orthogonal_part(perpendicular, forward), perpendicular)


def test_a_vanishing_forward_gradient_keeps_the_backward_one():
    backward = torch.tensor([1.0, -2.0])
    assert torch.allclose(orthogonal_part(backward, torch.zeros(2)), backward)


def test_flat_gradients_round_trip_and_unused_parameters_get_zeros():
    a, b = torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.tensor([[3.0]]))
    g = flat_grad((a.square()).sum(), [a, b])
    assert g.tolist() == [2.0, 4.0, 0.0]
    write_grad([a, b], torch.tensor([5.0, 6.0, 7.0]))
    assert a.grad.tolist() == [5.0, 6.0] and b.grad.tolist() == [[7.0]]
    with pytest.raises(ValueError, match="flat gradient"):
        write_grad([a, b], torch.zeros(4))


def test_pearson_conjugate_by_hand():
    y = torch.tensor([-4.0, -2.0, 0.0, 2.0])
    # y + y^2/4 above -2, -1 below: -1, -1, 0, 3
    assert torch.allclose(f_star(y, "pearson_chi2"), torch.tensor([-1.0, -1.0, 0.0, 3.0]))
    assert torch.allclose(f_star(torch.tensor([1.0]), "reverse_kl"), torch.tensor([1.0]))
    assert torch.allclose(f_prime_inverse(torch.tensor([-1.0, 0.5]), "pearson_chi2"), torch.tensor([0.0, 0.5]))
    assert f_prime_inverse(torch.tensor([2.0]), "reverse_kl").item() == pytest.approx(math.e)


class FakePrepared:
    """Just what ODICE reads: the prepared data's shapes and the raw episode returns."""

    def __init__(self):
        self.data = type("D", (), {"observations": torch.zeros(1, 3), "actions": torch.zeros(1, 2),
                                   "discrete": False, "metadata": {"name": "fake"}})()
        self.raw = type("R", (), {"episode_returns": staticmethod(lambda: torch.tensor([0.0, 10.0]))})()


def batch(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    return {"observations": torch.randn(n, 3, generator=g), "next_observations": torch.randn(n, 3, generator=g),
            "actions": torch.rand(n, 2, generator=g) * 2 - 1, "rewards": torch.randn(n, generator=g),
            "terminals": (torch.rand(n, generator=g) < 0.1).float()}


def make(update, **kw):
    torch.manual_seed(0)
    algo = ODICE(FakePrepared(), ODICEConfig(hidden=(16, 16), update=update, **kw))
    with torch.no_grad():  # a target that differs from the online net, so the rules differ
        for p in algo.value_target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return algo


def autograd_of(algo, loss_fn, b):
    params = list(algo.value.parameters())
    return flat_grad(loss_fn(algo, b), params)


def parts(algo, b):
    cfg = algo.cfg
    r, disc = b["rewards"] * algo.reward_scale, cfg.gamma * (1 - b["terminals"])
    v, v_next = algo.value(b["observations"]).squeeze(-1), algo.value(b["next_observations"]).squeeze(-1)
    with torch.no_grad():
        tv, tv_next = (algo.value_target(b[k]).squeeze(-1) for k in ("observations", "next_observations"))
    return r, disc, v, v_next, tv, tv_next


def test_semi_gradient_is_the_forward_loss_gradient():
    algo, b = make("semi"), batch()

    def loss(a, b):
        r, disc, v, _, _, tv_next = parts(a, b)
        return (1 - a.cfg.lam) * v.mean() + a.cfg.lam * f_star(r + disc * tv_next - v, "pearson_chi2").mean()

    grad, _, _ = algo.value_gradient(b)
    assert torch.allclose(grad, autograd_of(algo, loss, b), atol=1e-6)


def test_true_gradient_is_the_full_dual_gradient():
    algo, b = make("true"), batch(1)

    def loss(a, b):
        r, disc, v, v_next, _, _ = parts(a, b)
        return (1 - a.cfg.lam) * v.mean() + a.cfg.lam * f_star(r + disc * v_next - v, "pearson_chi2").mean()

    grad, _, _ = algo.value_gradient(b)
    assert torch.allclose(grad, autograd_of(algo, loss, b), atol=1e-6)


def test_orthogonal_update_adds_only_the_perpendicular_backward_part():
    b = batch(2)
    orth, semi = make("orthogonal", eta=1.0), make("semi")
    g_orth, _, info = orth.value_gradient(b)
    g_semi, _, _ = semi.value_gradient(b)
    added = g_orth - g_semi  # = the projected backward gradient

    def forward_loss(a, b):
        r, disc, v, _, _, tv_next = parts(a, b)
        return a.cfg.lam * f_star(r + disc * tv_next - v, "pearson_chi2").mean()

    g_fwd = autograd_of(orth, forward_loss, b)
    assert added.abs().sum() > 0 and torch.dot(added, g_fwd).abs() < 1e-4 * added.norm() * g_fwd.norm()
    assert -1.0 <= info["grad_cosine"].item() <= 1.0
    g_eta0, _, _ = make("orthogonal", eta=0.0).value_gradient(b)
    assert torch.allclose(g_eta0, g_semi, atol=1e-7)  # eta = 0: O-DICE is the semi-gradient learner


def test_policy_weights_are_the_clipped_relu_of_the_forward_residual():
    algo, b = make("orthogonal"), batch(3)
    b["rewards"] = torch.linspace(-1, 1, 32) * 1000  # residuals far beyond the clip
    metrics = algo.update(b)
    assert 0 < metrics["weight_zero_frac"] < 1 and metrics["weight"] <= 100


def test_bad_fields_are_named():
    with pytest.raises(ConfigError, match="update"):
        ODICEConfig(update="orthogonal_true_g")
    with pytest.raises(ConfigError, match="divergence"):
        ODICEConfig(divergence="chi2")
    with pytest.raises(ConfigError, match="lam"):
        ODICEConfig(lam=1.0)


@pytest.mark.xdist_group("pendulum-data")
def test_trains_through_the_offline_trainer(datasets, tmp_path):
    summary = train_offline(ODICE, ODICEConfig(hidden=(32, 32)), env_id=datasets["pendulum-mix10"], seed=0, steps=50,
                            evals=1, eval_episodes=1, progress=False)
    assert math.isfinite(summary["eval"]["eval/return"])
