"""The optional Brax backend (policylab.envs.diff.brax_backend): Brax's own trajectory reproduced through the
DiffEnv interface, gradients across the torch / JAX boundary against finite differences, truncation, ILD on
a Brax task, and the errors (missing extra, unknown names, wrong shapes). Skipped where Brax is not
installed, except the missing-extra error, which is tested everywhere."""

import sys

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.envs.diff import rollout
from policylab.irl.ild import ILDConfig, ild

pytestmark = pytest.mark.xdist_group("brax")  # one worker pays JAX's compilation once
BATCH = 8  # one batch size throughout: JAX compiles the step and its VJP once per shape


def test_missing_extra_names_the_install_command(monkeypatch):
    from policylab.envs.diff import brax_backend

    monkeypatch.setitem(sys.modules, "brax", None)  # makes `from brax import envs` raise ImportError
    with pytest.raises(ConfigError, match=r"policylab\[brax\]"):
        brax_backend.import_brax()


@pytest.fixture(scope="module")
def pendulum():
    pytest.importorskip("brax")
    from policylab.envs.diff.brax_backend import BraxEnv

    return BraxEnv("inverted_pendulum")


def balance_and_move(obs: torch.Tensor, t: int | None = None) -> torch.Tensor:
    """A PD expert for Brax's cart-pole (q = [cart, hinge]): balance while moving the cart to 0.5."""
    cart, hinge, cart_speed, hinge_speed = obs.unbind(1)
    return ((cart - 0.5) + 5 * hinge + cart_speed + hinge_speed)[:, None].clamp(-1, 1)


def test_steps_reproduce_brax_own_rollout(pendulum):
    from policylab.envs.diff.brax_backend import import_brax

    jax, jnp, _ = import_brax()
    brax_state = pendulum.brax_env.reset(jax.random.PRNGKey(3))
    ours = torch.from_numpy(np.array(jnp.concatenate([brax_state.pipeline_state.q, brax_state.pipeline_state.qd])))
    ours = ours[None].repeat(BATCH, 1)
    brax_step = jax.jit(pendulum.brax_env.step)
    for t in range(50):
        action = 0.3 * (-1) ** (t // 10)  # a square wave: the pole swings well away from rest
        brax_state = brax_step(brax_state, jnp.array([action]))
        ours = pendulum.step(ours, torch.full((BATCH, 1), action))
    reference = np.array(jnp.concatenate([brax_state.pipeline_state.q, brax_state.pipeline_state.qd]))
    assert np.abs(reference).max() > 1.0
    np.testing.assert_allclose(ours[0].numpy(), reference, rtol=1e-3, atol=1e-4)


def test_transition_shapes_rewards_and_reset_distribution(pendulum):
    assert (pendulum.state_dim, pendulum.action_dim, pendulum.max_action) == (4, 1, 1.0)
    assert pendulum.dt == pytest.approx(0.04)
    starts = pendulum.initial_state(BATCH, seed=1)
    assert starts.shape == (BATCH, 4) and 0 < starts.abs().max() <= 0.01  # Brax's uniform +-0.01 reset
    assert not torch.equal(starts, pendulum.initial_state(BATCH, seed=2))
    nxt, reward = pendulum.transition(starts, torch.zeros(BATCH, 1))
    assert nxt.shape == (BATCH, 4) and torch.equal(reward, torch.ones(BATCH))  # +1 per step alive
    clipped, _ = pendulum.transition(starts, torch.full((BATCH, 1), 7.0))  # actions clip to [-1, 1]
    assert torch.equal(clipped, pendulum.transition(starts, torch.ones(BATCH, 1))[0])


def test_gradients_match_finite_differences_and_stop_at_truncation(pendulum):
    start = pendulum.initial_state(BATCH, seed=4).double()
    actions = torch.full((6, BATCH, 1), 0.2, dtype=torch.float64, requires_grad=True)

    def final_speed(acts, truncate=None):
        states, _ = rollout(pendulum, lambda obs, t: acts[t], start, 6, truncate)
        return states[:, -1, 2:].sum()

    (grad,) = torch.autograd.grad(final_speed(actions), actions)
    assert grad.dtype == torch.float64
    eps = 0.05
    for t, b in ((0, 0), (3, 1), (5, 0)):
        bump = torch.zeros_like(actions)
        bump[t, b, 0] = eps
        with torch.no_grad():
            numeric = (final_speed(actions + bump) - final_speed(actions - bump)) / (2 * eps)
        assert grad[t, b, 0].item() == pytest.approx(numeric.item(), rel=2e-2, abs=1e-3)
    assert grad.abs().min() > 0  # every action moves the final velocities
    (cut,) = torch.autograd.grad(final_speed(actions, truncate=3), actions)
    assert torch.all(cut[:3] == 0) and torch.all(cut[3:].abs() > 0)


def test_ild_lowers_its_objective_on_a_brax_task(pendulum):
    # 20 steps: on this unstable system, untruncated ILD at 40 steps did not lower its objective in our trials
    expert_states, expert_actions = rollout(pendulum, balance_and_move, pendulum.initial_state(BATCH, seed=0), 20)
    assert expert_states[0, -1, 0] > 0.05 and expert_states[0, :, 1].abs().max() < 0.2  # moving, upright

    def starts(n, generator):
        return 0.02 * torch.rand(n, 4, generator=generator) - 0.01

    cfg = ILDConfig(iterations=30, rollouts=BATCH, bc_steps=20, truncate_every=None)
    _, losses = ild(pendulum, expert_states[0], expert_actions[0], starts, cfg, seed=0)
    # the baseline is the warm-started (BC) policy of the same run, scored at its first iteration
    assert np.mean(losses[-5:]) < 0.9 * losses[0]


def test_bad_names_and_shapes_are_clear_errors():
    pytest.importorskip("brax")
    from policylab.envs.diff.brax_backend import BraxEnv

    with pytest.raises(ConfigError, match=r"BraxEnv.name = 'cheetah'.*inverted_pendulum"):
        BraxEnv("cheetah")
    with pytest.raises(ConfigError, match=r"BraxEnv.backend = 'bullet'.*generalized"):
        BraxEnv(backend="bullet")
    with pytest.raises(ConfigError, match="BraxEnv.n_frames = 0"):
        BraxEnv(n_frames=0)


def test_shape_and_cost_errors(pendulum):
    with pytest.raises(ConfigError, match=r"state shape \(2, 3\).*\[batch, 4\]"):
        pendulum.step(torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(ConfigError, match=r"action shape \(2, 2\)"):
        pendulum.step(torch.zeros(2, 4), torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="no per-state cost"):
        pendulum.cost(torch.zeros(2, 4))
    from policylab.envs.diff.brax_backend import BraxEnv

    upright = BraxEnv("inverted_pendulum", cost_fn=lambda state: state[:, 1].square())
    assert torch.equal(upright.cost(torch.tensor([[0.0, 0.5, 0.0, 0.0]])), torch.tensor([0.25]))
