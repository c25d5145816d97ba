"""EMPG — Entropy-Modulated Policy Gradients (Wang, Liu, Fu et al., "Harnessing Uncertainty: Entropy-Modulated
Policy Gradients for Long-Horizon LLM Agents", arXiv 2509.09265, ByteDance Seed; no training code was released,
only the project page's pseudocode `compute_empg_advantage`, empgseed-seed.github.io).

A step is one agent turn of an episode. Its uncertainty is the mean token entropy of the rollout policy
pi_old over the turn's own tokens, H_{i,k}. With statistics over every step of the batch:

    Hhat_{i,k} = (H_{i,k} - min H) / (max H - min H + 1e-8)                      (Eq. 12, batch min-max)
    g(Hhat)    = exp(-k Hhat) / mean_batch exp(-k Hhat)                            (Eq. 10, batch mean of g = 1)
    f(Hhat)    = exp(-k_f Hhat)                                                     (Eq. 11, future clarity)
    A_mod(i,k) = g(Hhat_{i,k}) A_i + zeta f(Hhat_{i,k+1})                            (modulated advantage)

    A_final(i,k) = A_mod(i,k) - mean over the batch's steps of A_mod               (Eq. 7, zero mean)

A_i is the episode's GRPO advantage on the outcome; A_final is broadcast to the agent tokens of step k
(observations get nothing). Defaults k = k_f = 1, zeta = 0.1 (the pseudocode's).

The final centring (`empg_center`): "step", the default, subtracts the mean of A_mod over the batch's
steps, each step counting once. It is the default because Eq. 7, as far as it could be read, centres the
per-step values A_mod(i,k); that form is reconstructed, not checked against released code (there is none).
"token" subtracts the mean over agent tokens after the broadcast (this module's earlier form), so a step
with more tokens weighs more. The two agree only when every step has the same number of tokens.

What we follow: the project-page pseudocode for Eqs. 10-12 and the 1e-8 in both denominators; the paper's
text (as summarized in our notes, §6) for the A_mod line and the final zero-mean re-normalization (Eq. 7),
which the part of the pseudocode we could read stops before. Choices where the sources are silent:
- the last step of an episode has no k+1 and gets no bonus (f term 0);
- the final re-normalization only subtracts the mean; we found no statement that it also divides by the
  std, so we do not;
- steps that were never played (turn index beyond the episode's end) take no part in min, max or mean;
- a turn cut at max_new_tokens is still a step (it has tokens and an entropy);
- the entropy is read at the RL config's sampling temperature, as the update reads log-probs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.lm.advantages import ADVANTAGES, grpo_advantage
from policylab.lm.multiturn.rollout import EpisodeBatch
from policylab.lm.multiturn.train import MultiTurnConfig

NORM_EPS = 1e-8
"""The pseudocode's epsilon in the min-max and the g denominators."""
CENTERS = ("step", "token")


@dataclass(frozen=True)
class EMPGConfig(MultiTurnConfig):
    advantage: str = "empg"
    env: str = param("search", choices=("retry", "search"))
    base_model: str = "tiny-search"
    empg_k: float = param(1.0, ge=0)
    """k: sharpness of the self-calibrating scale g (Eq. 10)."""
    empg_k_future: float = param(1.0, ge=0)
    """k_f: sharpness of the future-clarity bonus f (Eq. 11)."""
    empg_zeta: float = param(0.1, ge=0)
    """zeta: weight of the future-clarity bonus."""
    empg_scale: bool = True
    """Apply g to the episode advantage (False: the f-only ablation, g = 1)."""
    empg_bonus: bool = True
    """Add the future-clarity bonus (False: the g-only ablation)."""
    empg_center: str = param("step", choices=CENTERS)
    """Final zero-mean centring over the batch's steps ("step", Eq. 7 as read) or its agent tokens ("token")."""


def turn_token_mask(turn_of_token: torch.Tensor, response_mask: torch.Tensor, max_turns: int) -> torch.Tensor:
    """[B, R, T] bool: token r is an agent token of turn t."""
    turns = torch.arange(max_turns, device=turn_of_token.device)
    return (turn_of_token.unsqueeze(-1) == turns) & (response_mask > 0).unsqueeze(-1)


