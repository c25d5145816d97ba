"""Environment factories and wrappers."""

from policylab.envs import toy  # noqa: F401  (registers policylab's own environments)
from policylab.envs.factory import check_env_id, make_env
from policylab.envs.vector import VectorEnv

__all__ = ["VectorEnv", "check_env_id", "make_env"]
