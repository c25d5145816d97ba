"""Multi-turn rollouts: episodes of agent turns and environment observations, kept as one RLVR batch.

Each row of an `EpisodeBatch` is one episode: [left-padded BOS + question | turn 1 tokens, EOS,
observation 1, turn 2 tokens, EOS, ..., right padding]. The response mask covers only the agent's
tokens (observations are context, never trained), so the engine's RLVR objective consumes the batch
unchanged; turn boundaries, per-turn outcomes and the final outcome ride along for the episode
reward and for advantage transforms that assign credit per turn (IGPO, EMPG).

Context length: an episode whose next turn cannot fit the model's context either stops the run
(`context_policy="error"`, a `ContextLengthError` naming the lengths) or ends there as a failure
without the pending observation (`"end"`, counted in `context_ended`). Nothing overflows silently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

import torch

from policylab.core.errors import ConfigError
from policylab.lm.generate import SamplingConfig, generate, left_pad
from policylab.lm.multiturn.envs import MultiTurnEnv, Turn
from policylab.lm.policy import CausalPolicy
from policylab.lm.rollout import RolloutBatch, RolloutSource
from policylab.lm.tasks import Problem, Tokenizer, prompt_ids

CONTEXT_POLICIES = ("error", "end")


class ContextLengthError(ConfigError):
    """An episode's next turn does not fit the model's context (context_policy = 'error')."""


@dataclass
class Episodes:
    """Episodes as token lists, before padding: what `run_episodes` returns."""

    problems: list[Problem]
    prompts: list[list[int]]
    responses: list[list[int]]
    agent_mask: list[list[float]]
    logprobs: list[list[float]]
    turn_of_token: list[list[int]]
    turn_ends: list[list[int]]
    """Per episode, the response length after each turn (its observation included)."""
    turns: list[list[Turn]]
    actions: list[list[str]]
    truncated: list[bool]
    """The last turn hit max_new_tokens without EOS (no action: the episode fails)."""
    context_ended: list[bool]

    @property
    def success(self) -> list[bool]:
        return [bool(ts) and ts[-1].correct for ts in self.turns]


@torch.no_grad()
def run_episodes(policy: CausalPolicy, env: MultiTurnEnv, problems: list[Problem], tokenizer: Tokenizer,
                 sampling: SamplingConfig, generator: torch.Generator | None = None,
                 context_policy: str = "error") -> Episodes:
    """Play one episode per problem (repeat a problem for a group); one batched generation per turn."""
    if context_policy not in CONTEXT_POLICIES:
        raise ConfigError(f"context_policy = {context_policy!r} is not allowed: use one of "
                          f"{', '.join(CONTEXT_POLICIES)}")
    n, room = len(problems), policy.max_length - sampling.max_new_tokens
    prompts = [prompt_ids(tokenizer, p.prompt) for p in problems]
    longest = max(len(p) for p in prompts)
    if longest > room:
        raise ContextLengthError(f"a prompt of {longest} tokens + max_new_tokens = {sampling.max_new_tokens} "
                                 f"exceeds the model's context of {policy.max_length} tokens")
    ep = Episodes(problems, prompts, [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)],
                  [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)],
                  [False] * n, [False] * n)
    alive = list(range(n))
    was_training = policy.training
    policy.eval()
    for t in range(env.max_turns):
        if not alive:
            break
        gen = generate(policy, [prompts[i] + ep.responses[i] for i in alive], sampling, tokenizer.eos_id,
                       tokenizer.pad_id, generator)
        lengths = gen.response_mask.sum(-1).long().tolist()
        tokens, logps, cut = gen.responses.tolist(), gen.logprobs.tolist(), gen.truncated.tolist()
        still = []
        for j, i in enumerate(alive):
            own = tokens[j][:lengths[j]]
            ep.responses[i] += own
            ep.agent_mask[i] += [1.0] * len(own)
            ep.logprobs[i] += logps[j][:lengths[j]]
            ep.turn_of_token[i] += [t] * len(own)
            if cut[j]:
                ep.truncated[i] = True
                ep.turns[i].append(Turn("", True, False, False, None, {"truncated": True}))
                ep.actions[i].append(tokenizer.decode(own))
                ep.turn_ends[i].append(len(ep.responses[i]))
                continue
            action = tokenizer.decode(own)
            turn = env.step(problems[i], ep.actions[i], action)
            ep.actions[i].append(action)
            ep.turns[i].append(turn)
            if not turn.done:
                obs = tokenizer.encode(turn.observation)
                need = len(prompts[i]) + len(ep.responses[i]) + len(obs) + sampling.max_new_tokens
                if need > policy.max_length:
                    if context_policy == "error":
                        raise ContextLengthError(
                            f"turn {t + 2} of an episode needs {need} tokens (context so far, observation and "
                            f"max_new_tokens = {sampling.max_new_tokens}) but the model's context is "
                            f"{policy.max_length}; lower max_turns or max_new_tokens, or use context_policy='end'")
                    ep.context_ended[i] = True
                else:
                    ep.responses[i] += obs
                    ep.agent_mask[i] += [0.0] * len(obs)
                    ep.logprobs[i] += [0.0] * len(obs)
                    ep.turn_of_token[i] += [-1] * len(obs)
                    still.append(i)
            ep.turn_ends[i].append(len(ep.responses[i]))
        alive = still
    policy.train(was_training)
    return ep


@dataclass
class EpisodeBatch(RolloutBatch):
    """A `RolloutBatch` of episodes (rewards: one episode return per row) plus the turn structure."""

    turn_of_token: torch.Tensor
    """[B, R] long: the agent turn (0-based) each response token belongs to; -1 on observations and padding."""
    turn_end: torch.Tensor
    """[B, T] long: response length after turn t and its observation; -1 where the episode had no turn t."""
    turn_answered: torch.Tensor
    """[B, T] bool: turn t was a final answer."""
    turn_correct: torch.Tensor
    """[B, T] bool: turn t was a right final answer."""
    turn_rewards: torch.Tensor
    """[B, T] float: the environment's reward for turn t (0 where the episode had no turn t)."""
    turns: torch.Tensor
    """[B] long: agent turns played."""
    context_ended: torch.Tensor
    """[B] bool: ended early because the next turn could not fit the context."""
    keys: list[list[str | None]]
    """Per row and turn, the environment's normalized action (answer or query) for repetition counts."""
    answer_probes: list[list[int]]
    """Per group, the tokens of the agent's true final answer (for information-gain rewards)."""

    @property
    def max_turns(self) -> int:
        return self.turn_end.shape[1]

    def select_groups(self, keep: torch.Tensor) -> EpisodeBatch:
        raise ConfigError("group filters (dynamic sampling) are not supported on multi-turn episodes")


