"""MBRCSL (policylab.offline.mbrcsl) and its parts: the diffusion behaviour policy (exact sampler on a
point mass, two modes kept where regression averages them), the dynamics ensemble (hold-out early
stopping, elites), and the rollout filter with stub models (threshold, returns-to-go, support guard,
fallback)."""

import json
import math

import numpy as np
import pytest
import torch

from policylab.core.config import load_config
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.data import Episode, load_dataset, save_dataset
from policylab.offline import mbrcsl as M
from policylab.offline.diffusion import DiffusionConfig, DiffusionPolicy, cosine_alpha_bars, fit_diffusion_policy
from policylab.offline.dynamics import DynamicsConfig, DynamicsEnsemble, fit_dynamics


def test_cosine_schedule_decreases_inside_the_unit_interval():
    bars = cosine_alpha_bars(10)
    assert bars.shape == (10,) and torch.all(bars[1:] < bars[:-1]) and 0 < bars[-1] < bars[0] < 1
    assert bars[0] > 0.9 and bars[-1] < 0.01  # nearly clean first, nearly pure noise last


def test_sampler_recovers_a_point_mass_with_the_exact_denoiser():
    policy = DiffusionPolicy(1, 2, DiffusionConfig(steps=5, hidden=(4,)))
    target = torch.tensor([0.3, -0.7])

    def exact_noise(obs, noisy, k):  # eps = (a_k - sqrt(abar) a_0) / sqrt(1 - abar) when a_0 is known
        abar = policy.alpha_bars[k][:, None]
        return (noisy - abar.sqrt() * target) / (1 - abar).sqrt()

    policy.predict_noise = exact_noise
    out = policy.sample(torch.zeros(6, 1), torch.Generator().manual_seed(0))
    assert torch.allclose(out, target.expand(6, 2), atol=1e-5)


def test_diffusion_keeps_both_modes_where_regression_averages_them():
    g = torch.Generator().manual_seed(0)
    obs = torch.zeros(4096, 1)
    actions = torch.where(torch.rand(4096, 1, generator=g) < 0.5, -0.8, 0.8)
    policy, _ = fit_diffusion_policy(obs, actions, DiffusionConfig(hidden=(64, 64), train_steps=1500), seed=0)
    samples = policy.sample(torch.zeros(1000, 1), torch.Generator().manual_seed(1)).flatten()
    regression = float(actions.mean())  # what a unimodal MSE policy converges to: between the modes
    assert abs(regression) < 0.1
    assert (samples.abs() < 0.4).float().mean() < 0.15  # few samples in the gap
    assert 0.3 < (samples > 0).float().mean() < 0.7  # both modes drawn


def linear_system(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 2, generator=g)
    actions = torch.rand(n, 1, generator=g) * 2 - 1
    nxt = obs + 0.1 * torch.cat([actions, -actions], 1)
    return obs, actions, nxt, obs[:, 0].clone()


def test_dynamics_fit_learns_a_linear_system_and_stops_early():
    obs, actions, nxt, rewards = linear_system()
    cfg = DynamicsConfig(ensemble=3, elites=2, hidden=(32, 32), weight_decay=(0.0, 0.0, 0.0), epoch_steps=100,
                         max_epochs=60, patience=3)
    model, info = fit_dynamics(obs, actions, nxt, rewards, cfg, seed=0)
    assert info["dynamics/holdout_mse"] < 0.01 and info["dynamics/epochs"] < 60
    assert model.elite_index.shape == (2,)
    mse = model.member_mse(obs[:500], actions[:500], torch.cat([nxt - obs, rewards[:, None]], 1)[:500])
    assert set(model.elite_index.tolist()) == set(mse.argsort()[:2].tolist()) or mse.max() - mse.min() < 1e-3
    s2, r, spread = model.step(obs[:5], actions[:5], torch.Generator().manual_seed(0))
    assert s2.shape == (5, 2) and r.shape == (5,) and spread.shape == (5,)
    assert torch.allclose(s2, nxt[:5], atol=0.15) and torch.allclose(r, rewards[:5], atol=0.3)


def test_step_samples_only_elites():
    model = DynamicsEnsemble(1, 1, DynamicsConfig(ensemble=3, elites=1, hidden=(4,), weight_decay=(0.0, 0.0)))
    with torch.no_grad():
        for layer in model.net.layers:
            layer.weight.zero_()
            layer.bias.zero_()
        model.net.layers[-1].bias[1, 0, :2] = torch.tensor([5.0, 7.0])  # member 1: s' - s = 5, r = 7
        model.net.layers[-1].bias[:, 0, 2:] = -100.0  # log-variances at their floor
    model.elite_index = torch.tensor([1])
    s2, r, _ = model.step(torch.zeros(8, 1), torch.zeros(8, 1), torch.Generator().manual_seed(0))
    assert torch.allclose(s2, torch.full((8, 1), 5.0), atol=0.05) and torch.allclose(r, torch.full((8,), 7.0),
                                                                                       atol=0.05)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="DynamicsConfig.elites = 8"):
        DynamicsConfig(ensemble=7, elites=8)
    with pytest.raises(ConfigError, match="weight_decay has 2 entries"):
        M.MBRCSLConfig(dynamics_weight_decay=(0.0, 0.0))


# -- the filter, with stub models ------------------------------------------------------------------

