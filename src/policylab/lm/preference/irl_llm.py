"""Inverse RL meets LLM post-training (Sun & van der Schaar, arXiv 2507.13158, 2025): the survey's reward-model
toolkit as working code on the tiny testbed. Generation is an MDP without a reward (MDP\\R); the reward is
learned from human data, then evaluated before anything is optimized against it.

- Reward from preferences (the survey's Bradley-Terry model):
      P(y1 > y2 | x) = sigmoid(r(x, y1) - r(x, y2)),   loss -log sigmoid(r(x, y_w) - r(x, y_l))
  on frozen embeddings of the policy (the survey's CPU-friendly "embedding-based" reward models):
  `reward_from_preferences`.
- Reward from demonstrations (the adversarial / discriminator family it reviews): a classifier D between
  demonstrations and policy samples; its logit is the reward,
      r(x, y) = log D(x, y) / (1 - D(x, y)),  which at the optimal D is log p_demo(y | x) / p_policy(y | x),
  so responses the demonstrator writes more often than the policy score high: `reward_from_demonstrations`.
- Evaluation, always against the gold reward: held-out pair accuracy, Pearson and Spearman correlation
  (pooled and within prompt), and the gold score of best-of-n selection: `evaluate_reward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from policylab.core.errors import ConfigError
from policylab.lm.policy import CausalPolicy
from policylab.lm.preference.best_of_n import best_of_n_value
from policylab.lm.preference.data import PreferencePairs, Samples
from policylab.lm.preference.gold import GoldReward
from policylab.lm.preference.reward_model import (
    DEFAULT_FIT,
    EmbeddingRewardModel,
    RewardFitConfig,
    RewardModel,
    gold_correlation,
    pair_accuracy,
)
from policylab.lm.tasks import Problem, Tokenizer


def reward_from_preferences(base: CausalPolicy, tokenizer: Tokenizer, pairs: PreferencePairs,
                            cfg: RewardFitConfig = DEFAULT_FIT, seed: int = 0) -> EmbeddingRewardModel:
    """A Bradley-Terry reward model on `base`'s frozen features, fitted to the pairs' labels."""
    model = EmbeddingRewardModel(base, tokenizer, cfg.hidden, seed)
    model.fit(pairs, cfg, seed)
    return model


def reward_from_demonstrations(base: CausalPolicy, tokenizer: Tokenizer, demo_problems: Sequence[Problem],
                               demonstrations: Sequence[str], samples: Samples,
                               cfg: RewardFitConfig = DEFAULT_FIT, seed: int = 0) -> EmbeddingRewardModel:
    """A logistic discriminator (demonstrations 1, policy samples 0) whose logit is the reward."""
    if not demonstrations or not samples.problems:
        raise ConfigError("reward_from_demonstrations needs demonstrations and policy samples")
    sample_problems, sample_responses, _ = samples.flat()
    problems = list(demo_problems) + sample_problems
    responses = list(demonstrations) + sample_responses
    labels = torch.cat([torch.ones(len(demonstrations)), torch.zeros(len(sample_responses))])
    model = EmbeddingRewardModel(base, tokenizer, cfg.hidden, seed)
    features = model.all_features(problems, responses)
    # the classes are weighted to equal mass, so the logit's zero is "as likely from either source"
    weight = torch.where(labels > 0, len(labels) / (2 * len(demonstrations)), len(labels) / (2 * len(sample_responses)))
    model.optimize(len(labels), lambda part: F.binary_cross_entropy_with_logits(
        model.raw(features[part]), labels[part], weight[part]), cfg, seed)
    model.normalize_on(problems, responses)
    return model


def evaluate_reward(model: RewardModel, gold: GoldReward, test_pairs: PreferencePairs, test_samples: Samples,
                    best_of: Sequence[int] = (1, 4, 8)) -> dict[str, Any]:
    """Held-out pair accuracy, correlations with gold over the test samples, and best-of-n gold by the model."""
    problems, responses, truncated = test_samples.flat()
    scores, values = model.score(problems, responses), gold.score(problems, responses, truncated)
    n = len(test_samples.responses[0])
    if any(len(r) != n for r in test_samples.responses):
        raise ConfigError("evaluate_reward needs the same number of samples for every test prompt")
    groups = [i for i in range(len(test_samples.problems)) for _ in range(n)]
    out: dict[str, Any] = {"pair_accuracy": pair_accuracy(model, test_pairs),
                           **gold_correlation(scores, values, groups)}
    for k in best_of:
        out[f"best_of_{k}_gold"] = float(best_of_n_value(scores.view(-1, n), values.view(-1, n), k).mean())
    return out
