"""Reward Model Ensembles Help Mitigate Overoptimization (Coste, Anwar, Kirk, Krueger; ICLR 2024,
arXiv 2310.02743; official code tlc4418/llm_optimization).

k proxy reward models, identical but for their seed (head initialization and data order), trained with
Bradley-Terry on the same gold-labelled pairs (optionally with 25% of the labels flipped), normalized,
then optimized against through one of three objectives (paper Sec. 3.2):
    mean   R(x, y) = (1/k) sum_i r_i(x, y)
    WCO    R(x, y) = min_i r_i(x, y)                                   (worst-case optimization)
    UWO    R(x, y) = (1/k) sum_i r_i(x, y) - lambda Var_i r_i(x, y)    (uncertainty-weighted optimization)
The official code takes the population variance (1/k) for best-of-n and torch's unbiased one (1/(k-1))
for PPO; both are available. UWO's lambda: 0.5 for best-of-n, 0.1 for PPO (their configs).
Optimization: best-of-n (measured with the unbiased estimator at KL_BoN = log n - (n-1)/n) and RL with a
small KL penalty to the initial policy through the RLVR engine (`train_rlvr(reward_model=...)`); every
curve is gold and proxy score against KL from the initial policy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from policylab.core.errors import ConfigError
from policylab.lm.policy import CausalPolicy
from policylab.lm.preference.best_of_n import best_of_n_value, kl_best_of_n
from policylab.lm.preference.data import PreferencePairs, Samples
from policylab.lm.preference.gold import GoldReward
from policylab.lm.preference.reward_model import DEFAULT_FIT, EmbeddingRewardModel, RewardFitConfig, RewardModel
from policylab.lm.tasks import Problem, Tokenizer

ENSEMBLE_OBJECTIVES = ("mean", "wco", "uwo")


class RewardEnsemble:
    """Members' normalized scores combined by `objective`: mean, wco (min) or uwo (mean - weight * var).

    `unbiased_variance` chooses 1 / (k - 1) (Coste et al.'s PPO code) over 1 / k (their best-of-n code).
    """

    def __init__(self, members: Sequence[RewardModel], objective: str = "mean", uwo_weight: float = 0.5,
                 unbiased_variance: bool = False):
        if objective not in ENSEMBLE_OBJECTIVES:
            raise ConfigError(f"objective = {objective!r} is not allowed: one of {', '.join(ENSEMBLE_OBJECTIVES)}")
        if not members:
            raise ConfigError("a reward ensemble needs at least one member")
        if uwo_weight < 0:
            raise ConfigError(f"uwo_weight = {uwo_weight} is not allowed: must be >= 0")
        self.members, self.objective = list(members), objective
        self.uwo_weight, self.unbiased_variance = uwo_weight, unbiased_variance

    def member_scores(self, problems: Sequence[Problem], responses: Sequence[str]) -> torch.Tensor:
        """[k, B]; the features are computed once when every member is an embedding model on one trunk."""
        first = self.members[0]
        if all(isinstance(m, EmbeddingRewardModel) and m.trunk is first.trunk for m in self.members):
            features = first.all_features(problems, responses)
            return torch.stack([m.score_features(features) for m in self.members])
        return torch.stack([m.score(problems, responses) for m in self.members])

    def combine(self, scores: torch.Tensor) -> torch.Tensor:
        """[k, B] member scores -> [B]."""
        if self.objective == "mean":
            return scores.mean(0)
        if self.objective == "wco":
            return scores.min(0).values
        variance = scores.var(0, correction=1 if self.unbiased_variance else 0) if len(scores) > 1 else \
            torch.zeros_like(scores[0])
        return scores.mean(0) - self.uwo_weight * variance

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> torch.Tensor:
        return self.combine(self.member_scores(problems, responses))


def train_members(base: CausalPolicy, tokenizer: Tokenizer, pairs: PreferencePairs, k: int = 5,
                  cfg: RewardFitConfig = DEFAULT_FIT, seed: int = 0) -> list[EmbeddingRewardModel]:
    """k Bradley-Terry members on one shared frozen copy of `base`, seeds seed*k .. seed*k + k - 1."""
    if k < 1:
        raise ConfigError(f"k = {k} is not allowed: an ensemble needs at least one member")
    trunk = copy.deepcopy(base)  # one frozen copy for all members (they freeze it)
    members = [EmbeddingRewardModel(trunk, tokenizer, cfg.hidden, seed * k + i, share_base=True) for i in range(k)]
    features = (members[0].all_features(pairs.problems, pairs.chosen),
                members[0].all_features(pairs.problems, pairs.rejected))  # computed once for every member
    for i, member in enumerate(members):
        member.fit(pairs, cfg, seed * k + i, features)
    return members


def best_of_n_curve(model: RewardModel, gold: GoldReward, pool: Samples, ns: Sequence[int],
                    member_scores: torch.Tensor | None = None) -> list[dict[str, float]]:
    """Gold and proxy value of best-of-n by `model` from a pool of N samples per prompt, for each n in `ns`.

    `member_scores` [k, P * N] (when `model` is a `RewardEnsemble` whose members were already scored on the
    pool) saves rescoring."""
    problems, responses, truncated = pool.flat()
    N = len(pool.responses[0])
    if any(len(r) != N for r in pool.responses):
        raise ConfigError("best_of_n_curve needs the same pool size for every prompt")
    if member_scores is not None and isinstance(model, RewardEnsemble):
        proxy = model.combine(member_scores)
    else:
        proxy = model.score(problems, responses)
    proxy, values = proxy.view(-1, N), gold.score(problems, responses, truncated).view(-1, N)
    return [{"n": float(n), "kl": kl_best_of_n(n), "gold": float(best_of_n_value(proxy, values, n).mean()),
             "proxy": float(best_of_n_value(proxy, proxy, n).mean())} for n in ns]
