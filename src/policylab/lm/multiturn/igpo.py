"""IGPO — Information Gain-based Policy Optimization (Wang et al., "Information Gain-based Policy
Optimization: A Simple and Effective Approach for Multi-Turn LLM Agents", arXiv 2510.14967; official code
github.com/GuoqingWang1/IGPO).

Every non-final agent turn earns a dense reward: how much the turn (with the observation it brought)
raised the policy's own probability of producing the ground-truth answer. With a = a_1..a_L the tokens
of the true final answer (`env.answer_action`, e.g. "!372" on `search`), teacher-forced after the
context through turn t:

    P_t = exp((1/L) sum_j log pi_theta(a_j | q, o_{<=t}, a_{<j}))            (Eq. 3: geometric mean)
    r_t = P_t - P_{t-1}                for the turns t < T of the episode  (Eq. 4, prob_diff)
    r_t = log P_t - log P_{t-1}        (the updated code's log_prob_diff)
    r_T = outcome                      (Eq. 5; F1 in the paper, the episode reward here)

P_0 reads the question alone; P_t is computed with the rollout policy (the one before the update),
under no_grad. All turn rewards of a group (every turn of its G episodes) are z-scored together
(`norm_mode="joint"`, Eq. 6), or the information gains and the outcomes apart (`"separate"`), and
each turn's advantage is the discounted sum of the normalized rewards from that turn on,

    A_{i,t} = sum_{k >= t} gamma^{k-t} r~_{i,k}                            (Eq. 7)

broadcast to the agent tokens of turn t (observations stay masked). The loss is the engine's GRPO
clipped surrogate, unchanged.

What we follow: the paper for Eqs. 3-7, the updated official code (`core_algos.py::
compute_grpo_outcome_advantage`, read via the notes §7) for the normalization details: a population
std over the group's rewards (a group with one reward keeps it centred to 0), joint/separate modes,
gamma = 1 by default. Where sources differ: that code finds turn ends as the non-zero rewards of a
token-level reward row, so an information gain of exactly 0 silently drops out of the statistics and
merges two turns; we keep every turn (a zero gain is a real reward). Its std is sqrt(var + 1e-8); we
divide by (std + adv_eps) like the engine's GRPO. P_t averages over the whole answer action (on `search`
the '!' marker and the digits; no EOS); the code (`scrl/llm_agent/generation.py`, `run_llm_loop`)
teacher-forces the ground truth inside a fixed wrapper (end of thinking and `<answer>` before it,
`</answer>` and the end-of-turn token after) and averages over the ground-truth tokens only, located
by their character offsets. The code's -2 for malformed output has no
counterpart (a turn cut at max_new_tokens ends the episode with outcome 0), nor does the optional
curriculum on the F1/IG weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES
from policylab.lm.generate import left_pad
from policylab.lm.multiturn.rollout import EpisodeBatch
from policylab.lm.multiturn.train import MultiTurnConfig
from policylab.lm.policy import CausalPolicy

INFO_GAIN_TYPES = ("prob_diff", "log_prob_diff")
NORM_MODES = ("joint", "separate")


@dataclass(frozen=True)
class IGPOConfig(MultiTurnConfig):
    advantage: str = "igpo"
    env: str = param("search", choices=("retry", "search"))
    base_model: str = "tiny-search"
    ig_gamma: float = param(1.0, ge=0, le=1)
    """gamma: turn discount of the advantage sum (Eq. 7; the paper's scripts use 1)."""
    info_gain_type: str = param("prob_diff", choices=INFO_GAIN_TYPES)
    """prob_diff: r_t = P_t - P_{t-1} (the paper); log_prob_diff: log P_t - log P_{t-1} (updated code)."""
    norm_mode: str = param("joint", choices=NORM_MODES)
    """joint: z-score all turn rewards of a group together (the paper); separate: gains and outcomes apart."""
    probe_chunk: int = param(1024, gt=0)
    """Teacher-forced (episode, turn) sequences per forward pass when computing P_t."""


@torch.no_grad()
def answer_log_probabilities(policy: CausalPolicy, batch: EpisodeBatch, chunk: int = 1024) -> torch.Tensor:
    """log P_t [B, T]: mean log-prob of the group's true answer tokens teacher-forced after the question
    and the first t turns with their observations (t = 0: the question alone). Defined for t < turns of
    the row (the contexts after which the episode went on); NaN elsewhere."""
    P, G = batch.prompt_len, batch.group_size
    ids, attn = batch.input_ids.cpu(), batch.attention_mask.cpu()
    turns, ends = batch.turns.cpu().tolist(), batch.turn_end.cpu()
    contexts, probes, where = [], [], []
    for i in range(ids.shape[0]):
        prompt = ids[i, :P][attn[i, :P] > 0].tolist()
        for t in range(turns[i]):
            response = ids[i, P:P + int(ends[i, t - 1])].tolist() if t > 0 else []
            contexts.append(prompt + response)
            probes.append(batch.answer_probes[i // G])
            where.append((i, t))
    out = torch.full(batch.turn_end.shape, float("nan"))
    was_training = policy.training
    policy.eval()
    device = batch.input_ids.device
    for start in range(0, len(contexts), chunk):
        part = slice(start, start + chunk)
        ctx_ids, ctx_attn = left_pad(contexts[part], 0)  # pad ids are masked out
        width = max(len(p) for p in probes[part])
        probe_ids = torch.zeros(len(ctx_ids), width, dtype=torch.long)
        probe_mask = torch.zeros(len(ctx_ids), width)
        for j, probe in enumerate(probes[part]):
            probe_ids[j, :len(probe)] = torch.tensor(probe, dtype=torch.long)
            probe_mask[j, :len(probe)] = 1.0
        seq = torch.cat([ctx_ids, probe_ids], 1).to(device)
        mask = torch.cat([ctx_attn, probe_mask.long()], 1).to(device)
        logp = policy.response_outputs(seq, mask, ctx_ids.shape[1], want_entropy=False).logprobs.cpu()
        mean_logp = (logp * probe_mask).sum(-1) / probe_mask.sum(-1).clamp(min=1)  # (1/L) sum_j, Eq. 3
        for (i, t), value in zip(where[part], mean_logp.tolist()):
            out[i, t] = value
    policy.train(was_training)
    return out.to(device)


def turn_rewards(log_p: torch.Tensor, turns: torch.Tensor, outcome: torch.Tensor, info_gain_type: str = "prob_diff"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rewards r [B, T] per agent turn, with masks `valid` (the row played turn t) and `is_gain` (t is
    not the row's last turn): r_t = P_{t+1} - P_t (0-based turns; Eq. 4) or its log form; the last
    turn gets the outcome (Eq. 5). Zero where not valid."""
    B, T = log_p.shape
    index = torch.arange(T, device=log_p.device).expand(B, T)
    valid = index < turns.view(-1, 1)
    is_gain = index < (turns.view(-1, 1) - 1)
    values = log_p if info_gain_type == "log_prob_diff" else log_p.exp()
    gain = torch.zeros_like(values)
    gain[:, :-1] = values[:, 1:] - values[:, :-1]
    last = index == (turns.view(-1, 1) - 1)
    r = torch.where(is_gain, gain, torch.zeros_like(gain))
    r = torch.where(last, outcome.view(-1, 1).to(r.dtype).expand(B, T), r)
    return torch.nan_to_num(r) * valid, valid, is_gain


def normalize_turn_rewards(r: torch.Tensor, members: torch.Tensor, group_size: int, eps: float = 1e-6
                           ) -> torch.Tensor:
    """z-score of the rewards in `members` [B, T] over each group (all turns of its G rows together;
    population std, Eq. 6); 0 outside `members`."""
    B, T = r.shape
    rg, mg = r.view(-1, group_size * T), members.view(-1, group_size * T).to(r.dtype)
    count = mg.sum(-1, keepdim=True).clamp(min=1)
    mean = (rg * mg).sum(-1, keepdim=True) / count
    std = (((rg - mean) ** 2 * mg).sum(-1, keepdim=True) / count).sqrt()
    return (((rg - mean) / (std + eps)) * mg).view(B, T)


def normalized_turn_rewards(r: torch.Tensor, valid: torch.Tensor, is_gain: torch.Tensor, group_size: int,
                            norm_mode: str = "joint", eps: float = 1e-6) -> torch.Tensor:
    """r~ [B, T]: joint (every turn reward of a group in one z-score) or separate (gains, outcomes apart)."""
    if norm_mode == "joint":
        return normalize_turn_rewards(r, valid, group_size, eps)
    outcome = valid & ~is_gain
    return normalize_turn_rewards(r, is_gain, group_size, eps) + normalize_turn_rewards(r, outcome, group_size, eps)


def discounted_turn_advantages(r_norm: torch.Tensor, valid: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """A_t = sum_{k >= t} gamma^{k-t} r~_k over the row's turns (Eq. 7); 0 on turns not played."""
    adv = torch.zeros_like(r_norm)
    running = torch.zeros_like(r_norm[:, 0])
    for t in reversed(range(r_norm.shape[1])):
        running = (r_norm[:, t] + gamma * running) * valid[:, t]
        adv[:, t] = running
    return adv


def broadcast_to_turn_tokens(turn_adv: torch.Tensor, turn_of_token: torch.Tensor, response_mask: torch.Tensor
                             ) -> torch.Tensor:
    """Token advantages [B, R]: each agent token gets its turn's advantage; observations and padding 0."""
    agent = turn_of_token >= 0
    picked = turn_adv.gather(1, turn_of_token.clamp(min=0))
    return picked * agent * response_mask


@ADVANTAGES.register("igpo")
def igpo_advantage(rewards: torch.Tensor, eps: float = 1e-6, batch: EpisodeBatch | None = None,
                   policy: CausalPolicy | None = None, cfg: Any = None,
                   metrics: dict[str, torch.Tensor] | None = None, **_) -> torch.Tensor:
    """IGPO token advantages [P*G, R] from the outcome rewards [P, G] and the episode batch's turns."""
    if batch is None or policy is None or not isinstance(batch, EpisodeBatch):
        raise ConfigError("advantage 'igpo' needs a multi-turn EpisodeBatch and the policy (use IGPOConfig with "
                          "train_multiturn)")
    gamma = getattr(cfg, "ig_gamma", 1.0)
    info_gain_type = getattr(cfg, "info_gain_type", "prob_diff")
    norm_mode = getattr(cfg, "norm_mode", "joint")
    log_p = answer_log_probabilities(policy, batch, getattr(cfg, "probe_chunk", 1024))
    r, valid, is_gain = turn_rewards(log_p, batch.turns, rewards.reshape(-1), info_gain_type)
    r_norm = normalized_turn_rewards(r, valid, is_gain, batch.group_size, norm_mode, eps)
    turn_adv = discounted_turn_advantages(r_norm, valid, gamma)
    adv = broadcast_to_turn_tokens(turn_adv, batch.turn_of_token, batch.response_mask)
    if metrics is not None:
        G = batch.group_size
        outcomes = rewards.reshape(-1, G)
        metrics["igpo/equal_outcome_group_frac"] = (outcomes.max(1).values == outcomes.min(1).values).float().mean()
        metrics["igpo/zero_adv_group_frac"] = (adv.abs().sum(-1).view(-1, G).sum(-1) < 1e-8).float().mean()
        metrics["igpo/answer_prob_start"] = log_p[:, 0].exp().mean()
        gains = r[is_gain]
        if gains.numel():
            metrics["igpo/info_gain_mean"] = gains.mean()
            metrics["igpo/info_gain_abs_mean"] = gains.abs().mean()
    return adv
