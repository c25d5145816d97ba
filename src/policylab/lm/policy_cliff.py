"""The Policy Cliff (Xu 2025, arXiv 2507.20150): how far optimal policies move under a small reward change.

Sources, by formula (paper text read from its LaTeX source, `SafeAGI-01/PolicyCliff`):
- Hard optimum: pi*_R(.|s) supported on A*(s; R) = argmax_a Q*_R(s, a), eq. (2) of §2.1; with ties,
  the uniform selection of Prop. 2.5 (§2.4), whose TV jump under +eps on one tied action is
  (m - 1)/m against the unperturbed policy and 1 between "+eps on a1" and "+eps on a2".
- Soft optimum, §4.4: the soft Bellman operator Q = R + gamma E[alpha log sum_a' exp(Q(s',a')/alpha)]
  and pi*_{R,alpha} = softmax(Q*/alpha); for a bandit (one step) pi* = softmax(R/alpha).
- Bound, Prop. 4.5 ("Lipschitz continuity of soft optimal policy", §4.4; the notes' Prop 4.5):
  d_TV(pi*_{R1,alpha}(.|s), pi*_{R2,alpha}(.|s)) <= ||R1 - R2||_inf / (2 alpha (1 - gamma)).
  Its proof is the 1/(1-gamma) Lipschitz bound on Q* (Prop. 2.1, with the soft backup 1-Lipschitz)
  times the softmax bound ||softmax(x/a) - softmax(y/a)||_1 <= ||x - y||_inf / a (their appendix lemma).
- Finite horizon H with gamma = 1 (the notes' pitfall; derived here, not in the paper): the same two
  steps give ||Q1_t - Q2_t||_inf <= (H - t) ||R1 - R2||_inf, hence TV at step t <= (H - t) eps / (2 alpha)
  and over all steps <= H ||R1 - R2||_inf / (2 alpha). With one outcome reward per sequence (RLVR)
  the return differs by at most eps, so no factor H is needed there.
- KL to a reference instead of entropy: pi* proportional to pi_ref exp(Q/beta); the softmax lemma applies
  to the logits log pi_ref + Q/beta, so the same bound holds with beta in place of alpha.

Language-model side: `format_bonus` (slot 6 shaper) adds eps * [response in format A] to the reward,
the paper's "small auxiliary reward as a tie-breaker" (Prop. 3.2); `policy_distance` measures how far
two trained policies are apart, exactly, as next-token total variation on held-out prompts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.losses.shaping import SHAPERS
from policylab.lm.policy import CausalPolicy
from policylab.lm.pretrain import BASE_MODELS, PretrainConfig, teacher_forced_batch
from policylab.lm.tasks import TASKS, Problem, Tokenizer
from policylab.lm.tasks.builtin import GCD
from policylab.lm.trainer import RLVRConfig

# ---------------------------------------------------------------------------------------------
# Exact tools: bandits and finite-horizon tabular token MDPs (float64 numpy)


def hard_policy(q: np.ndarray, atol: float = 1e-12) -> np.ndarray:
    """Uniform over argmax_a q(., a) (the selection of Prop. 2.5); values within atol of the max tie."""
    q = np.asarray(q, dtype=np.float64)
    best = q >= q.max(axis=-1, keepdims=True) - atol
    return best / best.sum(axis=-1, keepdims=True)


def _with_reference(q: np.ndarray, alpha: float, reference: np.ndarray | None) -> np.ndarray:
    """Q + alpha log pi_ref: the KL-to-reference problem is the entropy problem on shifted values."""
    q = np.asarray(q, dtype=np.float64)
    if reference is None or alpha == 0:
        return q
    return q + alpha * np.log(np.asarray(reference, dtype=np.float64))


def soft_policy(q: np.ndarray, alpha: float, reference: np.ndarray | None = None) -> np.ndarray:
    """softmax(q / alpha) over the last axis (§4.4), or pi_ref exp(q / alpha) / Z with a reference;
    alpha = 0 is the hard, tie-uniform policy."""
    if alpha < 0:
        raise ConfigError(f"alpha = {alpha} is not allowed: must be >= 0")
    if alpha == 0:
        return hard_policy(q)
    z = _with_reference(q, alpha, reference) / alpha
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def soft_value(q: np.ndarray, alpha: float, reference: np.ndarray | None = None) -> np.ndarray:
    """V(s) = alpha log sum_a exp(Q(s, a) / alpha), the soft backup of §4.4 (alpha log E_ref[exp(Q/alpha)]
    with a reference); max_a Q(s, a) at alpha = 0."""
    q = _with_reference(q, alpha, reference)
    top = q.max(axis=-1)
    if alpha == 0:
        return top
    return top + alpha * np.log(np.exp((q - top[..., None]) / alpha).sum(axis=-1))


def soft_value_iteration(rewards: np.ndarray, transitions: np.ndarray, horizon: int, alpha: float,
                         reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backward soft value iteration over H steps with gamma = 1 and V_H = 0.

    rewards [S, A], transitions [S, A, S'] (rows sum to 1), reference [S, A] or [A] (None: entropy).
    Returns Q [H, S, A] with Q_t = R + P V_{t+1}, V_t = soft_value(Q_t), and the step-indexed
    policy pi_t = softmax(Q_t / alpha) [H, S, A].
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    transitions = np.asarray(transitions, dtype=np.float64)
    S, A = rewards.shape
    if transitions.shape != (S, A, S) or not np.allclose(transitions.sum(-1), 1.0):
        raise ConfigError(f"transitions must be [S, A, S] = [{S}, {A}, {S}] stochastic rows, got "
                          f"{list(transitions.shape)}")
    if horizon < 1:
        raise ConfigError(f"horizon = {horizon} is not allowed: must be >= 1")
    q = np.zeros((horizon, S, A))
    value = np.zeros(S)
    for t in reversed(range(horizon)):
        q[t] = rewards + transitions @ value
        value = soft_value(q[t], alpha, reference)
    return q, soft_policy(q, alpha, reference)


def tv_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-state total variation 0.5 * sum_a |p(a) - q(a)| over the last axis."""
    return 0.5 * np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum(axis=-1)


