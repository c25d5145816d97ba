"""Differentiable environments: pure, batched torch dynamics (state, action) -> next state, so a policy can
be trained by back-propagating a loss through whole rollouts (ILD). Brax is not required; these run on
CPU without compilation."""

from policylab.envs.diff.systems import (
    DIFF_ENVS,
    DiffCartPole,
    DiffEnv,
    DiffPendulum,
    DiffPointMass,
    rollout,
)

__all__ = ["DIFF_ENVS", "DiffCartPole", "DiffEnv", "DiffPendulum", "DiffPointMass", "rollout"]
