"""Multi-turn RL on the engine: `MultiTurnConfig` (an `RLVRConfig` plus the environment and the episode
reward), held-out episode evaluation, and `train_multiturn`, which runs the engine's `RLVR` update on
episodes from `MultiTurnSource`.

The episode reward turns each episode's turn records into one scalar per row (the engine's reward
slot); methods that credit turns separately (IGPO, EMPG) do so in the advantage slot, which sees the
whole `EpisodeBatch`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.registry import Registry
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.lm.generate import SamplingConfig
from policylab.lm.multiturn.envs import MultiTurnEnv, RetryEnv, SearchEnv
from policylab.lm.multiturn.rollout import (
    CONTEXT_POLICIES,
    EpisodeBatch,
    MultiTurnSource,
    episode_batch,
    episode_statistics,
    run_episodes,
)
from policylab.lm.policy import CausalPolicy
from policylab.lm.pretrain import load_policy
from policylab.lm.tasks import Problem, Tokenizer, distinct_problems
from policylab.lm.trainer import RLVR, TEST_SET_SEED, RLVRConfig, fit_rlvr

EPISODE_REWARDS: Registry = Registry("episode reward")


@EPISODE_REWARDS.register("outcome")
def outcome_reward(batch: EpisodeBatch, cfg: Any) -> torch.Tensor:
    """1 for an episode that ends with a right final answer, else 0."""
    return batch.exact.clone()


@EPISODE_REWARDS.register("return")
def summed_turn_rewards(batch: EpisodeBatch, cfg: Any) -> torch.Tensor:
    """The sum of the environment's turn rewards (equal to `outcome` for retry and search, whose only
    rewarded turn is a right final answer; environments with intermediate rewards differ)."""
    return batch.turn_rewards.sum(-1).to(batch.exact.device)


@dataclass(frozen=True)
class EnvConfig(Config):
    """Which environment, and its size. Shared by RL configs and the multi-turn base-model recipes."""

    env: str = param("retry", choices=("retry", "search"))
    env_task: str = "gcd"
    """retry: the verifiable task (or mix) of the questions."""
    code_length: int = param(3, ge=1, le=9)
    """search: digits of the hidden code."""
    reveal: str = param("digit", choices=("digit", "board"))
    """search: a query shows its digit (`=7`) or every digit found so far in place (`=_7_`)."""
    max_turns: int = param(5, gt=0)
    """T: agent turns per episode at most."""

    def check_turn_budget(self) -> None:
        """A search answer `!` + the code + EOS must fit one turn, or every episode ends cut off."""
        need = self.code_length + 2
        budget = getattr(self, "max_new_tokens", need)
        if self.env == "search" and budget < need:
            raise ConfigError(f"{type(self).__name__}.max_new_tokens = {budget} is not allowed with code_length = "
                              f"{self.code_length}: the answer turn needs {need} tokens (!, the digits, EOS)")

    def make_env(self, **demo_noise: float) -> MultiTurnEnv:
        if self.env == "retry":
            return RetryEnv(self.env_task, self.max_turns, **demo_noise)
        return SearchEnv(self.code_length, self.max_turns, reveal=self.reveal, **demo_noise)


@dataclass(frozen=True)
class MultiTurnConfig(RLVRConfig, EnvConfig):
    base_model: str = "tiny-retry"
    max_new_tokens: int = param(6, gt=0)
    """Tokens per agent turn at most (a turn without EOS within it ends the episode as a failure)."""
    episode_reward: str = "outcome"
    """Episode -> scalar reward (`EPISODE_REWARDS`)."""
    context_policy: str = param("error", choices=CONTEXT_POLICIES)
    """When the next turn cannot fit the model's context: stop with an error, or end the episode there."""
    eval_samples: int = param(4, gt=0)
    """Sampled episodes (T = 1) per held-out problem, besides the greedy one."""
    eval_max_turns: int = param(0, ge=0)
    """Turns of a held-out episode; 0 means max_turns. Lets a policy trained on single turns (max_turns = 1)
    be judged on multi-turn episodes."""

    def check(self) -> None:
        super().check()
        self.check_turn_budget()
        if self.episode_reward not in EPISODE_REWARDS:
            raise ConfigError(f"{type(self).__name__}.episode_reward = {self.episode_reward!r} is not allowed: "
                              f"known episode rewards: {', '.join(EPISODE_REWARDS.names())}")
        if self.shaping:
            raise ConfigError(f"{type(self).__name__}.shaping = {self.shaping!r} is not allowed on multi-turn "
                              "episodes: shapers read single responses; put episode-level terms in the reward")


