"""Offline RL: algorithms that learn from a fixed dataset through a sampler (BC, TD3+BC, ...)."""

from functools import partial

from policylab.core.algorithm import AlgorithmSpec
from policylab.core.registry import ALGORITHMS
from policylab.offline.bc import BC, BCConfig
from policylab.offline.cql import CQL, CQLConfig
from policylab.offline.iql import IQL, IQLConfig
from policylab.offline.td3_bc import TD3BC, TD3BCConfig
from policylab.offline.train import OfflineConfig, train_offline

ALGORITHMS.add("bc", AlgorithmSpec("bc", BCConfig, partial(train_offline, BC), "behaviour cloning (and x%BC)",
                                   "offline", "pendulum-mix10", BC, default_steps=10_000))
ALGORITHMS.add("td3_bc", AlgorithmSpec("td3_bc", TD3BCConfig, partial(train_offline, TD3BC),
                                       "TD3 with a behaviour-cloning term", "offline", "pendulum-mix10", TD3BC,
                                       default_steps=10_000))
ALGORITHMS.add("iql", AlgorithmSpec("iql", IQLConfig, partial(train_offline, IQL),
                                    "implicit Q-learning: expectile value, advantage-weighted regression", "offline",
                                    "pendulum-mix10", IQL, default_steps=10_000))
ALGORITHMS.add("cql", AlgorithmSpec("cql", CQLConfig, partial(train_offline, CQL),
                                    "conservative Q-learning (SAC-based CQL(H))", "offline", "pendulum-mix10", CQL,
                                    default_steps=10_000))

__all__ = ["BC", "BCConfig", "CQL", "CQLConfig", "IQL", "IQLConfig", "OfflineConfig", "TD3BC", "TD3BCConfig",
           "train_offline"]
