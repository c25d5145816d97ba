"""Differentiable systems (policylab.envs.diff) and ILD (policylab.irl.ild): gradients through rollouts
and their truncation, the physics against gymnasium's CartPole, the swing-up expert, the Chamfer and
time-aligned objectives by hand, and ILD lowering its objective."""

import math

import gymnasium
import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.envs.diff import DiffCartPole, DiffPendulum, DiffPointMass, rollout
from policylab.irl.ild import ILDConfig, aligned_loss, chamfer_loss, ild


def test_gradients_flow_through_rollouts_and_stop_at_truncation():
    env = DiffPendulum()
    actions = torch.zeros(20, 1, requires_grad=True)
    start = torch.tensor([[0.3, 0.0]])
    for truncate, reaches_first in ((None, True), (5, False)):
        states, _ = rollout(env, lambda obs, t: actions[t][None], start, 20, truncate)
        (grad,) = torch.autograd.grad(states[0, -1, 0], actions)
        assert (grad[0].abs() > 0).item() == reaches_first  # the first action's effect crosses the cut or not
        assert grad[-1, 0] != 0  # the last action always matters
    with pytest.raises(ConfigError, match="truncate_every = 0"):
        rollout(env, lambda obs, t: actions[t][None], start, 2, 0)


def test_pendulum_falls_from_upright_and_conserves_energy_without_torque():
    env = DiffPendulum()
    states, _ = rollout(env, lambda obs, t: torch.zeros(1, 1), torch.tensor([[0.01, 0.0]]), 60)
    assert abs(states[0, -1, 0]) > 1.0  # upright is unstable
    energy = 0.5 * states[0, :, 1] ** 2 + env.gravity * torch.cos(states[0, :, 0])
    # semi-implicit Euler: the error oscillates with the swing (largest at the bottom) but does not accumulate
    assert float((energy - energy[0]).abs().max()) < 2.0 and float((energy[-1] - energy[0]).abs()) < 0.2


def test_cartpole_accelerations_match_gymnasium():
    gym_env = gymnasium.make("CartPole-v1").unwrapped
    gym_env.reset(seed=0)
    state = np.array([0.1, -0.2, 0.05, 0.3])
    gym_env.state = state.copy()
    gym_next, *_ = gym_env.step(1)  # force +10, explicit Euler with tau 0.02
    tau = 0.02
    ours = DiffCartPole().step(torch.from_numpy(state[None]), torch.tensor([[10.0]], dtype=torch.float64))
    # both update velocities by tau x acceleration from the same state
    assert ours[0, 1].item() == pytest.approx(gym_next[1], abs=1e-6)
    assert ours[0, 3].item() == pytest.approx(gym_next[3], abs=1e-6)
    assert ours[0, 0].item() == pytest.approx(state[0] + tau * gym_next[1], abs=1e-6)  # semi-implicit position


def test_point_mass_drag_and_clipping():
    env = DiffPointMass()
    nxt = env.step(torch.tensor([[0.0, 0.0, 1.0, 0.0]]), torch.tensor([[5.0, 0.0]]))  # action clipped to 1
    assert torch.allclose(nxt, torch.tensor([[0.1 * 1.05, 0.0, 1.05, 0.0]]))


def test_swing_up_expert_reaches_upright_from_hanging():
    env = DiffPendulum()
    states, actions = rollout(env, env.swing_up, torch.tensor([[math.pi, 0.0]]), 100)
    assert torch.cos(states[0, -30:, 0]).min() > 0.99 and actions.abs().max() <= env.max_action


def test_chamfer_forgives_timing_and_l2_does_not():
    expert = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    late = torch.tensor([[[0.0], [0.0], [1.0], [2.0]]])  # the same states one step late
    assert float(chamfer_loss(late, expert)) == pytest.approx(0.25, abs=1e-5)  # only 3 is never reached
    assert float(aligned_loss(late, expert)) == pytest.approx(0.75, abs=1e-5)  # every step one behind
    stuck = torch.zeros(1, 4, 1)
    # deviation 0 (stuck on an expert state); coverage (0 + 1 + 2 + 3) / 4
    assert float(chamfer_loss(stuck, expert)) == pytest.approx(1.5, abs=1e-5)
    assert float(chamfer_loss(stuck, expert, deviation_weight=0.0)) == pytest.approx(1.5, abs=1e-5)
    with pytest.raises(ConfigError, match="one length"):
        aligned_loss(late[:, :3], expert)


def test_ild_lowers_its_objective():
    env = DiffPendulum()
    expert_states, expert_actions = rollout(env, env.swing_up, torch.tensor([[math.pi, 0.0]]), 60)

    def starts(n, generator):
        return torch.stack([math.pi + 0.4 * torch.rand(n, generator=generator) - 0.2, torch.zeros(n)], 1)

    cfg = ILDConfig(iterations=40, rollouts=8, bc_steps=200, truncate_every=None)
    _, losses = ild(env, expert_states[0], expert_actions[0], starts, cfg, seed=0)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    with pytest.raises(ConfigError, match="ILDConfig.objective = 'dtw'"):
        ILDConfig(objective="dtw")
