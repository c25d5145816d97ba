"""Offline RL: algorithms that learn from a fixed dataset through a sampler (BC, TD3+BC, IQL, CQL, RCSL, DQN...)."""

from functools import partial

from policylab.core.algorithm import AlgorithmSpec
from policylab.core.registry import ALGORITHMS
from policylab.offline import traj_weight  # noqa: F401  (registers the rw, aw and top samplers)
from policylab.offline.bc import BC, BCConfig
from policylab.offline.cdsa import CDSAConfig, train_cdsa
from policylab.offline.cql import CQL, CQLConfig
from policylab.offline.discrete_cql import DiscreteCQL, DiscreteCQLConfig
from policylab.offline.dqn import OfflineDQN, OfflineDQNConfig
from policylab.offline.hib import HIB, HIBConfig, train_hib
from policylab.offline.iql import IQL, IQLConfig
from policylab.offline.mbrcsl import MBRCSLConfig, train_mbrcsl
from policylab.offline.obs_history import ObsHistoryConfig, train_obs_history
from policylab.offline.odice import ODICE, ODICEConfig
from policylab.offline.oppo import OPPO, OPPOConfig, train_oppo
from policylab.offline.rcsl import RCSL, RCSLConfig
from policylab.offline.rl_vlm_f import RLVLMFConfig, train_rl_vlm_f
from policylab.offline.ssorl import SSORLConfig, train_ssorl
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
ALGORITHMS.add("odice", AlgorithmSpec("odice", ODICEConfig, partial(train_offline, ODICE),
                                      "V-DICE with the orthogonal-gradient update, weighted BC policy", "offline",
                                      "pendulum-mix10", ODICE, default_steps=10_000))
ALGORITHMS.add("rcsl", AlgorithmSpec("rcsl", RCSLConfig, partial(train_offline, RCSL),
                                     "return-conditioned supervised learning (MLP, RvS)", "offline", "pendulum-mix10",
                                     RCSL, default_steps=10_000))
ALGORITHMS.add("dqn_offline", AlgorithmSpec("dqn_offline", OfflineDQNConfig, partial(train_offline, OfflineDQN),
                                            "double DQN on a fixed dataset (discrete actions)", "offline",
                                            "cartpole-replay", OfflineDQN, default_steps=20_000))
ALGORITHMS.add("cql_discrete", AlgorithmSpec("cql_discrete", DiscreteCQLConfig, partial(train_offline, DiscreteCQL),
                                             "conservative Q-learning for discrete actions", "offline",
                                             "cartpole-replay", DiscreteCQL, default_steps=20_000))

ALGORITHMS.add("ssorl", AlgorithmSpec("ssorl", SSORLConfig, train_ssorl,
                                      "semi-supervised offline RL: proxy-label action-free trajectories, then an "
                                      "offline algorithm", "offline", "pendulum-mix10", None, default_steps=10_000))
ALGORITHMS.add("cdsa", AlgorithmSpec("cdsa", CDSAConfig, train_cdsa,
                                     "a pretrained offline policy's actions moved along the dataset's density score "
                                     "(CDSA-style)", "offline", "idp-medium", None, default_steps=10_000))
ALGORITHMS.add("mbrcsl", AlgorithmSpec("mbrcsl", MBRCSLConfig, train_mbrcsl,
                                       "model-based RCSL: rollouts of a diffusion behaviour policy in a dynamics "
                                       "ensemble, the ones above the data's best train RCSL", "offline", "stitch-maze",
                                       None, default_steps=10_000))
ALGORITHMS.add("rl_vlm_f", AlgorithmSpec("rl_vlm_f", RLVLMFConfig, train_rl_vlm_f,
                                        "preference labels from a (stand-in) VLM, a Bradley-Terry reward "
                                        "ensemble, relabel, then an offline algorithm", "offline", "pendulum-mix10",
                                        None, default_steps=10_000))
ALGORITHMS.add("oppo", AlgorithmSpec("oppo", OPPOConfig, train_oppo,
                                     "preference-guided policy: segment encoder, z-conditioned policy by hindsight "
                                     "information matching, a free optimal context z* by a triplet loss",
                                     "offline", "pendulum-mix10", OPPO, default_steps=10_000))
ALGORITHMS.add("hib", AlgorithmSpec("hib", HIBConfig, train_hib,
                                    "historical information bottleneck (offline adaptation): IQL on the observation "
                                    "and a GRU history code shaped by KL to N(0, I) + InfoNCE with privileged e",
                                    "offline", "pendulum-dr-teacher", HIB, default_steps=10_000))
ALGORITHMS.add("obs_history", AlgorithmSpec("obs_history", ObsHistoryConfig, train_obs_history, "IQL on a GRU history encoder with a bisimulation loss, on a partially observed dataset", "offline", "pendulum-mix10", None, default_steps=10_000))  # noqa: E501

__all__ = ["BC", "BCConfig", "CDSAConfig", "CQL", "CQLConfig", "DiscreteCQL", "DiscreteCQLConfig", "HIB",
           "HIBConfig", "IQL",
           "IQLConfig", "MBRCSLConfig", "ODICE", "ODICEConfig", "OPPO", "OPPOConfig", "ObsHistoryConfig",
           "OfflineConfig", "OfflineDQN", "OfflineDQNConfig", "RCSL", "RCSLConfig", "RLVLMFConfig", "SSORLConfig",
           "TD3BC", "TD3BCConfig", "train_cdsa", "train_mbrcsl", "train_obs_history", "train_offline", "train_oppo",
           "train_hib", "train_rl_vlm_f", "train_ssorl"]

from policylab.offline import api  # noqa: E402  (after the registrations it reads)

__all__ += ["api"]
