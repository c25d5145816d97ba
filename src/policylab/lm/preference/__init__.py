"""Preferences, reward models and inverse RL for language models.

Shared parts: `gold` (a synthetic gold reward), `data` (policy samples, Bradley-Terry labelled pairs with
label noise), `reward_model` (the `RewardModel` protocol, verifier / embedding / transformer reward
models, evaluation), `best_of_n` (the unbiased best-of-n estimator and its KL). Methods: `irl_llm`,
`rm_ensemble`, `dpo_q`, `parl`. RL against a reward model reuses the RLVR engine: `train_rlvr(..., reward_model=rm)`."""

from policylab.lm.preference.best_of_n import best_of_n_value, best_of_n_weights, kl_best_of_n
from policylab.lm.preference.data import (
    PreferencePairs,
    Samples,
    bradley_terry_label,
    label_pairs,
    preference_probability,
    sample_responses,
    train_samples,
)
from policylab.lm.preference.gold import GoldConfig, GoldReward
from policylab.lm.preference.parl import CandidateSetPARL, PARLConfig, hypergradient
from policylab.lm.preference.reward_model import (
    EmbeddingRewardModel,
    RewardFitConfig,
    RewardModel,
    TransformerRewardModel,
    VerifierReward,
    bradley_terry_loss,
    gold_correlation,
    pair_accuracy,
    sequence_features,
)
from policylab.lm.preference.rm_ensemble import RewardEnsemble, best_of_n_curve, train_members

__all__ = ["CandidateSetPARL", "EmbeddingRewardModel", "GoldConfig", "GoldReward", "PARLConfig", "PreferencePairs",
           "RewardEnsemble", "RewardFitConfig", "RewardModel", "Samples", "TransformerRewardModel", "VerifierReward",
           "best_of_n_curve", "best_of_n_value", "best_of_n_weights", "bradley_terry_label", "bradley_terry_loss",
           "gold_correlation", "hypergradient", "kl_best_of_n", "label_pairs", "pair_accuracy",
           "preference_probability", "sample_responses", "sequence_features", "train_members", "train_samples"]
