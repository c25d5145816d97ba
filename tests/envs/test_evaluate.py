"""Evaluation helpers (policylab.envs.evaluate): per-episode returns, the lower-tail risk measure,
noisy observations and perturbed MuJoCo starts."""

import numpy as np
import pytest

from policylab.envs.evaluate import NoisyObservations, PerturbedStart, RandomAgent, episode_returns, lower_tail
from policylab.envs.factory import make_env


def test_lower_tail_is_the_interpolated_quantile():
    assert lower_tail(np.arange(11.0), 0.1) == pytest.approx(1.0)
    assert lower_tail(np.array([5.0, 1.0, 3.0]), 0.5) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="fraction"):
        lower_tail(np.ones(3), 1.0)


def test_noisy_observations_have_the_asked_std_per_dimension():
    class Echo:
        def act(self, obs, deterministic=True):
            return obs

    obs = np.zeros((2000, 2), np.float32)
    seen = NoisyObservations(Echo(), np.array([0.1, 2.0]), seed=0).act(obs)
    assert np.allclose(seen.std(0), [0.1, 2.0], rtol=0.1) and seen.dtype == np.float32


def test_perturbed_start_moves_the_initial_state_and_is_seeded():
    env_id = "InvertedDoublePendulum-v5"
    reference = make_env(env_id)
    plain, _ = reference.reset(seed=3)
    wrapped = PerturbedStart(make_env(env_id), 0.2)
    first, _ = wrapped.reset(seed=3)
    again, _ = PerturbedStart(make_env(env_id), 0.2).reset(seed=3)
    inner = wrapped.unwrapped
    assert np.array_equal(first, again) and not np.allclose(first, plain)
    assert np.allclose(first, inner._get_obs())  # the observation is the perturbed state's
    noise = np.random.default_rng(3 + 7_919).normal(0.0, 0.2, inner.model.nq + inner.model.nv)
    shift = np.concatenate([inner.data.qpos - reference.unwrapped.data.qpos,
                            inner.data.qvel - reference.unwrapped.data.qvel])
    assert np.allclose(shift, noise, atol=1e-9)  # N(0, 0.2^2) on top of the env's own reset
    agent = RandomAgent(wrapped.action_space, 0)
    returns = episode_returns(agent, env_id, 3, seed=0, start_noise=0.2)
    assert returns.shape == (3,) and np.all(np.isfinite(returns))


def test_perturbed_start_refuses_a_non_mujoco_env():
    with pytest.raises(ValueError, match="start_noise needs a MuJoCo environment.*Pendulum-v1"):
        PerturbedStart(make_env("Pendulum-v1"), 0.1)
