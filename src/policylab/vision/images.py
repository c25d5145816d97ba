"""8 x 8 grayscale images of graded complexity, made here: constant gray < one rectangle < handwritten
digits (scikit-learn's bundled 8 x 8 digits, no download) < uniform noise. Values in [0, 1], flattened."""

from __future__ import annotations

import numpy as np
import torch

GROUPS = ("constant", "rectangle", "digit", "noise")


def complexity_images(per_group: int, seed: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(images [4 per_group, 64], group index [4 per_group]); the digits of `split` ('train' the first
    1400 of the 1797, 'test' the rest) are drawn with the seed, the other groups generated from it."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("the digit images need scikit-learn (its bundled 8 x 8 digits): "
                          "pip install 'policylab[vision]'") from err
    if split not in ("train", "test"):
        raise ValueError(f"split = {split!r} is not allowed: 'train' or 'test'")
    rng = np.random.default_rng(seed)
    constant = np.repeat(rng.uniform(0.1, 0.9, (per_group, 1)), 64, axis=1)
    rectangles = np.zeros((per_group, 8, 8))
    for image in rectangles:
        r0, c0 = rng.integers(0, 7, 2)
        r1, c1 = rng.integers(r0 + 2, 9), rng.integers(c0 + 2, 9)
        image[r0:r1, c0:c1] = rng.uniform(0.5, 1.0)
    digits = load_digits().images.reshape(-1, 64) / 16.0
    pool = digits[:1400] if split == "train" else digits[1400:]
    chosen = pool[rng.integers(len(pool), size=per_group)]
    noise = rng.uniform(0.0, 1.0, (per_group, 64))
    images = np.concatenate([constant, rectangles.reshape(per_group, 64), chosen, noise]).astype(np.float32)
    return torch.from_numpy(images), torch.arange(4).repeat_interleave(per_group)
