"""Vision: KARL, a single-pass adaptive image tokenizer, and the graded-complexity images it is checked on."""

from policylab.vision.images import GROUPS, complexity_images
from policylab.vision.karl import KARL, KARLConfig, train_karl

__all__ = ["GROUPS", "KARL", "KARLConfig", "complexity_images", "train_karl"]
