"""THR — Token Hidden Reward (Deng, Ren, Li, Gong, Sutherland, Li, Thrampoulidis; arXiv 2510.03669,
ICLR 2026), on its predecessor NTHR ("On the Effect of Negative Gradient in Group Relative Deep
Reinforcement Optimization", Deng et al., arXiv 2505.18830, NeurIPS 2025).

A slot-1 advantage transform. Per group, with the pre-update policy (= the rollout policy when
staleness = 0), for every response token (j, k): final hidden state h_{j,k}, next-token
distribution q_{j,k}, prediction error g_{j,k} = e_{o_{j,k}} - q_{j,k}. Correct responses P:
  M+      = sum_{i in P, k} g_{i,k} h_{i,k}^T                        [NTHR App. 7.4, eq. 6 summed first]
  s_{j,k} = g_{j,k}^T M+ h_{j,k}                                      [NTHR eq. 6: sum alpha <h, h>]
  THR_{j,k} = A_j s_{j,k}                                             [recon]
  tau     = beta * min_{i in P} mean_k s_{i,k}                        [NTHR eq. 7-8, beta = 1]
  A'_{j,k} = A_j (1 + p sign(THR_{j,k})) if |s_{j,k}| > tau, else A_j [recon]
with A_j the GRPO advantage. p > 0 amplifies positive-THR tokens and weakens negative ones
(exploitation, better greedy accuracy); p < 0 the reverse (exploration, better pass@k); p = 0 is GRPO.

Sources. The THR paper's body could not be read here (only its abstract and ICLR reviews); the
NTHR paper's text was (its displayed formulas were not, the note of a third-party NTHR
implementation gave them). So:
- g, alpha = <g, g'>, h after the last norm (unconstrained features), s, M+, the threshold tau
  with beta = 1 and the restriction of g to the vocabulary sampled in the group (no
  renormalisation): NTHR paper (Thm. 4.4, §5.1-5.2, App. 7.2, 7.4) and the implementation note.
- THR as a signed per-token influence on the correct responses' likelihood, positive = exploitation,
  a few dominant tokens with large |THR|, sign reweighting by p, the THR-only variant and tau
  "from the prior influence heuristic": THR abstract and reviews. Their formulas are [recon]:
  THR = A_j s_{j,k} is the first-order change of sum_{i in P} log pi(o_i) caused by token (j, k)'s
  GRPO step (NTHR's gradient-flow derivation, up to the learning rate and the loss's positive
  normalisation); the weight 1 + p sign(THR) on dominant tokens is the notes' reconstruction.
Deviations and choices:
- Dominance compares |s| (not |A s|) with tau, which is in s units: on negative tokens with s > 0
  this is NTHR's selection exactly, and p = 1 - eta reproduces NTHR's A <- eta A there (a test
  checks it). The paper may threshold |THR| itself.
- |p| <= 1 so that no token's advantage changes sign.
- "Correct" is exact-match correctness (batch.exact), not the shaped reward.
- Groups with no correct response have no M+ and no tau: they keep their GRPO advantages (0 unless
  shaping made rewards differ). All-correct groups have A = 0 and stay 0.
- With staleness > 0 the scores use the current policy, not the stale behaviour policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES, grpo_advantage
from policylab.lm.trainer import RLVRConfig


@dataclass(frozen=True)
class THRConfig(RLVRConfig):
    advantage: str = "thr"
    thr_p: float = param(0.5, ge=-1, le=1)
    """p: > 0 amplifies positive-THR tokens (exploitation), < 0 negative-THR ones (exploration); 0 is GRPO.
    The paper's |p| was not recovered; 0.5 is the notes' testbed value."""
    thr_beta: float = param(1.0, gt=0)
    """beta: threshold scale, tau = beta * min over correct responses of their mean score (NTHR: 1)."""
    thr_only: bool = False
    """THR-only (dominant-token training): zero the advantage of tokens with |s| <= tau."""
    thr_group_vocab: bool = True
    """Prediction errors on the tokens sampled in the group (NTHR App. 7.4); False uses the full vocabulary."""

    def check(self) -> None:
        super().check()
        if self.advantage != "thr":
            raise ConfigError(f"THRConfig.advantage = {self.advantage!r} is not allowed: THR is the 'thr' "
                              "advantage transform; use RLVRConfig for other transforms")


# -- the math, per group: tensors shaped [P groups, G responses, R tokens, ...] ---------------------

def group_vocabulary(tokens: torch.Tensor, mask: torch.Tensor, vocab_size: int,
                     restrict: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns [P, U] of each group's vocabulary V*_x (ids sampled in its responses, padded) and
    which are real [P, U]; with restrict=False every group gets the full vocabulary."""
    P = tokens.shape[0]
    if not restrict:
        columns = torch.arange(vocab_size, device=tokens.device).expand(P, vocab_size)
        return columns, torch.ones_like(columns, dtype=torch.bool)
    counts = torch.zeros(P, vocab_size, device=tokens.device)
    counts.scatter_add_(1, tokens.flatten(1), mask.flatten(1).to(counts.dtype))
    present = counts > 0
    width = max(int(present.sum(-1).max()), 1)
    columns = present.to(torch.uint8).argsort(dim=-1, descending=True, stable=True)[:, :width]
    return columns, present.gather(1, columns)