def pad_episodes(prompts: list[list[int]], responses: list[list[int]], pad_id: int
                 ) -> tuple[torch.Tensor, torch.Tensor, int, Any]:
    """[left-padded prompt | right-padded response] ids and attention mask, the prompt width, and a
    `right(rows, fill, dtype)` that pads any per-response-token list the same way."""
    ids, attn = left_pad(prompts, pad_id)
    n, P = ids.shape
    R = max(max((len(r) for r in responses), default=0), 1)

    def right(rows: list[list[Any]], fill: float, dtype: torch.dtype) -> torch.Tensor:
        out = torch.full((n, R), fill, dtype=dtype)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.tensor(row, dtype=dtype)
        return out

    real = right([[1] * len(r) for r in responses], 0, torch.long)
    return torch.cat([ids, right(responses, pad_id, torch.long)], 1), torch.cat([attn, real], 1), P, right


def episode_batch(ep: Episodes, group_size: int, max_turns: int, tokenizer: Tokenizer, env: MultiTurnEnv,
                  device: torch.device | str = "cpu") -> EpisodeBatch:
    """Pad the episodes into one batch; `rewards` starts as the outcome (1 for a solved episode)."""
    input_ids, attention_mask, P, right = pad_episodes(ep.prompts, ep.responses, tokenizer.pad_id)
    n = input_ids.shape[0]
    turn_end = torch.full((n, max_turns), -1, dtype=torch.long)
    answered = torch.zeros(n, max_turns, dtype=torch.bool)
    correct = torch.zeros(n, max_turns, dtype=torch.bool)
    turn_rewards = torch.zeros(n, max_turns)
    for i, (ends, turns) in enumerate(zip(ep.turn_ends, ep.turns)):
        turn_end[i, :len(ends)] = torch.tensor(ends, dtype=torch.long)
        answered[i, :len(turns)] = torch.tensor([t.answered for t in turns])
        correct[i, :len(turns)] = torch.tensor([t.correct for t in turns])
        turn_rewards[i, :len(turns)] = torch.tensor([t.turn_reward for t in turns])
    success = torch.tensor(ep.success, dtype=torch.float)
    groups = ep.problems[::group_size]
    batch = EpisodeBatch(
        input_ids=input_ids, attention_mask=attention_mask, prompt_len=P,
        response_mask=right(ep.agent_mask, 0.0, torch.float), behaviour_logprobs=right(ep.logprobs, 0.0, torch.float),
        truncated=torch.tensor(ep.truncated), group_size=group_size, rewards=success.clone(), exact=success,
        dense=torch.zeros(n), problems=groups, texts=[a[-1] if a else "" for a in ep.actions],
        turn_of_token=right(ep.turn_of_token, -1, torch.long), turn_end=turn_end, turn_answered=answered,
        turn_correct=correct, turn_rewards=turn_rewards,
        turns=torch.tensor([len(t) for t in ep.turns], dtype=torch.long),
        context_ended=torch.tensor(ep.context_ended), keys=[[t.key for t in turns] for turns in ep.turns],
        answer_probes=[tokenizer.encode(env.answer_action(p)) for p in groups])
    if torch.device(device).type != "cpu":
        for f in fields(batch):
            value = getattr(batch, f.name)
            if isinstance(value, torch.Tensor):
                setattr(batch, f.name, value.to(device))
    return batch