def max_tv(p: np.ndarray, q: np.ndarray) -> float:
    """sup over states (and steps) of the per-state TV: the left side of Prop. 4.5 taken at its worst state."""
    return float(tv_distance(p, q).max())


def tv_bound(reward_gap: float, alpha: float, gamma: float = 0.0, horizon: int | None = None) -> float:
    """Prop. 4.5: ||R1 - R2||_inf / (2 alpha (1 - gamma)); with a horizon, H ||R1 - R2||_inf / (2 alpha)."""
    if alpha == 0:
        return float("inf")
    scale = horizon if horizon is not None else 1.0 / (1.0 - gamma)
    return reward_gap * scale / (2.0 * alpha)


TIED_BANDIT = (1.0, 1.0, 0.6, 0.0)
"""The notes' toy: actions 0 and 1 tie at the optimum."""


def tied_bandit(eps: float, on: int) -> np.ndarray:
    """R = [1, 1, 0.6, 0] + eps on action `on` (0 or 1 breaks the tie one way or the other)."""
    rewards = np.array(TIED_BANDIT)
    rewards[on] += eps
    return rewards


@dataclass(frozen=True)
class TokenMDP:
    """A prefix tree over tokens {x, y, z} of depth 2 (states: root, after x, after y, after z, done).

    Sequences "xy" and "yx" both earn 1 (two tied optimal traces), "xx" and "yy" earn 0.5, any
    sequence starting with z earns 0; the reward arrives with the second token.
    """

    rewards: np.ndarray
    transitions: np.ndarray
    horizon: int = 2
    start: int = 0


TOKENS = ("x", "y", "z")


def tied_token_mdp(eps: float = 0.0, on: str = "xy") -> TokenMDP:
    """The two-step token MDP with eps added to the reward of the tied sequence `on` ("xy" or "yx")."""
    if on not in ("xy", "yx"):
        raise ConfigError(f"on = {on!r} is not allowed: must be 'xy' or 'yx'")
    S, A, done = 5, len(TOKENS), 4
    transitions = np.zeros((S, A, S))
    for a in range(A):
        transitions[0, a, 1 + a] = 1.0  # root --token a--> "a"
        transitions[1:, a, done] = 1.0  # after the second token (or when done) the episode rests
    rewards = np.zeros((S, A))
    rewards[1, 1] = rewards[2, 0] = 1.0  # "xy", "yx"
    rewards[1, 0] = rewards[2, 1] = 0.5  # "xx", "yy"
    first, second = TOKENS.index(on[0]), TOKENS.index(on[1])
    rewards[1 + first, second] += eps
    return TokenMDP(rewards, transitions)


