"""Reward models for language models: the protocol, Bradley-Terry fitting, ensembles, evaluation.

A reward model maps (problem, response) pairs to scalars: `score(problems, responses) -> [B]`.
- `VerifierReward`: the task's exact match (RLVR's reward).
- `EmbeddingRewardModel`: an MLP on frozen sequence features of a base policy (the final hidden
  state at EOS and the mean over response tokens): the survey's CPU-friendly reward model.
- `TransformerRewardModel`: a scalar head on a tiny transformer that is fine-tuned with it.
Both learned models are fit by Bradley-Terry, -log sigmoid(r(x, y_w) - r(x, y_l)) plus a small L2 on
the scores, beta/2 (r_w^2 + r_l^2) averaged over pairs (`score_l2_penalty`, the form Coste et al.'s
trainer uses; PARL uses the same function), then normalized to mean 0 and std 1 over the responses
they were fit on, so that ensemble members are on one scale before a min or a variance
(`rm_ensemble.RewardEnsemble`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.nn import mlp
from policylab.core.stats import spearman
from policylab.data.preferences import bradley_terry_loss as preference_loss
from policylab.lm.policy import CausalPolicy, position_ids_from_mask
from policylab.lm.preference.data import PreferencePairs
from policylab.lm.pretrain import teacher_forced_batch
from policylab.lm.tasks import Problem, Task, TaskMix, Tokenizer


class RewardModel(Protocol):
    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> torch.Tensor:
        """[B] rewards of response i to problem i."""


def score_l2_penalty(chosen: torch.Tensor, rejected: torch.Tensor, coef: float) -> torch.Tensor:
    """coef * mean over pairs of (r_w^2 + r_l^2) / 2: the score L2 that pins a Bradley-Terry model's free offset.

    The 1/2 is Coste et al.'s convention: their trainer (tlc4418/llm_optimization, `trainer_rm.py`) takes
    Open-Assistant's `RMLoss`, which adds `score_l2_reg * 0.5 * (pos**2 + neg**2)` per pair, with 0.001.
    Equivalently coef times the mean square over all 2N scores (how PARL's gradient is written)."""
    return (0.5 * coef) * (chosen ** 2 + rejected ** 2).mean()


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-log sigmoid(r_w - r_l), averaged over pairs (reduction "mean") or per pair ("none"): the general
    Bradley-Terry loss of `policylab.data.preferences` with every label saying "chosen wins"."""
    return preference_loss(chosen, rejected, torch.ones_like(chosen), reduction)


class VerifierReward:
    """The task's exact-match reward as a reward model."""

    def __init__(self, task: Task | TaskMix):
        self.task = task

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.task.score(p, r).exact for p, r in zip(problems, responses)])


def sequence_features(trunk: CausalPolicy, tokenizer: Tokenizer, problems: Sequence[Problem],
                      responses: Sequence[str]) -> torch.Tensor:
    """[B, 2 D + 2]: the trunk's final hidden state at the response's EOS, its mean over response tokens,
    and the mean and minimum log-likelihood of the response's tokens (EOS included) under the trunk.

    The likelihoods are the trunk's own reading of the response, which its hidden states hold only
    implicitly; without them a small head on a tiny trunk barely orders responses by correctness.
    """
    batch = teacher_forced_batch(tokenizer, [p.prompt for p in problems], list(responses))
    ids, attn, P = batch["input_ids"], batch["attention_mask"], batch["prompt_len"]
    if ids.shape[1] > trunk.max_length:
        raise ConfigError(f"a prompt + response of {ids.shape[1]} tokens exceeds the reward model's context of "
                          f"{trunk.max_length} tokens")
    out = trunk.step(ids, attn, position_ids_from_mask(attn), want_hidden=True)
    hidden, mask = out.hidden[:, P:], batch["response_mask"]
    logp = torch.log_softmax(out.logits[:, P - 1:-1].float(), -1).gather(-1, ids[:, P:, None]).squeeze(-1)
    tokens = mask.sum(-1, keepdim=True).clamp(min=1)
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    at_eos = hidden[torch.arange(len(last)), last]
    mean = (hidden * mask[..., None]).sum(1) / tokens
    mean_logp = (logp * mask).sum(-1, keepdim=True) / tokens
    min_logp = logp.masked_fill(mask == 0, 0.0).min(-1, keepdim=True).values
    return torch.cat([at_eos, mean, mean_logp, min_logp], -1)


