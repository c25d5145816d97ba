"""Base models for multi-turn environments: supervised warm start on the environment's noisy scripted
demonstrations, so that RL starts from a policy that knows the turn format but plays it badly.

Every agent turn of a demonstration is a target (observations are context only): the base learns
the demonstrator's habits, mistakes included (retry: repeated wrong answers; search: skipped and
redundant queries). Training stops once greedy multi-turn success on validation problems reaches
`target_pass`, leaving RL room above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import param
from policylab.lm.generate import SamplingConfig
from policylab.lm.multiturn.rollout import pad_episodes, run_episodes
from policylab.lm.multiturn.train import EnvConfig, distinct_episodes, evaluate_episodes
from policylab.lm.pretrain import BASE_MODELS, PretrainConfig, SFTSource
from policylab.lm.tasks import Problem, Tokenizer, prompt_ids


def transcript_tokens(tokenizer: Tokenizer, turns: list[tuple[str, str]]) -> tuple[list[int], list[float]]:
    """The response tokens of an episode [(agent text, observation), ...] and its agent mask: each agent
    turn ends with EOS, exactly as `run_episodes` lays a played episode out."""
    tokens: list[int] = []
    mask: list[float] = []
    for action, observation in turns:
        own = tokenizer.encode(action) + [tokenizer.eos_id]
        obs = tokenizer.encode(observation)
        tokens += own + obs
        mask += [1.0] * len(own) + [0.0] * len(obs)
    return tokens, mask


def demonstration_batch(tokenizer: Tokenizer, problems: list[Problem], demos: list[list[tuple[str, str]]]
                        ) -> dict[str, Any]:
    """The supervised batch of demonstrations, in `teacher_forced_batch`'s layout (agent tokens are targets)."""
    pairs = [transcript_tokens(tokenizer, d) for d in demos]
    ids, attn, P, right = pad_episodes([prompt_ids(tokenizer, p.prompt) for p in problems],
                                       [t for t, _ in pairs], tokenizer.pad_id)
    return {"input_ids": ids, "attention_mask": attn, "prompt_len": P,
            "response_mask": right([m for _, m in pairs], 0.0, torch.float)}


@dataclass(frozen=True)
class DemonstrationPretrainConfig(PretrainConfig, EnvConfig):
    """A base-model recipe trained on an environment's demonstrations (noise knobs: see the env)."""

    task: str = "multi-turn"
    """Unused (the environment supplies the problems); kept so the recipe hash names the kind."""
    repeat_prob: float = param(0.3, ge=0, le=1)
    """retry: a wrong demonstration answer repeats the previous wrong one with this chance."""
    first_right_prob: float = param(0.4, ge=0, le=1)
    """retry: each demonstration turn is the right answer with this chance."""
    skip_prob: float = param(0.3, ge=0, le=1)
    """search: a position is never queried with this chance."""
    redundant_prob: float = param(0.25, ge=0, le=1)
    """search: a redundant re-query follows a query with this chance."""

    def check(self) -> None:
        super().check()
        self.check_turn_budget()

    def demo_env(self) -> Any:
        noise = ({"repeat_prob": self.repeat_prob, "first_right_prob": self.first_right_prob} if self.env == "retry"
                 else {"skip_prob": self.skip_prob, "redundant_prob": self.redundant_prob})
        return self.make_env(**noise)

    def sft_source(self, tokenizer: Tokenizer) -> Any:
        env = self.demo_env()
        return SFTSource(env, tokenizer, self.batch_size, self.seed, lambda tok, problems, rng: demonstration_batch(
            tok, problems, [env.demonstration(p, rng) for p in problems]))

    def validation(self, tokenizer: Tokenizer) -> Any:
        env = self.demo_env()
        val = distinct_episodes(env, self.eval_prompts, "val", seed=self.seed + 1)
        greedy = SamplingConfig(max_new_tokens=self.max_new_tokens, greedy=True)
        return lambda policy: float(sum(run_episodes(policy, env, val, tokenizer, greedy, None, "end").success)
                                    / len(val))

    def test_report(self, tokenizer: Tokenizer) -> Any:
        env = self.demo_env()
        test = distinct_episodes(env, self.eval_prompts, "test", seed=self.seed + 2)
        return lambda policy: evaluate_episodes(policy, tokenizer, env, test, self.max_new_tokens, seed=self.seed)


BASE_MODELS.add("tiny-retry", DemonstrationPretrainConfig(
    env="retry", env_task="gcd", max_turns=5, n_layer=2, n_head=2, d_model=64, block_size=96, max_new_tokens=6,
    max_steps=1500, target_pass=1.0, eval_every=250, eval_prompts=100))
BASE_MODELS.add("tiny-search", DemonstrationPretrainConfig(
    env="search", code_length=3, max_turns=5, n_layer=2, n_head=2, d_model=64, block_size=64, max_new_tokens=6,
    max_steps=3000, target_pass=0.3, eval_every=100, eval_prompts=100))
BASE_MODELS.add("tiny-search-long", DemonstrationPretrainConfig(
    env="search", code_length=5, max_turns=8, reveal="board", n_layer=2, n_head=2, d_model=64, block_size=96,
    max_new_tokens=8, max_steps=3000, target_pass=0.3, eval_every=100, eval_prompts=100, skip_prob=0.2,
    redundant_prob=0.3))