def distinct_episodes(env: MultiTurnEnv, n: int, split: str, seed: int) -> list[Problem]:
    """Up to n problems with distinct (prompt, answer), the same list for the same seed."""
    return distinct_problems(env, n, split, seed, by_answer=True)


def evaluate_episodes(policy: CausalPolicy, tokenizer: Tokenizer, env: MultiTurnEnv, problems: list[Problem],
                      max_new_tokens: int, samples: int = 4, seed: int = 0, context_policy: str = "end",
                      chunk: int = 512) -> dict[str, float]:
    """Greedy episodes (`greedy_*`) and `samples` sampled episodes at T = 1 per problem (`sampled_*`):
    success within T turns, success at the first turn, turns, repeated-action rate."""
    out: dict[str, float] = {}
    generator = torch.Generator(device=next(policy.parameters()).device).manual_seed(seed)
    for label, sampling, repeats in (("greedy", SamplingConfig(max_new_tokens=max_new_tokens, greedy=True), 1),
                                     ("sampled", SamplingConfig(max_new_tokens=max_new_tokens), samples)):
        rows = [p for p in problems for _ in range(repeats)]
        stats: dict[str, list[tuple[float, int]]] = {}
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            ep = run_episodes(policy, env, part, tokenizer, sampling, generator, context_policy)
            batch = episode_batch(ep, 1, env.max_turns, tokenizer, env)
            for key, value in episode_statistics(batch).items():
                stats.setdefault(key, []).append((value, len(part)))
        for key, values in stats.items():
            out[f"{label}_{key}"] = sum(v * w for v, w in values) / sum(w for _, w in values)
    return out


def train_multiturn(cfg: MultiTurnConfig, *, env_id: str | None = None, seed: int = 0, steps: int = 200,
                    run: RunDir | None = None, max_seconds: float | None = None, progress: bool | None = None,
                    evals: int = 10, checkpoints: int = 10, callbacks: tuple[Callable, ...] = (),
                    name: str = "multiturn", extra_eval: Callable[[RLVR], dict[str, float]] | None = None
                    ) -> dict[str, Any]:
    """Multi-turn RL for `steps` updates of `cfg.prompts_per_step` problems x G episodes; held-out
    episodes evaluated `evals` times. `env_id`, when given, overrides `cfg.env` (the CLI's --env)."""
    if steps <= 0:
        raise ConfigError(f"steps = {steps} is not allowed: must be > 0 updates")
    if env_id is not None and env_id != cfg.env:
        cfg = cfg.replace(env=env_id)
    env = cfg.make_env()
    policy, tokenizer = load_policy(cfg.base_model, progress=progress)
    policy.to(cfg.device)
    seed_everything(seed)
    reference = copy.deepcopy(policy).eval() if cfg.kl_coef > 0 else None
    algo = RLVR(policy, cfg, reference, name)
    source = MultiTurnSource(env, tokenizer, cfg, seed, EPISODE_REWARDS.get(cfg.episode_reward))
    eval_env = cfg.replace(max_turns=cfg.eval_max_turns).make_env() if cfg.eval_max_turns else env
    test = distinct_episodes(eval_env, cfg.eval_prompts, "test", seed=TEST_SET_SEED)

    def evaluate(a: RLVR) -> dict[str, float]:
        result = evaluate_episodes(a.policy, tokenizer, eval_env, test, cfg.max_new_tokens, cfg.eval_samples,
                                   seed=TEST_SET_SEED + seed, context_policy=cfg.context_policy)
        return {**result, **(extra_eval(a) if extra_eval is not None else {})}

    return fit_rlvr(algo, source, evaluate, run=run, steps=steps, max_seconds=max_seconds, progress=progress,
                    evals=evals, checkpoints=checkpoints, callbacks=callbacks, test_problems=test, tokenizer=tokenizer,
                    env=env, run_info={"env": cfg.env, "seed": seed})