@dataclass(frozen=True)
class RewardFitConfig(Config):
    epochs: int = param(20, gt=0)
    steps: int | None = param(None, gt=0)
    """Gradient steps in all (overrides `epochs`): the same optimization budget for any data size."""
    batch_size: int = param(64, gt=0)
    lr: float = param(1e-3, gt=0)
    score_l2: float = param(2e-3, ge=0)
    """beta of the score L2 beta/2 (r_w^2 + r_l^2) (`score_l2_penalty`, Coste et al.'s form), which pins the
    scores' offset. 2e-3 is twice Coste et al.'s 0.001: it keeps the penalty these models were always fit with
    (earlier written 0.001 (r_w^2 + r_l^2))."""
    hidden: tuple[int, ...] = (64,)
    """The head's hidden widths (embedding model)."""


DEFAULT_FIT = RewardFitConfig()


class LearnedRewardModel(nn.Module):
    """Shared by the two learned models: Bradley-Terry fitting, normalization, `score`."""

    trains_trunk = False

    def __init__(self, trunk: CausalPolicy, tokenizer: Tokenizer, head: nn.Module):
        super().__init__()
        self.trunk, self.tokenizer, self.head = trunk, tokenizer, head
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def features(self, problems: Sequence[Problem], responses: Sequence[str]) -> torch.Tensor:
        return sequence_features(self.trunk, self.tokenizer, problems, responses)

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).squeeze(-1)

    @torch.no_grad()
    def all_features(self, problems: Sequence[Problem], responses: Sequence[str], chunk: int = 512) -> torch.Tensor:
        return torch.cat([self.features(problems[i:i + chunk], responses[i:i + chunk])
                          for i in range(0, len(responses), chunk)]) if len(responses) else torch.zeros(0, 0)

    @torch.no_grad()
    def score_features(self, features: torch.Tensor) -> torch.Tensor:
        """Normalized scores from precomputed features (members sharing a frozen trunk share them)."""
        was_training = self.training
        self.eval()
        out = self.raw(features) if len(features) else torch.zeros(0)
        self.train(was_training)
        return (out - self.shift) / self.scale

    def score(self, problems: Sequence[Problem], responses: Sequence[str]) -> torch.Tensor:
        was_training = self.training
        self.eval()  # the trunk's features in eval mode, as in scoring
        features = self.all_features(problems, responses)
        self.train(was_training)
        return self.score_features(features)

    def fit(self, pairs: PreferencePairs, cfg: RewardFitConfig = DEFAULT_FIT, seed: int = 0,
            features: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[float]:
        """Bradley-Terry on the pairs' labels; returns the loss per epoch. Normalizes the scores afterwards.

        `features` (chosen, rejected) precomputed by this model's frozen trunk save recomputing them."""
        if len(pairs) == 0:
            raise ConfigError("a reward model needs at least one preference pair to fit")
        if features is not None and self.trains_trunk:
            raise ConfigError("precomputed features are for reward models with a frozen trunk")
        cached = features
        if cached is None and not self.trains_trunk:  # frozen features: compute once
            cached = (self.all_features(pairs.problems, pairs.chosen),
                      self.all_features(pairs.problems, pairs.rejected))

        def loss_of(part: torch.Tensor) -> torch.Tensor:
            if cached is not None:
                chosen, rejected = self.raw(cached[0][part]), self.raw(cached[1][part])
            else:
                sub = pairs.subset(part.tolist())
                chosen = self.raw(self.features(sub.problems, sub.chosen))
                rejected = self.raw(self.features(sub.problems, sub.rejected))
            return bradley_terry_loss(chosen, rejected) + score_l2_penalty(chosen, rejected, cfg.score_l2)

        losses = self.optimize(len(pairs), loss_of, cfg, seed)
        if cached is not None:
            self.normalize_scores(self.score_features(torch.cat(cached)))
        else:
            self.normalize_on(pairs.problems + pairs.problems, pairs.chosen + pairs.rejected)
        return losses

    def optimize(self, size: int, loss_of: Callable[[torch.Tensor], torch.Tensor], cfg: RewardFitConfig,
                 seed: int) -> list[float]:
        """Adam on `loss_of(index)` over shuffled minibatches of `size` items; the mean loss per epoch."""
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=cfg.lr)
        epochs = cfg.epochs if cfg.steps is None else math.ceil(cfg.steps / math.ceil(size / cfg.batch_size))
        losses = []
        self.train()
        for _ in range(epochs):
            total = 0.0
            for part in torch.randperm(size, generator=generator).split(cfg.batch_size):
                loss = loss_of(part)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(part)
            losses.append(total / size)
        return losses

    def normalize_on(self, problems: Sequence[Problem], responses: Sequence[str]) -> None:
        """Shift and scale the scores to mean 0 and std 1 over these responses."""
        self.shift.zero_()
        self.scale.fill_(1.0)
        self.normalize_scores(self.score(problems, responses))

    def normalize_scores(self, scores: torch.Tensor) -> None:
        """Fold the mean and std of `scores` (this model's current scores of some responses) into the shift
        and scale, so that those responses score mean 0 and std 1."""
        scale = float(scores.std().clamp(min=1e-6)) if len(scores) > 1 else 1.0
        self.shift.add_(self.scale * float(scores.mean()))
        self.scale.mul_(scale)


