"""PARL (Chakraborty et al., ICLR 2024, arXiv 2308.02585): reward learning as a bilevel problem whose upper
level asks its preference queries about samples of the lower level's optimal policy.

Sources. The paper's abstract (arXiv, OpenReview) was read: RLHF as a bilevel problem in which the
distribution of the upper (alignment) objective is parameterized by the lower-level optimal policy, the
algorithm A-PARL with an O(1/T) rate, and up to 63% fewer preference samples on DeepMind Control and
Meta-World. The body of the paper could not be retrieved here, so the equations below follow the team's
reconstruction (notes `llm_pref_irl_testbed.md` §6b, marked [verify] there); they are numbered (P1)-(P6) in
this file, not with the paper's equation numbers.

(P1) Lower level, KL-regularized so that it is strongly concave (as the paper's analysis needs):
         pi_nu = argmax_pi E_x E_{y ~ pi}[r_nu(x, y)] - beta KL(pi(.|x) || pi_ref(.|x)).
     On a finite candidate set per prompt the solution is closed-form:
         pi_nu(y|x) = pi_ref(y|x) exp(r_nu(x, y) / beta) / Z_nu(x).
(P2) Upper level: the Bradley-Terry log-likelihood of preference labels on pairs drawn from pi_nu,
         G(nu) = E_x E_{(a, b) ~ q_nu(.|x)} E_label[ log sigmoid(+-(r_nu(x, a) - r_nu(x, b))) ],
     with the pairs forced distinct (the notes' pitfall: identical pairs carry no information),
         q_nu(a, b|x) = pi_nu(a|x) pi_nu(b|x) / (1 - sum_y pi_nu(y|x)^2),  a != b.
(P3) Hypergradient: grad G = E_q[grad_nu l_nu] (direct) + E_q[l_nu grad_nu log q_nu] (implicit: the query
     distribution moves with the lower-level solution; the paper writes it (grad_nu theta*)^T grad_theta G,
     with a score-function grad_theta G).
(P4) Implicit function theorem, grad_nu theta* = -[grad^2_theta V]^-1 grad^2_{theta nu} V. For (P1) with
     theta the log-probabilities over the candidates it is exactly
         d log pi_nu(a|x) / d r_nu(x, c) = (delta_ac - pi_nu(c|x)) / beta,
     so no Hessian is inverted (`tests/lm/test_parl.py` checks this against the Hessian formula).
(P5) A-PARL: each round, (i) the lower level is solved (here exactly, (P1); A-PARL takes K warm-started policy
     gradient steps), (ii) preferences are queried on pairs of the current policy, (iii) nu ascends the
     hypergradient estimate.
(P6) The estimate from all queries so far. Pairs of earlier rounds came from earlier policies, so they are
     reweighted by self-normalized importance weights w_i ~ q_nu(i) / qbar(i), where qbar is the mixture of
     the rounds' query distributions (every round asks the same number of pairs). Then
         G_hat = sum_i wbar_i l_i,   grad G_hat = sum_i wbar_i [grad l_i + (l_i - G_hat) grad log q_nu(i)]:
     differentiating the weights through the closed-form softmax gives the implicit term (P3) with the
     baseline G_hat that keeps its variance down. Reusing a buffer (rather than one fresh batch per
     hypergradient step) is our choice for sample efficiency, not taken from the paper.

A reward is any module whose call returns the [prompts, candidates] table r_nu: `TabularReward` for a
contextual bandit, `FeatureReward` (a head on frozen `sequence_features`) for a language model's candidate
pool (`candidate_pool`). Padding slots of a prompt with fewer candidates are masked out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.lm.policy import CausalPolicy
from policylab.lm.preference.data import bradley_terry_label, preference_probability, sample_responses
from policylab.lm.preference.gold import GoldReward
from policylab.lm.preference.reward_model import bradley_terry_loss, score_l2_penalty
from policylab.lm.tasks import Problem, Tokenizer


@dataclass(frozen=True)
class PARLConfig(Config):
    beta: float = param(1.0, gt=0)
    """KL coefficient of the lower level (P1)."""
    queries_per_round: int = param(16, gt=0)
    """Preference pairs asked per round (P5 ii)."""
    updates_per_round: int = param(50, gt=0)
    """Adam steps on the upper objective after each round's queries."""
    lr: float = param(0.05, gt=0)
    score_l2: float = param(1e-3, ge=0)
    """beta of the L2 beta/2 (r_w^2 + r_l^2) on the queried pairs' rewards (`score_l2_penalty`; Coste et al.'s
    form and value, 0.001), which keeps separable pairs finite."""
    source: str = param("policy", choices=("policy", "reference"))
    """Query pairs of the current pi_nu (PARL) or of pi_ref (a fixed offline preference set)."""
    weighting: str = param("importance", choices=("importance", "none"))
    """'importance': the estimate (P6) of G(nu); 'none': every queried pair counts once (plain BT fit)."""
    implicit: bool = True
    """Keep the implicit term (P3) by differentiating the importance weights; False detaches them."""
    label_temperature: float = param(0.5, ge=0)
    """The labeller prefers a with P = sigmoid((gold_a - gold_b) / T) (`bradley_terry_label`; 0: argmax)."""

    def check(self) -> None:
        if self.implicit and self.weighting != "importance":
            raise ConfigError(f"PARLConfig.implicit = True is not allowed with weighting = {self.weighting!r}: the "
                              "implicit term is the derivative of the importance weights, so it needs "
                              "weighting = 'importance' (or set implicit = False)")


