"""KARL (policylab.vision): the graded images, the single-pass count against the search on a model
whose halting is set by hand, and training that learns to keep more tokens for noise than for constants."""

import pytest
import torch

from policylab.vision import GROUPS, KARLConfig, complexity_images, train_karl
from policylab.vision.karl import KARL


def test_images_are_graded_and_seeded():
    images, groups = complexity_images(5, seed=0)
    assert images.shape == (20, 64) and groups.tolist() == [g for g in range(4) for _ in range(5)]
    assert images.min() >= 0 and images.max() <= 1 and len(GROUPS) == 4
    assert torch.all(images[:5].std(1) == 0)  # constant images
    assert torch.equal(images, complexity_images(5, seed=0)[0]) and not torch.equal(images, complexity_images(5, 1)[0])
    with pytest.raises(ValueError, match="split"):
        complexity_images(1, 0, "val")


def test_count_keeps_tokens_below_the_halting_threshold_and_search_takes_the_smallest_prefix():
    model = KARL(64, KARLConfig(tokens=4, hidden=(8,)))
    x = torch.rand(3, 64)
    halting = torch.tensor([[-5.0, -5.0, 5.0, 5.0]] * 3)  # keep two tokens
    model.encode = lambda x, eps, budget: (torch.zeros(x.shape[0], 4, 4), halting[: x.shape[0]])
    assert model.count_tokens(x, 0.01).tolist() == [2, 2, 2]
    errors = {1: 0.5, 2: 0.2, 3: 0.05, 4: 0.01}
    model.reconstruction_error = lambda x, budget: torch.full((x.shape[0],), errors[int(budget[0])])
    assert model.search_tokens(x, 0.1).tolist() == [3, 3, 3] and model.search_tokens(x, 0.001).tolist() == [4, 4, 4]


def test_training_keeps_more_tokens_for_noise_than_for_constant_images():
    images, _ = complexity_images(200, seed=0)
    model, _ = train_karl(images, KARLConfig(iterations=1500, hidden=(128, 128)), seed=0)
    test, groups = complexity_images(50, seed=1, split="test")
    counts = model.count_tokens(test, 0.01).float()
    assert counts[groups == 3].mean() > counts[groups == 0].mean() + 4
