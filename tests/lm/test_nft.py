"""NFT's implicit-negative likelihood loss (policylab.lm.losses.nft): the paper's on-policy equivalences."""

import math

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm import DrGRPOConfig, GRPOConfig, NFTConfig, RFTConfig
from policylab.lm.advantages import token_advantages
from policylab.lm.losses import RLVRObjective, SlotContext
from policylab.lm.losses.nft import floor_forward, nft_loss

G = 4
REWARDS = torch.tensor([[1.0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1]])


def rows(rewards=REWARDS):
    correct = rewards.flatten()
    return {"correct": correct, "success_rate": rewards.mean(1).repeat_interleave(rewards.shape[1])}


def gradient(cfg, advantages, rewards=REWARDS, seed=0, L=6):
    """d loss / d logits at the on-policy point (pi_old = pi_theta) for random logits over 7 tokens."""
    g = torch.Generator().manual_seed(seed)
    B = rewards.numel()
    logits = torch.randn(B, L, 7, generator=g, requires_grad=True)
    tokens = torch.randint(0, 7, (B, L), generator=g)
    mask = (torch.rand(B, L, generator=g) > 0.25).float()
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    loss, _ = RLVRObjective(cfg, default_constant=float(L))(logp, logp.detach(), token_advantages(advantages, mask),
                                                            mask, rows=rows(rewards))
    loss.backward()
    return logits.grad


def test_on_policy_gradient_equals_dr_grpo():
    adv = REWARDS - REWARDS.mean(1, keepdim=True)
    nft = gradient(NFTConfig(), adv)
    dr_grpo = gradient(DrGRPOConfig(), adv)
    assert nft.abs().sum() > 0
    assert torch.allclose(nft, dr_grpo, atol=1e-7)


def test_on_policy_gradient_with_normalize_2_equals_grpo_with_population_std():
    std = REWARDS.std(1, unbiased=False, keepdim=True)
    adv = torch.where(std > 0, (REWARDS - REWARDS.mean(1, keepdim=True)) / std.clamp(min=1e-12), 0.0)
    nft = gradient(NFTConfig(normalize=2), adv)
    grpo = gradient(GRPOConfig(aggregation="seq-mean-token-sum-norm"), adv)
    assert torch.allclose(nft, grpo, atol=1e-6)


def test_rft_keeps_only_the_correct_answers_term():
    adv = REWARDS - REWARDS.mean(1, keepdim=True)
    positives_only = torch.where(adv > 0, adv, 0.0)  # correct answers of mixed groups: A = 1 - r_q
    assert torch.allclose(gradient(RFTConfig(), adv), gradient(DrGRPOConfig(), positives_only), atol=1e-7)


def test_uniform_groups_give_no_loss():
    ratio = torch.full((8, 3), 1.3)
    rewards = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0]])
    ctx = SlotContext(ratio, ratio, ratio, torch.ones(8, 3), rows(rewards))
    assert nft_loss(ratio, ratio, ratio, NFTConfig(), ctx).abs().sum() == 0
    assert ctx.metrics["nft/informative_frac"].item() == 0.0


def test_negative_term_by_hand_and_its_straight_through_floor():
    r = 0.25  # one of four right
    for R, expect_value in ((0.6, -math.log((1 - r * 0.6) / (1 - r))), (1.4, 0.0)):
        ratio = torch.tensor([[R]], requires_grad=True)
        ctx = SlotContext(ratio, ratio, ratio, torch.ones(1, 1),
                          {"correct": torch.tensor([0.0]), "success_rate": torch.tensor([r])})
        loss = nft_loss(ratio, ratio, ratio, NFTConfig(normalize=0), ctx)
        loss.sum().backward()
        assert loss.item() == pytest.approx(expect_value, abs=1e-6)
        # d/dR -log(x), x = (1 - r R) / (1 - r): r / (1 - r R) unfloored; r / (1 - r) once x is floored at 1
        denominator = max((1 - r * R) / (1 - r), 1.0) * (1 - r)
        assert ratio.grad.item() == pytest.approx(r / denominator, rel=1e-5)


def test_success_rate_is_clamped_like_the_official_code():
    ratio = torch.tensor([[0.5]])
    ctx = SlotContext(ratio, ratio, ratio, torch.ones(1, 1),
                      {"correct": torch.tensor([0.0]), "success_rate": torch.tensor([0.99])})
    value = nft_loss(ratio, ratio, ratio, NFTConfig(normalize=0), ctx).item()
    assert value == pytest.approx(-math.log((1 - 0.98 * 0.5) / (1 - 0.98)), rel=1e-5)


def test_floor_forward_keeps_the_gradient():
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    y = floor_forward(x, 1.0)
    y.sum().backward()
    assert y.tolist() == [1.0, 2.0] and x.grad.tolist() == [1.0, 1.0]


def test_config_checks():
    with pytest.raises(ConfigError, match="normalize"):
        NFTConfig(normalize=3)
    with pytest.raises(ConfigError, match="NFTConfig"):
        GRPOConfig(loss="nft")