# -- the two levels in closed form ----------------------------------------------------------------

def check_tables(log_ref: torch.Tensor, mask: torch.Tensor, finite: bool = True, **tables: torch.Tensor) -> None:
    """[P, K] tables of one shape, a boolean mask with a candidate in every prompt, and (`finite`) pi_ref > 0
    wherever the mask is true."""
    if log_ref.ndim != 2 or mask.shape != log_ref.shape or mask.dtype != torch.bool:
        raise ConfigError(f"log_ref {tuple(log_ref.shape)} and mask {tuple(mask.shape)} must both be "
                          "[prompts, candidates], the mask boolean")
    for name, table in tables.items():
        if table.shape != log_ref.shape:
            raise ConfigError(f"{name} has shape {tuple(table.shape)}; must match log_ref {tuple(log_ref.shape)}")
    empty = (~mask.any(-1)).nonzero().flatten().tolist()
    if empty:
        raise ConfigError(f"prompts {empty[:5]} have no candidate: every prompt needs at least one")
    if finite and not torch.isfinite(log_ref[mask]).all():
        raise ConfigError("log_ref must be finite on every candidate (pi_ref > 0 where the mask is true)")


def boltzmann_policy(reward: torch.Tensor, log_ref: torch.Tensor, beta: float, mask: torch.Tensor) -> torch.Tensor:
    """[P, K] log pi_nu(y|x) ∝ log pi_ref + r / beta over each prompt's candidates (P1); -inf on padding."""
    if beta <= 0:
        raise ConfigError(f"beta = {beta} is not allowed: the KL coefficient must be > 0")
    return torch.log_softmax((log_ref + reward / beta).masked_fill(~mask, -math.inf), -1)


def boltzmann_log_jacobian(log_pi: torch.Tensor, beta: float) -> torch.Tensor:
    """[P, K, K]: d log pi_nu(a|x) / d r(x, c) = (delta_ac - pi(c|x)) / beta, the implicit derivative (P4)."""
    pi = log_pi.exp()
    eye = torch.eye(pi.shape[-1], dtype=pi.dtype)
    return (eye - pi[:, None, :]) / beta


LOG_ZERO = -1e30
"""A finite stand-in for log 0 inside log-sum-exps, so that empty sums have finite values and gradients."""


def log_sum_of_others(log_values: torch.Tensor) -> torch.Tensor:
    """[P, K] log sum_{z != c} exp(log_values[z]) for every c, without the cancellation of 1 - pi_c."""
    size = log_values.shape[-1]
    grid = log_values.clamp(min=LOG_ZERO)[:, None, :].expand(-1, size, -1)
    return grid.masked_fill(torch.eye(size, dtype=torch.bool), LOG_ZERO).logsumexp(-1)


