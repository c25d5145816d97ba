"""CDSA-style guide (policylab.offline.cdsa): the DSM loss and the Tweedie step by hand, a learned score
against the exact one of a Gaussian, the bounds of the adjustment, and the pipeline on a base policy."""

import math

import pytest
import torch
from torch import nn

from policylab.core.config import load_config
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.offline import CDSAConfig, train_cdsa
from policylab.offline.cdsa import DensityGuide, GuidedAlgorithm, ScoreModel, noise_levels


class Linear(nn.Module):
    """g(s, s') = s' @ w: linear in s', so the inverse model maps a state shift exactly."""

    def __init__(self, w, obs_dim):
        super().__init__()
        self.w, self.obs_dim = w, obs_dim

    def forward(self, x):
        return x[:, self.obs_dim:] @ self.w


class Constant(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = torch.as_tensor(value, dtype=torch.float32)

    def forward(self, x):
        return self.value.expand(x.shape[0], -1)


def test_noise_levels_are_geometric_from_max_to_min():
    levels = noise_levels(CDSAConfig(sigma_max=1.0, sigma_min=0.01, noise_levels=3))
    assert torch.allclose(levels, torch.tensor([1.0, 0.1, 0.01]))


def test_dsm_loss_by_hand():
    model = ScoreModel(2, (8,))
    model.eps = Constant([0.5, -1.0])  # eps(x, sigma) = c whatever the input
    levels = torch.tensor([0.3])
    x = torch.zeros(4, 2)
    loss = model.dsm_loss(x, levels, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    torch.randint(1, (4, 1), generator=g)  # the level draw comes first
    z = torch.randn(4, 2, generator=g)
    assert torch.isclose(loss, (torch.tensor([0.5, -1.0]) - z).square().sum(-1).mean())
    # the score is -eps / sigma
    assert torch.allclose(model.score(x, 0.5), torch.tensor([[-1.0, 2.0]] * 4))


def test_state_shift_is_the_inverse_model_of_a_tweedie_step():
    cfg = CDSAConfig(guide_sigma=0.5, step_scale=1.0, max_shift=10.0)
    guide = DensityGuide(2, 1, cfg)
    guide.forward_model = Constant([0.0, 0.0])  # s' = s
    guide.state_score.eps = Constant([1.0, -2.0])  # score = -eps / 0.5 = (-2, 4)
    w = torch.tensor([[3.0], [1.0]])
    guide.inverse_model = Linear(w, 2)
    obs, action = torch.tensor([[0.2, -0.1]]), torch.tensor([[0.1]])
    # s'* - s'0 = sigma^2 * score = 0.25 * (-2, 4) = (-0.5, 1); da = <(-0.5, 1), w> = -0.5
    assert torch.allclose(guide.shift(obs, action), torch.tensor([[-0.5]]))
    assert torch.allclose(guide.adjust(obs, action), torch.tensor([[-0.4]]))
    small = DensityGuide(2, 1, CDSAConfig(guide_sigma=0.5, max_shift=0.2))
    small.forward_model, small.state_score.eps, small.inverse_model = guide.forward_model, guide.state_score.eps, \
        guide.inverse_model
    assert torch.allclose(small.adjust(obs, action), torch.tensor([[-0.1]]))  # clipped to 0.1 - 0.2
    assert torch.allclose(small.adjust(obs, torch.tensor([[-0.95]])), torch.tensor([[-1.0]]))  # stays in the box


def test_zero_step_leaves_the_base_action_unchanged():
    guide = DensityGuide(3, 2, CDSAConfig(guidance="both", step_scale=0.0, score_hidden=(8,), model_hidden=(8,)))
    obs, action = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    assert torch.equal(guide.adjust(obs, action), action)


def test_learned_score_points_like_the_exact_gaussian_score():
    """Data N(mu, diag(v)): the score of the sigma-smoothed density is -(x - mu) / (v + sigma^2)."""
    torch.manual_seed(0)
    mu, v = torch.tensor([1.0, -2.0]), torch.tensor([0.25, 1.0])
    model = ScoreModel(2, (64, 64))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    levels = torch.tensor([0.3])
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        x = mu + v.sqrt() * torch.randn(256, 2, generator=g)
        loss = model.dsm_loss(x, levels, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    probe = mu + 1.5 * torch.randn(200, 2, generator=g)
    exact = -(probe - mu) / (v + 0.09)
    with torch.no_grad():
        learned = model.score(probe, 0.3)
    cos = torch.nn.functional.cosine_similarity(learned, exact, dim=-1)
    assert cos.mean() > 0.95
    # the Tweedie step moves toward the mean: the denoised points are closer to mu
    assert ((probe + 0.09 * learned - mu).norm(dim=-1) < (probe - mu).norm(dim=-1)).float().mean() > 0.9


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="CDSAConfig.guidance = 'density'.*state, action, both"):
        CDSAConfig(guidance="density")
    with pytest.raises(ConfigError, match="CDSAConfig.sigma_min"):
        CDSAConfig(sigma_min=2.0)
    with pytest.raises(ConfigError, match="CDSAConfig.base = 'cdsa'.*iql"):
        CDSAConfig(base="cdsa")


def test_guided_algorithm_forwards_episode_hooks():
    class Base:
        name = "rc"
        calls = []

        def policy_reset(self, n):
            self.calls.append(n)

        def policy_action(self, obs):
            return torch.zeros(obs.shape[0], 1)

    guide = DensityGuide(2, 1, CDSAConfig(step_scale=0.0, score_hidden=(4,), model_hidden=(4,)))
    guided = GuidedAlgorithm(Base(), guide)
    guided.policy_reset(3)
    assert Base.calls == [3] and guided.name == "rc+cdsa" and guided.mean_shift(torch.zeros(4, 2)) == 0.0


@pytest.mark.xdist_group("pendulum-data")
def test_pipeline_keeps_the_base_and_reports_both(datasets, tmp_path):
    cfg = CDSAConfig(base="td3_bc", base_hidden=(16,), guide_steps=20, score_hidden=(16,), model_hidden=(16,))
    run = RunDir(tmp_path, "cdsa")
    summary = train_cdsa(cfg, env_id=datasets["pendulum-mix10"], seed=0, steps=5, evals=1, eval_episodes=2,
                         progress=False, run=run)
    assert load_config(run.path / "cdsa_config.json") == cfg
    saved = torch.load(run.path / "cdsa_guide.pt")
    assert all(torch.equal(saved[k], v) for k, v in summary["policy"].algo.guide.state_dict().items())
    ev = summary["eval"]
    assert {"eval/base_return", "eval/return", "cdsa/state_dsm", "cdsa/inverse"} <= set(ev)
    assert all(math.isfinite(v) for v in ev.values()) and summary["algorithm"].name == "td3_bc+cdsa"
    obs = torch.zeros(3, 3)
    base = summary["algorithm"].algo.policy_action(obs)
    assert (summary["policy"].algo.policy_action(obs) - base).abs().max() <= 0.2 + 1e-6
