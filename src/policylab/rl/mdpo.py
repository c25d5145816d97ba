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
"""

from __future__ import annotations

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
        return {"loss/policy": policy_loss.detach(), "loss/value": torch.stack(value_losses).mean(),
                "kl": kl.detach(), "kl_weight": torch.tensor(1.0 / t_k), "entropy": entropy, "lr": torch.tensor(lr)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "value_optimizer": self.value_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.value_optimizer.load_state_dict(state["value_optimizer"])
