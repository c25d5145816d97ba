"""The pillar-agnostic core: registry, config, run directory, checkpoints, trainer, stats, runner."""

from policylab.core.errors import PolicylabError

__all__ = ["PolicylabError"]
