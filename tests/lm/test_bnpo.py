"""BNPO's Beta normalization on hand-computed batches (policylab.lm.losses.bnpo)."""

import math
from types import SimpleNamespace

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm import BNPOConfig
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.losses.bnpo import beta_density, bnpo_advantage, fit_normalization


def test_method_of_moments_fit_by_hand():
    # p = 0.25, 0.5, 0.75: m = 0.5, unbiased v = 0.0625, k = 0.25 / 0.0625 - 1 = 3, a = b = 1.5
    alpha, beta, degenerate = fit_normalization(torch.tensor([0.25, 0.5, 0.75]))
    assert not degenerate
    assert alpha.item() == pytest.approx(1 + 1.5 / 3) and beta.item() == pytest.approx(1 + 1.5 / 3)


def test_advantages_by_hand_with_the_beta_three_halves_density():
    rewards = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
    adv = bnpo_advantage(rewards)
    # alpha = beta = 3/2: f(p) = sqrt(p (1 - p)) / B(3/2, 3/2), B(3/2, 3/2) = pi / 8
    f = lambda p: math.sqrt(p * (1 - p)) * 8 / math.pi  # noqa: E731
    expected = torch.tensor([[0.75 / f(0.25), -0.25 / f(0.25), -0.25 / f(0.25), -0.25 / f(0.25)],
                             [0.5 / f(0.5), 0.5 / f(0.5), -0.5 / f(0.5), -0.5 / f(0.5)],
                             [0.25 / f(0.75), 0.25 / f(0.75), 0.25 / f(0.75), -0.75 / f(0.75)]])
    assert torch.allclose(adv, expected, atol=1e-5)


def test_three_halves_case_is_grpo_with_population_std_times_pi_over_8():
    rewards = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
    centred = rewards - rewards.mean(1, keepdim=True)
    grpo_population = centred / rewards.std(1, unbiased=False, keepdim=True)
    assert torch.allclose(bnpo_advantage(rewards), grpo_population * math.pi / 8, atol=1e-5)


def test_wide_spread_clamps_to_alpha_beta_one_which_is_the_group_mean_baseline():
    rewards = torch.tensor([[1.0] + [0.0] * 7, [1.0] * 8, [0.0] * 8, [1.0] * 7 + [0.0]])
    alpha, beta, _ = fit_normalization(rewards.mean(1))
    assert alpha.item() == 1.0 and beta.item() == 1.0
    assert torch.allclose(bnpo_advantage(rewards), ADVANTAGES.get("dr_grpo")(rewards))


@pytest.mark.parametrize("rewards", [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
def test_degenerate_batch_falls_back_to_scale_one_and_says_so(rewards):
    rewards = torch.tensor(rewards)
    metrics = {}
    adv = ADVANTAGES.get("bnpo")(rewards, metrics=metrics)
    assert torch.isfinite(adv).all()
    assert torch.allclose(adv, rewards - rewards.mean(1, keepdim=True))
    assert metrics["bnpo/degenerate"].item() == 1.0


def test_density_is_zero_at_an_endpoint_and_finite_advantages_follow():
    assert beta_density(torch.tensor([0.0, 1.0]), torch.tensor(2.0), torch.tensor(2.0)).tolist() == [0.0, 0.0]
    rewards = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0, 0, 0], [1.0, 1, 0, 0], [1.0, 1, 1, 1]])
    adv = bnpo_advantage(rewards)
    assert torch.isfinite(adv).all() and adv[0].abs().sum() == 0 and adv[3].abs().sum() == 0


def test_decomposition_averages_the_components_each_with_its_own_fit():
    exact = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
    dense = torch.tensor([[1.0, 0.5, 0.5, 0], [1, 0.9, 0.2, 0], [1, 1, 1, 0.5]])
    batch = SimpleNamespace(exact=exact.flatten(), dense=dense.flatten(), rewards=exact.flatten())
    cfg = BNPOConfig(bnpo_components=("exact", "dense"))
    metrics = {}
    got = bnpo_advantage(exact, batch=batch, cfg=cfg, metrics=metrics)
    assert torch.allclose(got, (bnpo_advantage(exact) + bnpo_advantage(dense)) / 2)
    assert set(metrics) == {"bnpo/alpha", "bnpo/beta", "bnpo/degenerate"}


def test_rewards_outside_the_declared_range_name_the_fields():
    with pytest.raises(ConfigError, match="reward_min"):
        bnpo_advantage(torch.tensor([[2.0, 0.0], [1.0, 0.0]]))
    scaled = bnpo_advantage(torch.tensor([[2.0, -2.0], [2.0, 2.0], [-2.0, -2.0]]),
                            cfg=BNPOConfig(reward_min=-2.0, reward_max=2.0))
    assert torch.isfinite(scaled).all()


def test_config_refuses_bad_fields():
    with pytest.raises(ConfigError, match="reward_max"):
        BNPOConfig(reward_min=1.0, reward_max=1.0)
    with pytest.raises(ConfigError, match="bnpo_components"):
        BNPOConfig(bnpo_components=("format",))
