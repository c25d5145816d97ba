"""Named datasets and the behaviour policies that make them (recipes joining `rl/` and `data/`)."""

from policylab.catalog import cartpole, ladder, maze, randomized  # noqa: F401  (register cartpole-*, idp-*, maze2d-*, ...)
from policylab.catalog.datasets import build_dataset, dataset_path, datasets_dir, open_dataset

__all__ = ["build_dataset", "dataset_path", "datasets_dir", "open_dataset"]
