"""Online RL: PPO, MDPO, SAC, TD3, DQN on vectorized gymnasium envs; tabular SQIRL (`rl/sqirl.py`)."""

from functools import partial

from policylab.core.algorithm import AlgorithmSpec
from policylab.core.registry import ALGORITHMS
from policylab.rl.dqn import DQN, DQNConfig
from policylab.rl.iwocs import IWOCSConfig, train_iwocs
from policylab.rl.mdpo import MDPO, MDPOConfig, MDPOOff, MDPOOffConfig
from policylab.rl.policy_io import load_policy, save_policy
from policylab.rl.ppo import PPO, PPOConfig
from policylab.rl.sac import SAC, SACConfig
from policylab.rl.td3 import TD3, TD3Config
from policylab.rl.train import train_online

ALGORITHMS.add("ppo", AlgorithmSpec("ppo", PPOConfig, partial(train_online, PPO), "clipped-surrogate policy gradient",
                                    "rl", "CartPole-v1", PPO))
ALGORITHMS.add("mdpo", AlgorithmSpec("mdpo", MDPOConfig, partial(train_online, MDPO),
                                     "on-policy mirror descent policy optimization (m full-batch KL-proximal steps)",
                                     "rl", "CartPole-v1", MDPO))
ALGORITHMS.add("mdpo_off", AlgorithmSpec("mdpo_off", MDPOOffConfig, partial(train_online, MDPOOff),
                                         "off-policy MDPO: SAC with a KL proximity term to a periodically refreshed "
                                         "anchor policy", "rl", "Pendulum-v1", MDPOOff))
ALGORITHMS.add("sac", AlgorithmSpec("sac", SACConfig, partial(train_online, SAC), "soft actor-critic, auto entropy",
                                    "rl", "Pendulum-v1", SAC))
ALGORITHMS.add("dqn", AlgorithmSpec("dqn", DQNConfig, partial(train_online, DQN), "double DQN, epsilon-greedy",
                                    "rl", "CartPole-v1", DQN))
ALGORITHMS.add("td3", AlgorithmSpec("td3", TD3Config, partial(train_online, TD3), "twin delayed DDPG",
                                    "rl", "Pendulum-v1", TD3))
ALGORITHMS.add("iwocs", AlgorithmSpec("iwocs", IWOCSConfig, train_iwocs, "incremental worst-case search: TD3 on worst "
                                      "models found so far, robust policy by the min over their critics", "rl",
                                      "Pendulum-v1", None, 15_000))

__all__ = ["DQN", "DQNConfig", "MDPO", "MDPOConfig", "MDPOOff", "MDPOOffConfig", "PPO", "PPOConfig", "SAC",
           "SACConfig", "TD3", "TD3Config", "load_policy", "save_policy", "train_online"]

from policylab.rl import api  # noqa: E402  (after the registrations it reads)

__all__ += ["api"]