def prediction_errors(probs: torch.Tensor, tokens: torch.Tensor, columns: torch.Tensor,
                      valid: torch.Tensor) -> torch.Tensor:
    """g = e_o - q on the group's columns [P, G, R, U]; sliced q is not renormalised (NTHR App. 7.4)."""
    P, G, R, _ = probs.shape
    cols = columns[:, None, None, :].expand(P, G, R, columns.shape[1])
    onehot = (tokens[..., None] == cols).to(probs.dtype)
    return (onehot - probs.gather(-1, cols)) * valid[:, None, None, :]


def influence_scores(g: torch.Tensor, h: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """s_{j,k} = sum_{i in P, k'} <g_{i,k'}, g_{j,k}> <h_{i,k'}, h_{j,k}> = g_{j,k}^T M+ h_{j,k} [P, G, R]."""
    positive = mask * correct[..., None].to(mask.dtype)
    M = torch.einsum("pgru,pgrd,pgr->pud", g, h, positive)  # M+ = sum g h^T over correct tokens
    return torch.einsum("pgru,pud,pgrd->pgr", g, M, h) * mask


def thr_threshold(s: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor,
                  beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """tau = beta * min_{i in P} mean_k s_{i,k} [P] (NTHR eq. 7-8), and whether the group has one:
    a group needs a correct response with at least one token."""
    lengths = mask.sum(-1)
    mean = (s * mask).sum(-1) / lengths.clamp(min=1)
    anchors = correct & (lengths > 0)
    defined = anchors.any(-1)
    lowest = torch.where(anchors, mean, torch.full_like(mean, float("inf"))).min(-1).values
    return torch.where(defined, beta * lowest, torch.zeros_like(lowest)), defined


def token_hidden_reward(advantages: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """THR_{j,k} = A_j s_{j,k}: the first-order change of the correct responses' log-likelihood
    from token (j, k)'s GRPO step, up to a positive factor [recon]."""
    return advantages[..., None] * s


def thr_reweight(advantages: torch.Tensor, thr: torch.Tensor, s: torch.Tensor, tau: torch.Tensor,
                 defined: torch.Tensor, mask: torch.Tensor, p: float, only_dominant: bool = False) -> torch.Tensor:
    """Token advantages [P, G, R]: A (1 + p sign(THR)) on dominant tokens |s| > tau; the rest keep A
    (or 0 in THR-only); groups without a threshold keep GRPO's A everywhere [recon]."""
    dominant = s.abs() > tau[:, None, None]
    weight = torch.where(dominant, 1 + p * torch.sign(thr), torch.full_like(thr, 0.0 if only_dominant else 1.0))
    weight = torch.where(defined[:, None, None], weight, torch.ones_like(weight))
    return advantages[..., None] * weight * mask


# -- the slot-1 transform ------------------------------------------------------------------------------

@torch.no_grad()
def group_influence_scores(policy, batch, cfg: THRConfig, groups: slice) -> torch.Tensor:
    """s [p, G, R] for a slice of groups, from one forward pass of the policy (fp32)."""
    G = batch.group_size
    rows = slice(groups.start * G, groups.stop * G)
    out = policy.response_outputs(batch.input_ids[rows], batch.attention_mask[rows], batch.prompt_len,
                                  cfg.temperature, want_entropy=False, want_logits=True, want_hidden=True)
    shape = (groups.stop - groups.start, G, batch.response_mask.shape[1])
    probs = torch.softmax(out.logits.float(), -1).view(*shape, -1)
    hidden = out.hidden.float().view(*shape, -1)
    tokens = batch.input_ids[rows, batch.prompt_len:].reshape(shape)
    mask = batch.response_mask[rows].float().view(shape)
    correct = (batch.exact[rows] > 0).view(shape[:2])
    columns, valid = group_vocabulary(tokens, mask, probs.shape[-1], cfg.thr_group_vocab)
    return influence_scores(prediction_errors(probs, tokens, columns, valid), hidden, mask, correct)


@ADVANTAGES.register("thr")
def thr_advantage(rewards: torch.Tensor, eps: float = 1e-6, batch=None, policy=None, cfg=None, **_) -> torch.Tensor:
    """GRPO advantages reweighted per token by the sign of THR: [P*G, R] (or [P, G] when p = 0)."""
    if not isinstance(cfg, THRConfig) or batch is None or policy is None:
        raise ConfigError("advantage 'thr' needs a THRConfig, the rollout batch and the policy")
    adv = grpo_advantage(rewards, eps)
    if cfg.thr_p == 0 and not cfg.thr_only:
        return adv  # exactly GRPO: skip the forward pass
    P, G = rewards.shape
    step = -(-P // min(cfg.minibatches, P))  # whole groups per forward, as many rows as an update minibatch
    was_training = policy.training
    policy.eval()
    try:
        s = torch.cat([group_influence_scores(policy, batch, cfg, slice(a, min(a + step, P)))
                       for a in range(0, P, step)])
    finally:
        policy.train(was_training)
    mask = batch.response_mask.float().view(P, G, -1)
    correct = (batch.exact > 0).view(P, G)
    tau, defined = thr_threshold(s, mask, correct, cfg.thr_beta)
    thr = token_hidden_reward(adv, s)
    return thr_reweight(adv, thr, s, tau, defined, mask, cfg.thr_p, cfg.thr_only).reshape(P * G, -1)