def perturbed_pair_tv(kind: str, eps: float, alpha: float,
                      reference: np.ndarray | None = None) -> tuple[float, float]:
    """(measured max TV, Prop. 4.5 bound) between the optima of "+eps on one tied optimum" and "+eps
    on the other", for kind 'bandit' or 'token_mdp'; with a reference, the KL-regularized optima."""
    if kind == "bandit":
        p, q = (soft_policy(tied_bandit(eps, on), alpha, reference) for on in (0, 1))
        return max_tv(p, q), tv_bound(eps, alpha)
    if kind == "token_mdp":
        m1, m2 = tied_token_mdp(eps, "xy"), tied_token_mdp(eps, "yx")
        _, p = soft_value_iteration(m1.rewards, m1.transitions, m1.horizon, alpha, reference)
        _, q = soft_value_iteration(m2.rewards, m2.transitions, m2.horizon, alpha, reference)
        gap = float(np.abs(m1.rewards - m2.rewards).max())
        return max_tv(p, q), tv_bound(gap, alpha, horizon=m1.horizon)
    raise ConfigError(f"kind = {kind!r} is not allowed: must be 'bandit' or 'token_mdp'")


# ---------------------------------------------------------------------------------------------
# Language-model side: answer formats that tie under `numeric_score`, the bonus, the distance


@dataclass(frozen=True)
class AnswerFormat:
    """An integer written with a fixed prefix and suffix; every one of them parses to the same int."""

    prefix: str = ""
    suffix: str = ""

    def render(self, answer: str) -> str:
        return f"{self.prefix}{answer}{self.suffix}"

    def matches(self, text: str) -> bool:
        pattern = re.escape(self.prefix) + r"(0|[1-9][0-9]*)" + re.escape(self.suffix)
        return re.fullmatch(pattern, text) is not None


FORMATS = {"plain": AnswerFormat(), "lead_space": AnswerFormat(prefix=" "), "lead_zero": AnswerFormat(prefix="0"),
           "plus": AnswerFormat(prefix="+"), "trail_space": AnswerFormat(suffix=" ")}
TIED_FORMATS = ("plain", "lead_space")
"""The pair the base model `tiny-tied-gcd` learns from half-and-half data (why this pair: see `GCDTwoFormats`)."""


@dataclass(frozen=True)
class FormatBonusConfig(RLVRConfig):
    bonus: float = param(0.1, ge=0)
    """eps of the perturbation: reward + eps * [response written in `bonus_format`]."""
    bonus_format: str = param("plain", choices=tuple(FORMATS))
    """Format A, the one the bonus favours."""

    def check(self) -> None:
        super().check()
        if self.bonus > 0 and "format_bonus" not in self.shaping:
            raise ConfigError(f"{type(self).__name__}.bonus = {self.bonus} has no effect: add 'format_bonus' to "
                              "shaping")


@SHAPERS.register("format_bonus")
def format_bonus(batch: Any, cfg: Any) -> Any:
    """R' = R + eps * [response is in format A] (Prop. 3.2's additive auxiliary reward; truncated rows get 0)."""
    if not isinstance(cfg, FormatBonusConfig):
        raise ConfigError(f"shaper 'format_bonus' reads bonus and bonus_format: use FormatBonusConfig, not "
                          f"{type(cfg).__name__}")
    fmt = FORMATS[cfg.bonus_format]
    hit = torch.tensor([fmt.matches(text) for text in batch.texts], dtype=batch.rewards.dtype,
                       device=batch.rewards.device)
    return batch.with_rewards(batch.rewards + cfg.bonus * hit * (~batch.truncated).to(hit.dtype))


