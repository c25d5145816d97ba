"""Multi-turn language agents: environments, episode rollouts kept as RLVR batches, episode rewards,
multi-turn base models, and the methods that assign credit across turns (UFO, IGPO, EMPG)."""

from policylab.lm.multiturn import base  # noqa: F401  (registers the tiny-retry and tiny-search base models)
from policylab.lm.multiturn.envs import MULTITURN_ENVS, MultiTurnEnv, RetryEnv, SearchEnv, Turn, get_env
from policylab.lm.multiturn.rollout import (
                                            ContextLengthError,
                                            EpisodeBatch,
                                            Episodes,
                                            MultiTurnSource,
                                            episode_batch,
                                            episode_statistics,
                                            run_episodes,
)
from policylab.lm.multiturn.train import (
                                            EPISODE_REWARDS,
                                            EnvConfig,
                                            MultiTurnConfig,
                                            distinct_episodes,
                                            evaluate_episodes,
                                            train_multiturn,
)

__all__ = ["EPISODE_REWARDS", "MULTITURN_ENVS", "ContextLengthError", "EnvConfig", "EpisodeBatch", "Episodes",
           "MultiTurnConfig", "MultiTurnEnv", "MultiTurnSource", "RetryEnv", "SearchEnv", "Turn", "distinct_episodes",
           "episode_batch", "episode_statistics", "evaluate_episodes", "get_env", "run_episodes", "train_multiturn"]
