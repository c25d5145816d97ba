"""Language-model RL: policies, generation, tasks, the six-slot RLVR objective and its methods."""

from functools import partial

from policylab.core.algorithm import AlgorithmSpec
from policylab.core.registry import ALGORITHMS
from policylab.lm import policy_cliff  # noqa: F401  (registers the tied_gcd task, its base model, format_bonus)
from policylab.lm.baselines import DAPOConfig, DrGRPOConfig, GRPOConfig, GSPOConfig
from policylab.lm.iq_lm import IQLM, IQLMConfig, train_iq_lm
from policylab.lm.lite_ppo import LitePPOConfig
from policylab.lm.losses.bapo import BAPOConfig
from policylab.lm.losses.bnpo import BNPOConfig
from policylab.lm.losses.nft import NFTConfig, RFTConfig
from policylab.lm.losses.rec import AsymREConfig, OPMDConfig, RECConfig, REDDropConfig, REDWeightConfig
from policylab.lm.losses.thr import THRConfig
from policylab.lm.multiturn import MultiTurnConfig, train_multiturn
from policylab.lm.multiturn.empg import EMPGConfig
from policylab.lm.multiturn.igpo import IGPOConfig
from policylab.lm.multiturn.ufo import UFOConfig
from policylab.lm.preference.dpo_q import DPO, DPOConfig, train_dpo
from policylab.lm.trainer import RLVR, RLVRConfig, train_rlvr

SINGLE_TURN: list[str] = []
"""The single-turn RLVR objectives, in registration order: what RLVRTrainer and the TRL / verl integrations take."""


def _add(name: str, config: type, summary: str) -> None:
    SINGLE_TURN.append(name)
    ALGORITHMS.add(name, AlgorithmSpec(name, config, partial(train_rlvr, name=name), summary, "lm", "mix", RLVR,
                                       default_steps=200))


_add("grpo", GRPOConfig, "group-normalized critic-free PPO (DeepSeekMath)")
_add("dapo", DAPOConfig, "clip-higher, dynamic sampling, token-mean, overlong penalty")
_add("dr_grpo", DrGRPOConfig, "GRPO without length and std normalization")
_add("gspo", GSPOConfig, "sequence-level importance ratio and clipping")
_add("lite_ppo", LitePPOConfig, "group-mean/batch-std advantage + token-mean PPO (Tricks or Traps)")
_add("thr", THRConfig, "GRPO advantages reweighted by the sign of each token's hidden reward (THR)")
_add("bnpo", BNPOConfig, "advantages normalized by a per-batch Beta density fitted to success rates")
_add("bapo", BAPOConfig, "clip bounds searched each step so positive tokens carry a target loss share")
_add("rec", RECConfig, "group-relative REINFORCE with clipping as token masking (REC)")
_add("opmd", OPMDConfig, "group-relative REINFORCE + squared log-ratio regularizer (OPMD)")
_add("asymre", AsymREConfig, "group-relative REINFORCE with a shifted baseline (AsymRE)")
_add("red_drop", REDDropConfig, "group-relative REINFORCE on groups rebalanced by dropping surplus negatives (RED)")
_add("red_weight", REDWeightConfig, "group-relative REINFORCE with responses weighted by exp(A / temp) (RED)")
_add("nft", NFTConfig, "negative-aware fine-tuning: likelihood of an implicit negative policy")
_add("rft", RFTConfig, "rejection-sampling fine-tuning: likelihood of correct answers only")


def _add_multiturn(name: str, config: type, summary: str, env: str) -> None:
    ALGORITHMS.add(name, AlgorithmSpec(name, config, partial(train_multiturn, name=name), summary, "lm", env, RLVR,
                                       default_steps=200))


_add_multiturn("multiturn_grpo", MultiTurnConfig, "GRPO on multi-turn episodes, outcome reward (retry or search)",
               "retry")
_add_multiturn("ufo", UFOConfig, "multi-turn retry after unary 'try again' feedback; turn-discounted reward minus a "
               "repeated-answer penalty (UFO)", "retry")
_add_multiturn("empg", EMPGConfig, "multi-turn search; GRPO episode advantage scaled per turn by the turn's "
               "entropy, plus a bonus for a confident next turn (EMPG)", "search")
_add_multiturn("igpo", IGPOConfig, "multi-turn search; per-turn gain in the answer's own probability plus the outcome, "
               "group-normalized and summed over later turns (IGPO)", "search")
ALGORITHMS.add("dpo", AlgorithmSpec("dpo", DPOConfig, train_dpo, "DPO on gold-labelled pairs of the base model's own "
                                    "samples (the r -> Q* analysis: policylab.lm.preference.dpo_q)", "lm", "mix", DPO,
                                    default_steps=200))
ALGORITHMS.add("iq_lm", AlgorithmSpec("iq_lm", IQLMConfig, train_iq_lm, "IQLearn for language: MLE + lambda x the "
                                      "squared implicit reward (lambda = 0 is SFT)", "lm", "between", IQLM,
                                      default_steps=IQLMConfig().max_steps))

__all__ = ["DPO", "IQLM", "RLVR", "AsymREConfig", "BAPOConfig", "BNPOConfig", "DAPOConfig", "DPOConfig", "DrGRPOConfig",
           "GRPOConfig", "GSPOConfig", "IQLMConfig", "LitePPOConfig", "MultiTurnConfig", "NFTConfig", "OPMDConfig",
           "RECConfig", "REDDropConfig", "REDWeightConfig", "RFTConfig", "RLVRConfig", "UFOConfig", "train_dpo",
           "train_iq_lm", "train_multiturn", "train_rlvr"]