class GCDTwoFormats(GCD):
    """gcd with the answer written "6" or " 6", each with probability 1/2: a taught tie.

    Why (probe of the stock `tiny-gcd` on 200 train questions): of 3,200 responses sampled at T = 1, none
    had a leading space, leading zero, '+' or trailing space (all parsed answers were plain); the first
    token was ' ' with mean probability 2e-4, '0' 1.3e-3, '+' 2e-4; the teacher-forced probability of
    the correct answer was 6e-5 with a leading space, 5e-5 with '+', 1e-5 with a leading zero and
    1.5e-6 with a trailing space, against 0.49 plain (mean over 300 questions). A format never sampled can never
    be reinforced, so no pair could compete from that base. A leading space was the likeliest
    alternative, and it differs from plain in one token at one state (the first), after which both
    write the same digits. Problems keep the task name "gcd", so the hash split (and the held-out test
    questions) are exactly gcd's.
    """

    name = "tied_gcd"
    formats = TIED_FORMATS

    def draw(self, rng) -> Problem:
        problem = super().draw(rng)
        fmt = self.formats[rng.random() < 0.5]
        return replace(problem, task=GCD.name, answer=FORMATS[fmt].render(problem.answer))


TASKS.add(GCDTwoFormats.name, GCDTwoFormats)
BASE_MODELS.add("tiny-tied-gcd", PretrainConfig(task=GCDTwoFormats.name, n_layer=2, n_head=2, d_model=64,
                                                 max_steps=1500, target_pass=0.25, eval_every=100,
                                                 eval_prompts=100))
"""tiny-gcd's recipe (same size, steps, stopping rule, seed) on answers written in both tied formats."""


def _teacher_forced(tokenizer: Tokenizer, prompts: list[str], responses: list[str]):
    """Rows, attention mask, prompt width and response mask of the teacher-forced answers."""
    b = teacher_forced_batch(tokenizer, prompts, responses)
    return b["input_ids"], b["attention_mask"], b["prompt_len"], b["response_mask"]


@torch.no_grad()
def next_token_tv(policy_a: CausalPolicy, policy_b: CausalPolicy, tokenizer: Tokenizer, prompts: list[str],
                  responses: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact TV between the two policies' next-token distributions at every state of the teacher-forced
    path prompt -> response -> EOS: ([N, R] values, [N, R] mask). Column t is the state before token t."""
    ids, attn, P, mask = _teacher_forced(tokenizer, prompts, responses)
    probs = []
    for policy in (policy_a, policy_b):
        was_training = policy.training
        policy.eval()
        probs.append(policy.response_outputs(ids, attn, P, want_entropy=False, want_logits=True).logits.softmax(-1))
        policy.train(was_training)
    return 0.5 * (probs[0] - probs[1]).abs().sum(-1) * mask, mask


@torch.no_grad()
def format_probability(policy: CausalPolicy, tokenizer: Tokenizer, problems: list[Problem],
                       fmt: str) -> torch.Tensor:
    """[N] exact probability that the policy answers each problem's correct answer in format `fmt`."""
    ids, attn, P, mask = _teacher_forced(tokenizer, [p.prompt for p in problems],
                                         [FORMATS[fmt].render(p.answer.strip()) for p in problems])
    was_training = policy.training
    policy.eval()
    logp = policy.response_outputs(ids, attn, P, want_entropy=False).logprobs
    policy.train(was_training)
    return torch.where(mask > 0, logp, torch.zeros_like(logp)).sum(-1).exp()


def policy_distance(policy_a: CausalPolicy, policy_b: CausalPolicy, tokenizer: Tokenizer,
                    problems: list[Problem], formats: tuple[str, ...] = TIED_FORMATS) -> dict[str, float]:
    """How far two LM policies are apart on held-out problems, computed exactly (no sampling).

    The states compared are those on the teacher-forced paths of the correct answer written in each
    of `formats` (e.g. "6<eos>" and " 6<eos>"), where the formats' decision is taken. Per problem:
    the max over those states of TV(pi_a(.|s), pi_b(.|s)) (the per-state quantity of Prop. 4.5 at
    its worst state), then the mean over problems: `tv_max`. Also `tv_first`, the mean TV at the
    first response state (where the format is chosen), and `tv_mean` over all compared states.
    """
    if not problems:
        raise ConfigError("policy_distance needs at least one problem")
    prompts = [p.prompt for p in problems for _ in formats]
    responses = [FORMATS[f].render(p.answer.strip()) for p in problems for f in formats]
    tv, mask = next_token_tv(policy_a, policy_b, tokenizer, prompts, responses)
    per_problem = tv.view(len(problems), len(formats), -1)
    return {"tv_max": float(per_problem.amax(dim=(1, 2)).mean()),
            "tv_first": float(per_problem[:, 0, 0].mean()),
            "tv_mean": float(tv.sum() / mask.sum())}