class EmbeddingRewardModel(LearnedRewardModel):
    """An MLP head on the frozen features of a copy of `base` (which is left untouched)."""

    def __init__(self, base: CausalPolicy, tokenizer: Tokenizer, hidden: tuple[int, ...] = (64,), seed: int = 0,
                 share_base: bool = False):
        """`share_base` uses `base` itself as the frozen trunk (it must stay frozen), so that ensemble
        members built on one base compute its features once (`RewardEnsemble.member_scores`)."""
        trunk = base if share_base else copy.deepcopy(base)
        trunk.eval().requires_grad_(False)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            head = mlp(2 * feature_width(trunk) + 2, 1, hidden)
        super().__init__(trunk, tokenizer, head)

    def train(self, mode: bool = True) -> EmbeddingRewardModel:
        super().train(mode)
        self.trunk.eval()  # frozen: no dropout or other train-mode behaviour
        return self


class TransformerRewardModel(LearnedRewardModel):
    """A copy of `base` fine-tuned with a linear scalar head on its sequence features."""

    trains_trunk = True

    def __init__(self, base: CausalPolicy, tokenizer: Tokenizer, seed: int = 0):
        trunk = copy.deepcopy(base)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            head = nn.Linear(2 * feature_width(trunk) + 2, 1)
        super().__init__(trunk, tokenizer, head)


def feature_width(policy: CausalPolicy) -> int:
    width = getattr(getattr(policy, "cfg", None), "d_model", None) or getattr(policy, "hidden_size", None)
    if width is None:
        raise ConfigError(f"cannot read the hidden width of {type(policy).__name__} for a reward head")
    return int(width)


def pair_accuracy(model: RewardModel, pairs: PreferencePairs) -> float:
    """Share of pairs with a gold difference where the model orders the two responses as the gold does."""
    decided = pairs.gold_margin != 0
    if not decided.any():
        raise ConfigError("pair_accuracy needs pairs whose gold values differ")
    sub = pairs.subset(decided.nonzero().flatten().tolist())
    margin = model.score(sub.problems, sub.chosen) - model.score(sub.problems, sub.rejected)
    return float(((margin > 0) == (sub.gold_margin > 0)).float().mean())


def gold_correlation(scores: torch.Tensor, gold: torch.Tensor, groups: Sequence[int] | None = None) -> dict[str, float]:
    """Pearson and Spearman correlation of a model's scores with the gold values of the same responses;
    with `groups` (a prompt id per response) also `spearman_within`, the mean over prompts whose gold values
    differ of the within-prompt Spearman: Bradley-Terry fixes only differences within a prompt, so a
    reward model's offsets across prompts are arbitrary and the pooled correlations understate it."""
    x, y = scores.double().numpy(), gold.double().numpy()
    pearson = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0
    out = {"pearson": pearson, "spearman": spearman(x, y)}
    if groups is not None:
        ids = np.asarray(groups)
        within = [spearman(x[ids == g], y[ids == g]) for g in np.unique(ids)
                  if (ids == g).sum() > 1 and np.ptp(y[ids == g]) > 0]
        out["spearman_within"] = float(np.mean(within)) if within else 0.0
    return out