def log_distinct_mass(log_pi: torch.Tensor) -> torch.Tensor:
    """[P] log(1 - sum_y pi(y|x)^2) = log sum_y pi_y (1 - pi_y): the probability that two draws differ.

    Summed in log space from the off-diagonal products, so that a sharp policy keeps an accurate (tiny) value;
    a single candidate gives about LOG_ZERO, so its (nonexistent) pairs get q = 0."""
    return (log_pi + log_sum_of_others(log_pi)).clamp(min=LOG_ZERO).logsumexp(-1)


def log_first_marginal(log_pi: torch.Tensor) -> torch.Tensor:
    """[P, K] log of q's marginal, pi_a (1 - pi_a) / (1 - S): how often each candidate appears in a pair."""
    return log_pi + log_sum_of_others(log_pi) - log_distinct_mass(log_pi)[:, None]


def distinct_pair_log_prob(log_pi: torch.Tensor, prompt: torch.Tensor, a: torch.Tensor,
                           b: torch.Tensor) -> torch.Tensor:
    """[N] log q(a, b|x) = log pi(a|x) + log pi(b|x) - log(1 - sum pi^2) (P2), either order."""
    return log_pi[prompt, a] + log_pi[prompt, b] - log_distinct_mass(log_pi)[prompt]


def pair_log_likelihood(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """[N] log sigmoid(r_w - r_l) per pair: the shared Bradley-Terry loss, negated, per pair."""
    return -bradley_terry_loss(chosen, rejected, reduction="none")


def eligible_prompts(mask: torch.Tensor) -> torch.Tensor:
    """[P] bool: prompts with at least two candidates, the only ones a pair can be drawn from."""
    return mask.sum(-1) >= 2


def _pair_tables(reward, log_pi, gold, label_temperature, mask):
    """q [P', K, K] (P2) from the query policy `log_pi`, the label-averaged log-likelihood l [P', K, K] of the
    reward, the query policy pi [P', K] and P(a preferred to b) [P', K, K], over the eligible prompts."""
    check_tables(log_pi, mask, finite=False, reward=reward, gold=gold)  # a sharp policy may underflow to 0
    keep = eligible_prompts(mask)
    if not keep.any():
        raise ConfigError("no prompt has two candidates: the upper objective has no pair to ask about")
    reward, log_pi, gold, mask = reward[keep], log_pi[keep], gold[keep], mask[keep]
    off_diagonal = ~torch.eye(mask.shape[-1], dtype=torch.bool)
    log_q = log_pi[:, :, None] + log_pi[:, None, :] - log_distinct_mass(log_pi)[:, None, None]
    q = log_q.exp() * off_diagonal
    p_first = preference_probability(gold[:, :, None] - gold[:, None, :], label_temperature)
    pair_mask = mask[:, :, None] & mask[:, None, :] & off_diagonal
    r_first, r_second = reward[:, :, None].expand_as(q), reward[:, None, :].expand_as(q)
    ll = torch.zeros_like(q)
    ll[pair_mask] = (p_first[pair_mask] * pair_log_likelihood(r_first[pair_mask], r_second[pair_mask])
                     + (1 - p_first[pair_mask]) * pair_log_likelihood(r_second[pair_mask], r_first[pair_mask]))
    return q, ll, log_pi, p_first, keep


def expected_upper_objective(reward: torch.Tensor, log_ref: torch.Tensor, beta: float, gold: torch.Tensor,
                             label_temperature: float, mask: torch.Tensor) -> torch.Tensor:
    """G(nu) of (P2) exactly: the mean over eligible prompts of sum_{a != b} q_nu(a, b) E_label[l(a, b)]."""
    log_pi = boltzmann_policy(reward, log_ref, beta, mask)
    q, ll, *_ = _pair_tables(reward, log_pi, gold, label_temperature, mask)
    return (q * ll).sum((-1, -2)).mean()


def _spread(values: torch.Tensor, keep: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eligible prompts' [P', K] rows back into a [P, K] table, averaged over prompts, zero elsewhere."""
    full = torch.zeros(mask.shape, dtype=values.dtype)
    full[keep] = (values / int(keep.sum())).masked_fill(~mask[keep], 0.0)
    return full


@torch.no_grad()
def direct_term(reward: torch.Tensor, log_pi: torch.Tensor, gold: torch.Tensor, label_temperature: float,
                mask: torch.Tensor) -> torch.Tensor:
    """[P, K] E_q[d l / d r] with pairs from the query policy `log_pi` held fixed (P3, first term).

    d l(a, b) / d r_a = P(a > b) - sigmoid(r_a - r_b) = -d l(a, b) / d r_b, and q is symmetric in (a, b)."""
    q, _, _, p_first, keep = _pair_tables(reward, log_pi, gold, label_temperature, mask)
    r = reward[keep]
    return _spread(2 * (q * (p_first - torch.sigmoid(r[:, :, None] - r[:, None, :]))).sum(-1), keep, mask)


@torch.no_grad()
def implicit_term(reward: torch.Tensor, log_ref: torch.Tensor, beta: float, gold: torch.Tensor,
                  label_temperature: float, mask: torch.Tensor) -> torch.Tensor:
    """[P, K] E_q[l d log q_nu / d r]: how G moves through the lower level's solution (P3, second term).

    d log q(a, b) / d r_c = J_ac + J_bc + (d S / d r_c) / (1 - S), with J the implicit derivative (P4) and
    S = sum_y pi_y^2, d S / d r_c = 2 sum_y pi_y^2 J_yc."""
    log_pi = boltzmann_policy(reward, log_ref, beta, mask)
    q, ll, log_pi, _, keep = _pair_tables(reward, log_pi, gold, label_temperature, mask)
    jac = boltzmann_log_jacobian(log_pi, beta)
    row = (q * ll).sum(-1)                                        # m_a = sum_b q_ab l_ab (l is symmetric)
    value = row.sum(-1, keepdim=True)                             # G_x = sum_a m_a
    # 2 sum_y pi_y^2 J_yc / (1 - S) = 2 pi_c (pi_c (1 - pi_c) - sum_{y != c} pi_y^2) / (beta (1 - S)),
    # each part divided in log space: the direct form cancels catastrophically when pi is sharp
    log_mass = log_distinct_mass(log_pi)[:, None]
    own = (2 * log_pi + log_sum_of_others(log_pi) - log_mass).exp()
    others = (log_pi + log_sum_of_others(2 * log_pi) - log_mass).exp()
    collision = 2 * (own - others) / beta
    return _spread(2 * torch.einsum("pa,pac->pc", row, jac) + value * collision, keep, mask)


def hypergradient(reward: torch.Tensor, log_ref: torch.Tensor, beta: float, gold: torch.Tensor,
                  label_temperature: float, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The direct and implicit terms of dG/dr (P3), each [P, K] (zero on ineligible prompts and padding).

    Chain them to nu with `table.backward(-(direct + implicit))` (to descend -G) or `torch.autograd.grad`."""
    log_pi = boltzmann_policy(reward.detach(), log_ref, beta, mask)
    return (direct_term(reward, log_pi, gold, label_temperature, mask),
            implicit_term(reward, log_ref, beta, gold, label_temperature, mask))


def gold_value(log_pi: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> float:
    """E_x E_{y ~ pi}[gold(x, y)] over the candidate sets."""
    return float((log_pi.exp() * gold.masked_fill(~mask, 0.0)).sum(-1).mean())


def gap_closed(log_pi: torch.Tensor, log_ref: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor) -> float:
    """(J(pi) - J(pi_ref)) / (J(best candidate) - J(pi_ref)): 0 at the reference, 1 at the best of each pool."""
    ref = gold_value(torch.log_softmax(log_ref.masked_fill(~mask, -math.inf), -1), gold, mask)
    best = float(gold.masked_fill(~mask, -math.inf).max(-1).values.mean())
    if best - ref <= 1e-12:
        raise ConfigError("the reference already picks the best candidate of every prompt: no gap to close")
    return (gold_value(log_pi, gold, mask) - ref) / (best - ref)


# -- rewards over candidate tables ----------------------------------------------------------------

class TabularReward(nn.Module):
    """r_nu(x, y) = nu[x, y]: one free parameter per candidate (a contextual bandit), starting at 0 (pi_nu = pi_ref)."""

    def __init__(self, prompts: int, candidates: int):
        super().__init__()
        self.nu = nn.Parameter(torch.zeros(prompts, candidates, dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        return self.nu


class FeatureReward(nn.Module):
    """r_nu(x, y) = head(features(x, y)) on fixed [P, K, F] features (e.g. `sequence_features` of a frozen trunk).

    The head's last layer starts at zero, so that pi_nu starts at pi_ref as the tabular reward does."""

    def __init__(self, head: nn.Module, features: torch.Tensor):
        super().__init__()
        if features.ndim != 3:
            raise ConfigError(f"features {tuple(features.shape)} must be [prompts, candidates, width]")
        self.head = head
        last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.register_buffer("features", features.detach().float())

    def forward(self, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features if features is None else features).squeeze(-1).double()


@dataclass
class CandidatePool:
    """Distinct sampled responses per problem: pi_ref over them is their sampling frequency."""

    problems: list[Problem]
    responses: list[list[str]]
    log_ref: torch.Tensor
    """[P, K] log of each distinct response's share of the n samples (-inf on padding)."""
    gold: torch.Tensor
    """[P, K] gold values (0 on padding)."""
    mask: torch.Tensor


def candidate_pool(policy: CausalPolicy, tokenizer: Tokenizer, problems: Sequence[Problem], n: int, gold: GoldReward,
                   max_new_tokens: int, seed: int) -> CandidatePool:
    """n samples per problem folded into distinct candidates; pi_nu on it is the self-normalized importance-sampling
    form of (P1) with pi_ref's own samples as proposals."""
    samples = sample_responses(policy, tokenizer, problems, n, max_new_tokens, seed=seed)
    counts: list[dict[str, int]] = []
    cut: dict[tuple[int, str], bool] = {}
    for i, (responses, truncated) in enumerate(zip(samples.responses, samples.truncated)):
        count: dict[str, int] = {}
        for response, c in zip(responses, truncated):
            count[response] = count.get(response, 0) + 1
            cut[i, response] = c
        counts.append(count)
    width = max(len(c) for c in counts)
    log_ref = torch.full((len(problems), width), -math.inf, dtype=torch.float64)
    gold_table = torch.zeros(len(problems), width, dtype=torch.float64)
    mask = torch.zeros(len(problems), width, dtype=torch.bool)
    for i, (problem, count) in enumerate(zip(problems, counts)):
        for j, (response, k) in enumerate(count.items()):
            log_ref[i, j] = math.log(k / n)
            gold_table[i, j] = gold.value(problem, response, cut[i, response])
            mask[i, j] = True
    return CandidatePool(list(problems), [list(c) for c in counts], log_ref, gold_table, mask)


# -- the bilevel loop ------------------------------------------------------------------------------

@dataclass
class QueriedPairs:
    prompt: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompt)

    @staticmethod
    def concat(parts: Sequence[QueriedPairs]) -> QueriedPairs:
        return QueriedPairs(*(torch.cat([getattr(p, k) for p in parts]) for k in ("prompt", "chosen", "rejected")))


def sampled_upper_objective(reward: torch.Tensor, log_pi: torch.Tensor, pairs: QueriedPairs,
                            behaviour_log_q: torch.Tensor, weighting: str, implicit: bool) -> torch.Tensor:
    """The estimate of G(nu) from queried pairs (P6); its gradient is the hypergradient estimate.

    `log_pi` must be computed from `reward` for the implicit term to flow; `behaviour_log_q` [N] is the log
    probability of each pair under the distribution that drew it."""
    ll = pair_log_likelihood(reward[pairs.prompt, pairs.chosen], reward[pairs.prompt, pairs.rejected])
    if weighting == "none":
        return ll.mean()
    log_w = distinct_pair_log_prob(log_pi, pairs.prompt, pairs.chosen, pairs.rejected) - behaviour_log_q
    return (torch.softmax(log_w if implicit else log_w.detach(), 0) * ll).sum()


class CandidateSetPARL:
    """A-PARL (P5) with the closed-form lower level (P1) over fixed candidate sets.

    `query()` draws and labels a round of distinct pairs from the collection policy (pi_nu, or pi_ref for an
    offline set); `update(pairs)` adds them to the buffer and ascends the upper objective.
    """

    def __init__(self, reward: nn.Module, log_ref: torch.Tensor, mask: torch.Tensor, gold: torch.Tensor,
                 cfg: PARLConfig = PARLConfig(), seed: int = 0):
        check_tables(log_ref, mask, gold=gold)
        self.eligible = eligible_prompts(mask).nonzero().flatten()
        if len(self.eligible) == 0:
            raise ConfigError("no prompt has two candidates: PARL needs at least one prompt with a pair to ask about")
        self.reward, self.log_ref, self.mask, self.gold, self.cfg = reward, log_ref.double(), mask, gold.double(), cfg
        table = reward()
        if table.shape != log_ref.shape:
            raise ConfigError(f"the reward's table {tuple(table.shape)} must match log_ref {tuple(log_ref.shape)}")
        self.optimizer = torch.optim.Adam(reward.parameters(), lr=cfg.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.labels = random.Random(seed)
        self.buffer: list[QueriedPairs] = []
        self.collection_log_pi: list[torch.Tensor] = []
        """The policy that drew each round's pairs, for the mixture qbar of (P6)."""

    def policy(self, reward: torch.Tensor | None = None) -> torch.Tensor:
        """[P, K] log pi_nu (P1), from the current reward unless one is given."""
        table = self.reward() if reward is None else reward
        return boltzmann_policy(table, self.log_ref, self.cfg.beta, self.mask)

    @torch.no_grad()
    def query(self) -> QueriedPairs:
        """One round of distinct pairs (P2) on uniformly drawn eligible prompts, labelled by the gold labeller."""
        log_pi = self.policy() if self.cfg.source == "policy" else self.policy(torch.zeros_like(self.log_ref))
        self.collection_log_pi.append(log_pi)
        n = self.cfg.queries_per_round
        prompt = self.eligible[torch.randint(len(self.eligible), (n,), generator=self.generator)]
        pi, allowed = log_pi[prompt].exp(), self.mask[prompt]
        # exact draw from q: the first's marginal is pi_a (1 - pi_a) / (1 - S), the second ∝ pi_b with b != a
        first = self._draw(log_first_marginal(log_pi[prompt]).exp().masked_fill(~allowed, 0.0), allowed)
        second = self._draw(pi.scatter(-1, first[:, None], 0.0), allowed.scatter(-1, first[:, None], False))
        margin = (self.gold[prompt, first] - self.gold[prompt, second]).tolist()
        first_wins = torch.tensor([bradley_terry_label(m, self.cfg.label_temperature, self.labels) for m in margin])
        return QueriedPairs(prompt, torch.where(first_wins, first, second), torch.where(first_wins, second, first))

    def _draw(self, weights: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """One index per row ∝ weights; a row whose policy underflowed to a single candidate draws uniformly."""
        dead = weights.sum(-1, keepdim=True) <= 0
        weights = torch.where(dead, allowed.to(weights.dtype), weights)
        return torch.multinomial(weights, 1, generator=self.generator).squeeze(-1)

    def behaviour_log_q(self, pairs: QueriedPairs) -> torch.Tensor:
        """log qbar(i): the mixture over rounds of the query distributions (P6)."""
        per_round = torch.stack([distinct_pair_log_prob(lp, pairs.prompt, pairs.chosen, pairs.rejected)
                                 for lp in self.collection_log_pi])
        return torch.logsumexp(per_round, 0) - math.log(len(self.collection_log_pi))

    def update(self, pairs: QueriedPairs) -> dict[str, float]:
        self.buffer.append(pairs)
        data = QueriedPairs.concat(self.buffer)
        behaviour = self.behaviour_log_q(data)
        cfg = self.cfg
        for _ in range(cfg.updates_per_round):
            table = self.reward()
            objective = sampled_upper_objective(table, self.policy(table), data, behaviour, cfg.weighting, cfg.implicit)
            l2 = score_l2_penalty(table[data.prompt, data.chosen], table[data.prompt, data.rejected], cfg.score_l2)
            loss = -objective + l2
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            log_w = distinct_pair_log_prob(self.policy(), data.prompt, data.chosen, data.rejected) - behaviour
            w = torch.softmax(log_w, 0)
        return {"upper_objective": float(objective.detach()), "pairs": float(len(data)),
                "effective_sample_size": float(1.0 / (w ** 2).sum())}
