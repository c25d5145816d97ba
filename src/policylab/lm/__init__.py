"""Language-model RL: policies, generation, tasks, the six-slot RLVR objective and its methods."""

from functools import partial

from policylab.core.algorithm import AlgorithmSpec
from policylab.core.registry import ALGORITHMS
from policylab.lm.baselines import DAPOConfig, DrGRPOConfig, GRPOConfig, GSPOConfig
from policylab.lm.lite_ppo import LitePPOConfig
from policylab.lm.trainer import RLVR, RLVRConfig, train_rlvr


def _add(name: str, config: type, summary: str) -> None:
    ALGORITHMS.add(name, AlgorithmSpec(name, config, partial(train_rlvr, name=name), summary, "lm", "mix", RLVR,
                                       default_steps=200))


_add("grpo", GRPOConfig, "group-normalized critic-free PPO (DeepSeekMath)")
_add("dapo", DAPOConfig, "clip-higher, dynamic sampling, token-mean, overlong penalty")
_add("dr_grpo", DrGRPOConfig, "GRPO without length and std normalization")
_add("gspo", GSPOConfig, "sequence-level importance ratio and clipping")
_add("lite_ppo", LitePPOConfig, "group-mean/batch-std advantage + token-mean PPO (Tricks or Traps)")

__all__ = ["RLVR", "DAPOConfig", "DrGRPOConfig", "GRPOConfig", "GSPOConfig", "LitePPOConfig", "RLVRConfig",
           "train_rlvr"]
