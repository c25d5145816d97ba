"""Differentiable environments: pure, batched torch dynamics (state, action) -> next state, so a policy can
be trained by back-propagating a loss through whole rollouts (ILD). These run on CPU without compilation;
`BraxEnv` puts any Brax environment behind the same interface (optional: `pip install 'policylab[brax]'`)."""

from policylab.envs.diff.brax_backend import BraxEnv
from policylab.envs.diff.systems import (
    DIFF_ENVS,
    DiffCartPole,
    DiffEnv,
    DiffPendulum,
    DiffPointMass,
    rollout,
)

__all__ = ["DIFF_ENVS", "BraxEnv", "DiffCartPole", "DiffEnv", "DiffPendulum", "DiffPointMass", "rollout"]
