"""Shared by the multi-turn tests: a random tiny policy that ends its turns early, and episode batches."""

from __future__ import annotations

import random

import torch

from policylab.lm.generate import SamplingConfig
from policylab.lm.multiturn import EpisodeBatch, SearchEnv, episode_batch, run_episodes
from policylab.lm.policy import TinyGPT, TinyGPTConfig
from policylab.lm.tasks import CharTokenizer

TOK = CharTokenizer()


class EosBiased(TinyGPT):
    """A random tiny GPT whose EOS logit is raised, so that its turns end early and episodes reach
    several turns (an unbiased random model rarely emits EOS within a turn's budget)."""

    eos_bias = 3.0

    def step(self, *args, **kwargs):
        out = super().step(*args, **kwargs)
        out.logits[..., TOK.eos_id] += self.eos_bias
        return out


def random_policy(seed: int = 0, block_size: int = 96, eos_bias: float = 3.0) -> EosBiased:
    torch.manual_seed(seed)
    policy = EosBiased(TinyGPTConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=1, n_head=2,
                                     d_model=32))
    policy.eos_bias = eos_bias
    return policy


def search_episodes(policy: TinyGPT, n_groups: int = 4, G: int = 2, max_turns: int = 4, seed: int = 0,
                    temperature: float = 1.0) -> EpisodeBatch:
    """G episodes on each of `n_groups` 3-digit search codes, 4 tokens per turn at most."""
    env = SearchEnv(length=3, max_turns=max_turns)
    problems = [p for p in env.sample(n_groups, "train", random.Random(seed)) for _ in range(G)]
    ep = run_episodes(policy, env, problems, TOK, SamplingConfig(max_new_tokens=4, temperature=temperature),
                      torch.Generator().manual_seed(seed))
    return episode_batch(ep, G, max_turns, TOK, env)
