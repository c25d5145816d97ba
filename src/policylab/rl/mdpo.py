"""On-policy MDPO — "Mirror Descent Policy Optimization" (Tomar, Shani, Efroni, Ghavamzadeh; ICLR 2022,
arXiv 2005.09814; official code manantomar/Mirror-Descent-Policy-Optimization, `mdpo_on/mdpo.py`).

Each iteration k approximately solves the mirror-descent step with m full-batch gradient steps from
theta_k (no clipping, no line search):
    max_theta  E_{s, a ~ pi_k}[ (pi_theta(a|s) / pi_k(a|s)) A(s, a) ] - (1 / t_k) E_s[ KL(pi_theta(.|s) || pi_k(.|s)) ]
    t_k = 1 - k / K over the run's own K iterations (so the proximity weight 1 / t_k grows), KL new-first as
    the official code (`kl_direction="forward"` puts pi_k first, TRPO's direction)
A: GAE(gamma, lambda), standardized over the batch. One step from theta_k is a plain policy-gradient step
(the KL's gradient is 0 there): m > 1 is what makes it mirror descent. The value function is fitted
after the policy steps, `value_epochs` passes of minibatches (the official: 5 x 128), by its own Adam
(the two optimizers see disjoint gradients, so neither moves the other's network).
Rollouts, GAE and the networks are PPO's (`rl/ppo.py`).

Off-policy MDPO (`MDPOOff`, the paper's §5, `mdpo_off/mdpo.py`) is SAC with the actor loss
    E_{s~D, xi}[ (1/t) (log pi_theta(a|s) - log pi_k(a|s)) + lam log pi_k(a|s) - Q(s, a) ],  a = a_theta(s, xi)
pi_k a frozen copy refreshed every `refresh_every` gradient steps (the official `gradient_steps`, 1000),
log pi_k evaluated at the new reparameterized action (its gradient flows through the action too), 1/t
held at `kl_weight` (the official `klconst` 1.0), lam = 0.2 fixed; anchoring at the uniform policy instead
of pi_k gives SAC's actor loss back. Ours: SAC-v2's critics (twin Q, soft target with lam, no V network),
where the official code uses SAC-v1's V network.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import kl_divergence

from policylab.core.config import param
from policylab.core.nn import adam
from policylab.rl.ppo import PPO, PPOConfig
from policylab.rl.returns import gae
from policylab.rl.sac import SAC, SACConfig


@dataclass(frozen=True)
class MDPOConfig(PPOConfig):
    sgd_steps: int = param(10, gt=0)
    """m: full-batch policy steps per iteration (the official 10)."""
    kl_direction: str = param("reverse", choices=("reverse", "forward"))
    """reverse: KL(pi_theta || pi_k) (the official code); forward: KL(pi_k || pi_theta)."""
    value_epochs: int = param(5, gt=0)
    value_minibatch_size: int = param(128, gt=0)
    anneal_lr: bool = True
    """The official decays the learning rate linearly with t_k."""


class MDPO(PPO):
    name = "mdpo"

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: MDPOConfig, total_updates: int | None = None):
        super().__init__(obs_space, act_space, cfg, total_updates)
        self.value_optimizer = adam(self.params, cfg.lr, eps=1e-5)

    def kl(self, new: torch.distributions.Distribution, old: torch.distributions.Distribution) -> torch.Tensor:
        kl = kl_divergence(new, old) if self.cfg.kl_direction == "reverse" else kl_divergence(old, new)
        return kl if self.discrete else kl.sum(-1)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        t_k = max(self._progress_left(), 1.0 / max(self.total_updates or 1, 1))  # 1 - k / K, never 0
        lr = cfg.lr * t_k if cfg.anneal_lr else cfg.lr
        for opt in (self.optimizer, self.value_optimizer):
            for group in opt.param_groups:
                group["lr"] = lr
        advantages, returns = gae(batch["rewards"], batch["values"], batch["dones"], batch["last_value"],
                                  cfg.gamma, cfg.gae_lambda)
        obs, actions = batch["obs"].flatten(0, 1), batch["actions"].flatten(0, 1)
        old_logprobs, advantages, returns = (x.flatten() for x in (batch["logprobs"], advantages, returns))
        if cfg.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        with torch.no_grad():
            old = self.dist(obs)
        for _ in range(cfg.sgd_steps):
            dist = self.dist(obs)
            surrogate = ((self.log_prob(dist, actions) - old_logprobs).exp() * advantages).mean()
            kl = self.kl(dist, old).mean()
            policy_loss = -(surrogate - kl / t_k)
            self.optimizer.zero_grad(set_to_none=True)
            policy_loss.backward()
            nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
            self.optimizer.step()
        value_losses = []
        for _ in range(cfg.value_epochs):
            order = torch.randperm(obs.shape[0])
            for start in range(0, obs.shape[0], cfg.value_minibatch_size):
                idx = order[start:start + cfg.value_minibatch_size]
                value_loss = (self.value(obs[idx]) - returns[idx]).pow(2).mean()
                self.value_optimizer.zero_grad(set_to_none=True)
                value_loss.backward()
                nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.value_optimizer.step()
                value_losses.append(value_loss.detach())
        self.updates += 1
        with torch.no_grad():
            entropy = self.entropy(self.dist(obs)).mean()
        self.obs_in.commit()
        return {"loss/policy": policy_loss.detach(), "loss/value": torch.stack(value_losses).mean(),
                "kl": kl.detach(), "kl_weight": torch.tensor(1.0 / t_k), "entropy": entropy, "lr": torch.tensor(lr)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "value_optimizer": self.value_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.value_optimizer.load_state_dict(state["value_optimizer"])


@dataclass(frozen=True)
class MDPOOffConfig(SACConfig):
    init_alpha: float = param(0.2, gt=0)
    """lam: the fixed entropy coefficient (official `lam` 0.2)."""
    autotune: bool = False
    kl_weight: float = param(1.0, gt=0)
    """1/t, held constant (official `klconst`)."""
    refresh_every: int = param(1000, gt=0)
    """Gradient steps between copies of the anchor policy pi_k."""


class MDPOOff(SAC):
    name = "mdpo_off"

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: MDPOOffConfig,
                 total_updates: int | None = None):
        super().__init__(obs_space, act_space, cfg, total_updates)
        self.anchor = copy.deepcopy(self.actor).requires_grad_(False)
        self.steps = 0

    def actor_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.steps % self.cfg.refresh_every == 0:
            self.anchor.load_state_dict(self.actor.state_dict())
        self.steps += 1
        pi_actions, logp, pre_tanh = self.head(self.actor(obs), with_pre_tanh=True)
        anchor_logp = self.head.log_prob(self.anchor(obs), pre_tanh)
        q_pi = self.q_values(self.critic, obs, pi_actions).min(0).values
        loss = self.cfg.kl_weight * (logp - anchor_logp) + alpha * anchor_logp - q_pi
        return loss.mean(), logp

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "anchor": self.anchor.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.anchor.load_state_dict(state["anchor"])
        self.steps = state["steps"]
