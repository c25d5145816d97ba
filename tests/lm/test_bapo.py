"""BAPO's adaptive clip bounds on hand-computed tokens (policylab.lm.losses.bapo)."""

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm import BAPOConfig, GRPOConfig
from policylab.lm.losses import CLIPS, LOSS_FORMS, RLVRObjective, SlotContext
from policylab.lm.losses.bapo import bound_path, positive_share

RATIO = torch.tensor([[1.5, 1.0, 0.5]])
ADV = torch.tensor([[1.0, -1.0, -1.0]])
MASK = torch.ones(1, 3)


def context(adv=ADV, old_logp=None, mask=MASK):
    old = torch.zeros_like(adv) if old_logp is None else old_logp  # pi_roll = 1: unweighted
    return SlotContext(old, old, adv, mask)


def test_path_raises_the_upper_bound_first_then_the_lower_one():
    path = bound_path(BAPOConfig())
    assert path[0].tolist() == pytest.approx([0.6, 1.2])
    assert path[36].tolist() == pytest.approx([0.6, 3.0])  # (3.0 - 1.2) / 0.05 = 36 raises of c_high
    assert path[37].tolist() == pytest.approx([0.62, 3.0])
    assert path[-1].tolist() == pytest.approx([0.9, 3.0]) and len(path) == 37 + 15
    assert (path[1:37, 1] > path[:36, 1]).all() and (path[37:, 0] > path[36:-1, 0]).all()


def test_positive_share_by_hand():
    # (0.6, 1.2): P = min(1.5, 1.2) = 1.2; N = max(1.0, 0.6) + max(0.5, 0.6) = 1.6 -> 1.2 / 2.8
    # (0.6, 1.5): P = 1.5 -> 1.5 / 3.1; (0.9, 1.2): N = 1.0 + 0.9 -> 1.2 / 3.1
    bounds = torch.tensor([[0.6, 1.2], [0.6, 1.5], [0.9, 1.2]], dtype=torch.float64)
    got = positive_share(RATIO, ADV, MASK, bounds)
    assert got.tolist() == pytest.approx([1.2 / 2.8, 1.5 / 3.1, 1.2 / 3.1])


def test_rollout_probabilities_weigh_the_share():
    weight = torch.tensor([[0.5, 1.0, 1.0]])  # the positive token was sampled with probability 0.5
    got = positive_share(RATIO, ADV, weight, torch.tensor([[0.6, 1.2]], dtype=torch.float64))
    assert got.item() == pytest.approx(0.6 / (0.6 + 1.6))


def test_search_stops_at_the_first_bounds_that_meet_the_target():
    # P / (P + 1.6) >= 0.45 needs c_high >= 1.309: the grid's first such point is 1.35
    cfg = BAPOConfig(positive_share=0.45)
    ctx = context()
    clipped = CLIPS.get("bapo")(RATIO, cfg, ctx)
    assert ctx.metrics["bapo/clip_high"].item() == pytest.approx(1.35)
    assert ctx.metrics["bapo/clip_low"].item() == pytest.approx(0.6)
    assert torch.allclose(clipped, RATIO.clamp(0.6, 1.35))
    assert ctx.metrics["bapo/positive_share"].item() == pytest.approx(1.35 / 2.95)


def test_unreachable_target_ends_at_the_widest_upper_and_narrowest_lower_bound():
    ctx = context()
    CLIPS.get("bapo")(RATIO, BAPOConfig(positive_share=0.9), ctx)
    assert ctx.metrics["bapo/clip_low"].item() == pytest.approx(0.9)
    assert ctx.metrics["bapo/clip_high"].item() == pytest.approx(3.0)


def test_met_at_start_is_ppo_with_the_start_bounds():
    cfg = BAPOConfig(positive_share=0.1)
    g = torch.Generator().manual_seed(0)  # not the global RNG: the test must not depend on which tests ran first
    logp = torch.randn(4, 5, generator=g).requires_grad_(True)
    old = (logp + 0.3 * torch.randn(4, 5, generator=g)).detach()
    adv = torch.tensor([[1.0], [-1.0], [0.5], [-0.5]]).expand(4, 5)  # positives carry about half the loss
    mask = torch.ones(4, 5)
    loss, metrics = RLVRObjective(cfg)(logp, old, adv, mask)
    ratio = torch.exp(logp - old)
    ppo = LOSS_FORMS.get("ppo")(ratio, ratio.clamp(0.6, 1.2), adv, cfg)
    reference = ((ppo * mask).sum(-1) / mask.sum(-1)).mean()
    assert metrics["bapo/clip_high"].item() == pytest.approx(1.2)
    assert torch.allclose(loss, reference)


def test_search_ignores_masked_tokens():
    mask = torch.tensor([[0.0, 1.0, 1.0]])  # the only positive token is padding: share 0
    ctx = context(mask=mask)
    CLIPS.get("bapo")(RATIO, BAPOConfig(), ctx)
    assert ctx.metrics["bapo/share_at_start"].item() == 0.0


def test_config_checks():
    with pytest.raises(ConfigError, match="low_max"):
        BAPOConfig(low_start=0.8, low_max=0.7)
    with pytest.raises(ConfigError, match="high_max"):
        BAPOConfig(high_start=2.0, high_max=1.5)
    with pytest.raises(ConfigError, match="BAPOConfig"):
        GRPOConfig(clip="bapo")