def mean_per_turn(token_values: torch.Tensor, in_turn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of token values [B, R] over each turn's agent tokens: ([B, T], valid [B, T]); 0 where a turn has none."""
    counts = in_turn.sum(1)
    sums = torch.where(in_turn, token_values.unsqueeze(-1), 0.0).sum(1)
    valid = counts > 0
    return torch.where(valid, sums / counts.clamp(min=1), 0.0), valid


@torch.no_grad()
def step_entropies(policy, batch: EpisodeBatch, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """H_{i,k} [B, T]: mean token entropy of `policy` over the agent tokens of turn k, and the mask of turns
    that were played (have agent tokens). Read in eval mode (no dropout), as at rollout time."""
    was_training = policy.training
    policy.eval()
    try:
        entropy = policy.response_outputs(batch.input_ids, batch.attention_mask, batch.prompt_len,
                                          temperature=temperature).entropy.float()
    finally:
        policy.train(was_training)
    return mean_per_turn(entropy, turn_token_mask(batch.turn_of_token, batch.response_mask, batch.max_turns))


def modulated_advantages(H: torch.Tensor, valid: torch.Tensor, episode_adv: torch.Tensor, k: float = 1.0,
                         k_future: float = 1.0, zeta: float = 0.1, scale: bool = True, bonus: bool = True
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A_mod [B, T] from step entropies H [B, T] (valid [B, T]) and episode advantages A_i [B]; 0 on invalid
    steps. Played turns form a prefix of each row, so the step after k is k+1 of the same row."""
    if not valid.any():
        return torch.zeros_like(H), {}
    h = H[valid]
    h_norm = torch.where(valid, (H - h.min()) / (h.max() - h.min() + NORM_EPS), 0.0)  # Eq. 12
    raw_g = torch.exp(-k * h_norm)
    g = raw_g / (raw_g[valid].mean() + NORM_EPS) if scale else torch.ones_like(H)  # Eq. 10
    f = torch.where(valid, torch.exp(-k_future * h_norm), 0.0)  # Eq. 11
    f_next = torch.zeros_like(f)
    f_next[:, :-1] = torch.where(valid[:, :-1], f[:, 1:], 0.0)  # f(Hhat_{i,k+1}); the last step gets none
    term = g * episode_adv.unsqueeze(-1)
    a_mod = term + (zeta * f_next if bonus else 0.0)
    stats = {"empg/g_min": g[valid].min(), "empg/g_max": g[valid].max(),
             "empg/bonus_mean": (zeta * f_next[valid]).mean() if bonus else H.new_zeros(())}
    return torch.where(valid, a_mod, 0.0), stats


def token_advantages_from_steps(step_adv: torch.Tensor, in_turn: torch.Tensor, center: str = "step"
                                ) -> torch.Tensor:
    """Centre [B, T] step advantages on the batch (the final zero-mean re-normalization) and broadcast them to
    the agent tokens of each step: [B, R], 0 off agent tokens. `center` "step": minus the mean over the steps
    that have agent tokens (Eq. 7); "token": minus the mean over all agent tokens after the broadcast."""
    if center not in CENTERS:
        raise ConfigError(f"EMPG center = {center!r} is not allowed: one of {', '.join(CENTERS)}")
    played = in_turn.any(1)  # [B, T]: the step has agent tokens
    if center == "step" and played.any():
        step_adv = step_adv - step_adv[played].mean()
    tokens = (in_turn.float() * step_adv.unsqueeze(1)).sum(-1)
    agent = in_turn.any(-1)
    if center == "token" and agent.any():
        tokens = torch.where(agent, tokens - tokens[agent].mean(), 0.0)
    return tokens


@ADVANTAGES.register("empg")
def empg_advantage(rewards: torch.Tensor, eps: float = 1e-6, batch=None, policy=None, cfg=None, metrics=None,
                   **_) -> torch.Tensor:
    """Token advantages [P*G, R]: GRPO's episode advantage modulated per step by pi_old's step entropy."""
    if not isinstance(cfg, EMPGConfig) or not isinstance(batch, EpisodeBatch) or policy is None:
        raise ConfigError("advantage 'empg' needs an EMPGConfig, an EpisodeBatch (multi-turn episodes) and the "
                          "policy")
    episode_adv = grpo_advantage(rewards, eps).reshape(-1)
    H, valid = step_entropies(policy, batch, cfg.temperature)
    step_adv, stats = modulated_advantages(H, valid, episode_adv, cfg.empg_k, cfg.empg_k_future, cfg.empg_zeta,
                                           cfg.empg_scale, cfg.empg_bonus)
    in_turn = turn_token_mask(batch.turn_of_token, batch.response_mask, batch.max_turns)
    if metrics is not None:
        metrics.update({key: value.detach() for key, value in stats.items()})
        if valid.any():
            metrics["empg/step_entropy"] = H[valid].mean()
    return token_advantages_from_steps(step_adv, in_turn, cfg.empg_center)
