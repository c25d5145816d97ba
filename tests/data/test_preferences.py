"""Preference labels (policylab.data.preferences): the scripted teacher's probabilities, flips and ties by
hand, pair sampling, dropping unanswered pairs, and the Bradley-Terry loss's values and gradients."""

import math

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.data.preferences import ScriptedTeacher, bradley_terry_loss, label_pairs, sample_pairs
from policylab.lm.preference.reward_model import bradley_terry_loss as lm_bradley_terry_loss

GOAL = "reach x"


def first_feature(obs):
    return obs[..., 0]


def teacher(**knobs):
    return ScriptedTeacher(first_feature, GOAL, **knobs)


def col(*values):
    return torch.tensor(values, dtype=torch.float32)[:, None]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_rational_teacher_answers_by_the_gap_and_ties_are_dropped():
    labels = teacher().label(col(2.0, 0.0, 1.0), col(1.0, 3.0, 1.0), GOAL)
    assert labels.tolist() == [1, 0, -1]


def test_equal_threshold_gives_no_preference():
    labels = teacher(equal_threshold=0.5).label(col(2.0, 0.0, 1.4), col(1.0, 3.0, 1.0), GOAL)
    assert labels.tolist() == [1, 0, -1]  # gaps 1, -3 and 0.4 < 0.5


def test_probabilities_by_hand():
    p, tied = teacher(beta=2.0).probabilities(col(1.5), col(1.0))
    assert p.item() == pytest.approx(sigmoid(1.0)) and not tied.item()
    p, _ = teacher(beta=2.0, epsilon=0.1).probabilities(col(1.5), col(1.0))
    assert p.item() == pytest.approx(0.9 * sigmoid(1.0) + 0.1 * (1 - sigmoid(1.0)))
    flip = 0.1 + 0.2 * math.exp(-0.5 / 1.0)
    p, _ = teacher(beta=2.0, epsilon=0.1, proximity=0.2).probabilities(col(1.5), col(1.0))
    assert p.item() == pytest.approx((1 - flip) * sigmoid(1.0) + flip * (1 - sigmoid(1.0)))
    p, _ = teacher(epsilon=0.1).probabilities(col(0.0), col(1.0))  # rational: the second wins, flipped 10%
    assert p.item() == pytest.approx(0.1)


def test_uniform_mistakes_flip_their_share():
    n = 20_000
    labels = teacher(epsilon=0.3, seed=1).label(torch.ones(n, 1), torch.zeros(n, 1), GOAL)
    assert (labels == 0).float().mean().item() == pytest.approx(0.3, abs=0.015)


def test_close_pairs_are_flipped_more():
    n = 20_000
    t = teacher(proximity=0.4, proximity_scale=1.0, seed=2)
    close = t.label(torch.full((n, 1), 0.01), torch.zeros(n, 1), GOAL)
    far = t.label(torch.full((n, 1), 10.0), torch.zeros(n, 1), GOAL)
    assert (close == 0).float().mean().item() == pytest.approx(0.4 * math.exp(-0.01), abs=0.015)
    assert (far == 0).float().mean().item() < 0.002  # 0.4 e^-10


def test_bradley_terry_draws_follow_sigmoid_beta_gap():
    n = 20_000
    labels = teacher(beta=1.0, seed=3).label(torch.full((n, 1), 0.5), torch.zeros(n, 1), GOAL)
    assert (labels == 1).float().mean().item() == pytest.approx(sigmoid(0.5), abs=0.015)


def test_flip_probability_is_capped_at_one():
    # 0.8 + 0.5 e^-0.1 and 0.8 + 0.5 e^-0.2 both exceed 1: every label flips
    labels = teacher(epsilon=0.8, proximity=0.5).label(col(0.1, 0.2), col(0.0, 0.0), GOAL)
    assert labels.tolist() == [0, 0]


def test_segments_sum_progress_with_gamma():
    a = torch.tensor([[[4.0], [0.0]]])  # progress 4 then 0
    b = torch.tensor([[[0.0], [3.0]]])
    assert teacher().label(a, b, GOAL).tolist() == [1]  # 4 > 3
    assert teacher(gamma=0.5).label(a, b, GOAL).tolist() == [0]  # 0.5 * 4 = 2 < 3: later steps count more