def episode_statistics(batch: EpisodeBatch) -> dict[str, float]:
    """Success, turns, and how often an episode repeated an action it had already taken."""
    keys = batch.keys
    repeats = sum(len([k for k in row if k is not None]) - len({k for k in row if k is not None}) for row in keys)
    actions = sum(len([k for k in row if k is not None]) for row in keys)
    solved = batch.exact > 0
    turns = batch.turns.float()
    out = {
        "success": float(batch.exact.mean()),
        "success_turn1": float(batch.turn_correct[:, 0].float().mean()),
        "turns": float(turns.mean()),
        "repeat_rate": repeats / max(actions, 1),
        "context_ended_frac": float(batch.context_ended.float().mean()),
    }
    if solved.any():  # left out rather than NaN when nothing was solved
        out["turns_to_success"] = float(turns[solved].mean())
    return out


class MultiTurnSource(RolloutSource):
    """The engine's rollout source with episodes instead of single responses: G episodes per problem,
    scored by an episode reward (`policylab.lm.multiturn.rewards.EPISODE_REWARDS`)."""

    def __init__(self, env: MultiTurnEnv, tokenizer: Tokenizer, cfg: Any, seed: int, episode_reward: Any):
        if cfg.shaping:
            raise ConfigError(f"{type(cfg).__name__}.shaping = {cfg.shaping!r} is not allowed on multi-turn "
                              "episodes: shapers read single responses; put episode-level terms in the reward")
        super().__init__(env, tokenizer, cfg, seed)  # type: ignore[arg-type]
        self.env, self.episode_reward = env, episode_reward
        self.rng = random.Random(seed)

    def _rollout(self, policy: CausalPolicy, prompts: int) -> EpisodeBatch:
        problems = self.env.sample(prompts, "train", self.rng)
        G = self.cfg.group_size
        rows = [p for p in problems for _ in range(G)]
        ep = run_episodes(policy, self.env, rows, self.tokenizer, self.sampling, self.generator,
                          self.cfg.context_policy)
        self.samples += len(rows)
        batch = episode_batch(ep, G, self.env.max_turns, self.tokenizer, self.env, self.cfg.device)
        batch = batch.with_rewards(self.episode_reward(batch, self.cfg))
        for key, value in episode_statistics(batch).items():
            self._stats.setdefault(f"rollout/{key}", []).append(value)
        return batch
