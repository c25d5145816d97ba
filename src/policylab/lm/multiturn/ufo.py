"""UFO — Unary Feedback as Observation (Liu et al., "A Simple 'Try Again' Can Elicit Multi-Turn LLM
Reasoning", arXiv 2507.14295; official code github.com/lichengliu03/unary-feedback, built on RAGEN).

A static question set becomes a multi-turn episode: after a wrong answer the context gets only a
unary "try again" (the `retry` environment), and the episode goes on until the answer is right or
T answers were given. The reward prefers early success and new answers:

    R(tau) = sum_t gamma^t 1[answer_t correct]  -  lambda (1 - E / T_tau)          (reward, Sec. 3)

with t = 0, 1, ... the turn, gamma = 0.5 (the code's `exponential_decay`, 1 / 2^t), E the number of
distinct answers after whitespace/case folding and T_tau the number of answers given, lambda = 0.5.
Only the last turn can be correct (the episode stops on success), so the first term is gamma^t* for
success at turn t*. The paper optimizes with PPO and a critic; here the episode return feeds the
engine's group-relative advantage (the notes' toy-scale choice), every agent token of the episode
sharing it.

Where sources differ: one version of the official environment charges the penalty at every step,
with E counted before the current answer is added (so the first answer already pays lambda); we
follow the paper's episode-level form above. The code's format penalty (-0.1 for an unparseable
answer) has no counterpart: our answers are scored by the task's own parser, and a turn cut at
max_new_tokens ends the episode unsolved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.lm.multiturn.rollout import EpisodeBatch
from policylab.lm.multiturn.train import EPISODE_REWARDS, MultiTurnConfig


@dataclass(frozen=True)
class UFOConfig(MultiTurnConfig):
    episode_reward: str = "ufo"
    turn_discount: float = param(0.5, gt=0, le=1)
    """gamma: a right answer at turn t earns gamma^t."""
    repeat_penalty: float = param(0.5, ge=0)
    """lambda: weight of the share of repeated answers, 1 - E/T."""


def repeated_answer_share(keys: list[list[str | None]]) -> torch.Tensor:
    """1 - E/T per episode: E distinct normalized answers among the T answers given (0 with no answer)."""
    shares = []
    for row in keys:
        answers = [k for k in row if k is not None]
        shares.append(1.0 - len(set(answers)) / len(answers) if answers else 0.0)
    return torch.tensor(shares)


@EPISODE_REWARDS.register("ufo")
def ufo_return(batch: EpisodeBatch, cfg: UFOConfig) -> torch.Tensor:
    """R(tau) = sum_t gamma^t 1[correct_t] - lambda (1 - E/T) per episode (rows of the batch)."""
    discount = cfg.turn_discount ** torch.arange(batch.max_turns, dtype=torch.float)
    solved = (batch.turn_rewards.cpu() * discount).sum(-1)  # the retry turn reward is 1[correct]
    answer_keys = [[k if answered else None for k, answered in zip(row, flags)]
                   for row, flags in zip(batch.keys, batch.turn_answered.tolist())]
    return (solved - cfg.repeat_penalty * repeated_answer_share(answer_keys)).to(batch.exact.device)