def line_dataset(tmp_path, returns_per_step=(0.1, 0.2), terminal=False):
    """1-D Pendulum-shaped data (3 states) whose episodes earn a constant reward per step."""
    episodes = []
    for i, per_step in enumerate(returns_per_step):
        T = 5
        obs = np.full((T + 1, 3), float(i), np.float32) + np.arange(T + 1, dtype=np.float32)[:, None] * 0.1
        episodes.append(Episode(obs, np.zeros((T, 1), np.float32), np.full(T, per_step, np.float32),
                                np.array([False] * (T - 1) + [terminal]), np.array([False] * (T - 1) + [not terminal])))
    return load_dataset(save_dataset(tmp_path / "d", episodes, {"env_id": "Pendulum-v1", "ref_min_score": 0.0,
                                                                  "ref_max_score": 1.0}))


class StubBehaviour:
    def sample(self, obs, generator=None):
        return torch.full((obs.shape[0], 1), 0.5)


class StubDynamics:
    """Moves every state by +0.01 (standardized units) and pays `reward` per step; rows with a first
    coordinate above `diverge_above` jump far away instead."""

    def __init__(self, reward, diverge_above=None):
        self.reward, self.diverge_above = reward, diverge_above

    def step(self, obs, action, generator=None):
        nxt = obs + 0.01
        if self.diverge_above is not None:
            nxt = torch.where(obs[:, :1] > self.diverge_above, obs + 100.0, nxt)
        return nxt, torch.full((obs.shape[0],), self.reward), torch.zeros(obs.shape[0])


def with_stubs(monkeypatch, dynamics):
    monkeypatch.setattr(M, "fit_dynamics", lambda *a, **k: (dynamics, {}))
    monkeypatch.setattr(M, "fit_diffusion_policy", lambda *a, **k: (StubBehaviour(), {}))


def test_filter_keeps_rollouts_above_the_best_return_with_returns_to_go(tmp_path, monkeypatch):
    data = line_dataset(tmp_path)  # best episode return 5 x 0.2 = 1.0
    with_stubs(monkeypatch, StubDynamics(reward=0.3))  # every rollout: 5 x 0.3 = 1.5 > 1.0
    rollouts, info = M.stitch(data, M.MBRCSLConfig(rollout_batch=4, keep=6), seed=0)
    assert info["mbrcsl/kept"] == 8 and info["mbrcsl/rollout_batches"] == 2  # whole batches until >= 6
    assert rollouts.num_episodes == 8 and len(rollouts) == 40
    assert torch.allclose(rollouts.episode_returns(), torch.full((8,), 1.5, dtype=torch.float64))
    from policylab.offline.rcsl import returns_to_go
    assert torch.allclose(returns_to_go(rollouts)[:5], torch.tensor([1.5, 1.2, 0.9, 0.6, 0.3]))
    # env units: starts are the data's initial states, each step +0.01 standardized = +0.01 std in env units
    std = data.observations.std(0).clamp(min=1e-3)
    first = rollouts.observations[:5]
    assert torch.allclose(first[1:] - first[:-1], (0.01 * std).expand(4, 3), atol=1e-5)
    assert any(torch.allclose(first[0], data.observations[s]) for s in data.episode_starts[:-1])
    assert torch.all(rollouts.timeouts.view(8, 5)[:, -1] == 1) and rollouts.terminals.sum() == 0
    assert rollouts.actions.shape == (40, 1) and torch.allclose(rollouts.actions, torch.full((40, 1), 1.0))  # 0.5 * 2


def test_filter_discards_rollouts_that_leave_the_data(tmp_path, monkeypatch):
    data = line_dataset(tmp_path)
    with_stubs(monkeypatch, StubDynamics(reward=0.3, diverge_above=0.0))  # the second episode's start diverges
    rollouts, info = M.stitch(data, M.MBRCSLConfig(rollout_batch=50, keep=1, max_rollout_batches=1), seed=0)
    assert 0 < info["mbrcsl/left_support"] < 1
    assert rollouts.observations.abs().max() < 10  # no diverged rollout kept
    _, unguarded = M.stitch(data, M.MBRCSLConfig(rollout_batch=50, keep=1, max_rollout_batches=1,
                                                 support_margin=None), seed=0)
    assert unguarded["mbrcsl/left_support"] == 0


def test_nothing_above_the_data_falls_back_to_the_data(tmp_path, monkeypatch):
    data = line_dataset(tmp_path)
    with_stubs(monkeypatch, StubDynamics(reward=0.1))  # 0.5 < 1.0: nothing kept
    rollouts, info = M.stitch(data, M.MBRCSLConfig(rollout_batch=4, max_rollout_batches=3), seed=0)
    assert rollouts is None and info["mbrcsl/kept"] == 0 and info["mbrcsl/rollout_batches"] == 3
    cfg = M.MBRCSLConfig(rollout_batch=4, max_rollout_batches=1, rcsl_hidden=(8,))
    run = RunDir(tmp_path, "mbrcsl")
    summary = M.train_mbrcsl(cfg, env_id=data, seed=0, steps=3, evals=1, eval_episodes=1, checkpoints=0,
                             progress=False, run=run)
    assert summary["mbrcsl"]["mbrcsl/fallback"] == 1 and math.isfinite(summary["eval"]["eval/return"])
    assert load_config(run.path / "mbrcsl_config.json") == cfg
    assert json.loads((run.path / "mbrcsl_stitch.json").read_text())["mbrcsl/fallback"] == 1


def test_terminations_and_discrete_actions_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="terminations.*1 terminal"):
        M.stitch(line_dataset(tmp_path, returns_per_step=(0.1,), terminal=True), M.MBRCSLConfig(), seed=0)