def test_same_seed_same_labels_other_seed_other_labels():
    x, y = torch.randn(500, 1), torch.randn(500, 1)
    one = teacher(beta=1.0, seed=4).label(x, y, GOAL)
    assert torch.equal(one, teacher(beta=1.0, seed=4).label(x, y, GOAL))
    assert not torch.equal(one, teacher(beta=1.0, seed=5).label(x, y, GOAL))


def test_teacher_refuses_bad_knobs_other_goals_and_shapes():
    with pytest.raises(ConfigError, match="epsilon = 1.5"):
        teacher(epsilon=1.5)
    with pytest.raises(ConfigError, match="beta = 0"):
        teacher(beta=0.0)
    with pytest.raises(ConfigError, match="'open the door'"):
        teacher().label(col(1.0), col(0.0), "open the door")
    with pytest.raises(ConfigError, match="one shape"):
        teacher().label(col(1.0), col(0.0, 1.0), GOAL)


def test_sample_pairs_are_distinct_in_range_and_seeded():
    i, j = sample_pairs(5, 2000, seed=0)
    assert (i != j).all() and i.min() >= 0 and j.max() < 5
    assert torch.bincount(j, minlength=5).min() > 300  # every item drawn as the second one too
    assert torch.equal(i, sample_pairs(5, 2000, seed=0)[0])
    with pytest.raises(ConfigError, match="num_items = 1"):
        sample_pairs(1, 10, 0)


def test_label_pairs_drops_unanswered_pairs():
    items = col(0.0, 1.0, 1.0, 3.0)
    pairs = label_pairs(teacher(), items, torch.tensor([0, 1, 3]), torch.tensor([1, 2, 0]), GOAL)
    assert pairs.asked == 3 and len(pairs) == 2  # 1 vs 2 is a tie
    assert pairs.first.tolist() == [0, 3] and pairs.labels.tolist() == [0.0, 1.0]


def test_all_ties_and_empty_pair_sets_are_refused():
    items = torch.ones(4, 1)
    with pytest.raises(ConfigError, match="all 2 pairs"):
        label_pairs(teacher(), items, torch.tensor([0, 1]), torch.tensor([2, 3]), GOAL)
    with pytest.raises(ConfigError, match="no pairs"):
        label_pairs(teacher(), items, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), GOAL)


def test_bradley_terry_loss_values_by_hand():
    s1, s2 = torch.tensor([1.0, 1.0, 1.0]), torch.zeros(3)
    loss = bradley_terry_loss(s1, s2, torch.tensor([1.0, 0.0, 0.5]), reduction="none")
    first, second = math.log(1 + math.exp(-1)), math.log(1 + math.exp(1))
    assert loss.tolist() == pytest.approx([first, second, (first + second) / 2])
    assert bradley_terry_loss(s1, s2, torch.tensor([1.0, 0.0, 0.5])).item() == pytest.approx(loss.mean().item())
    with pytest.raises(ConfigError, match="reduction = 'sum'"):
        bradley_terry_loss(s1, s2, torch.ones(3), reduction="sum")


def test_bradley_terry_gradient_is_probability_minus_label():
    s1 = torch.tensor([1.0, -0.5], requires_grad=True)
    s2 = torch.tensor([0.0, 0.5], requires_grad=True)
    labels = torch.tensor([1.0, 0.0])
    bradley_terry_loss(s1, s2, labels, reduction="none").sum().backward()
    expected = [sigmoid(1.0) - 1.0, sigmoid(-1.0) - 0.0]  # d/ds1 = sigmoid(s1 - s2) - y
    assert s1.grad.tolist() == pytest.approx(expected)
    assert s2.grad.tolist() == pytest.approx([-g for g in expected])


def test_agrees_with_the_language_model_loss():
    chosen, rejected = torch.randn(64), torch.randn(64)
    ours = bradley_terry_loss(chosen, rejected, torch.ones(64))
    assert ours.item() == pytest.approx(lm_bradley_terry_loss(chosen, rejected).item(), rel=1e-6)
    swapped = bradley_terry_loss(rejected, chosen, torch.zeros(64))  # the same preference, other order
    assert swapped.item() == pytest.approx(ours.item(), rel=1e-6)
