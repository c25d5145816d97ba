"""Claim checks, one module per paper, plus the quickstart showcase and the runner self-test.

Importing this package registers every experiment in `policylab.core.registry.EXPERIMENTS`.
"""

from policylab.experiments import lite_ppo, lite_ppo_skew, quickstart, selftest  # noqa: F401
