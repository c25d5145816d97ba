"""O-DICE — "ODICE: Revealing the Mystery of Distribution Correction Estimation via Orthogonal-gradient
Update" (Mao, Xu, Zhang, Zhan; ICLR 2024; official code github.com/maoliyuan/ODICE-Pytorch, `odice.py`).

V-DICE learns a state value by the convex dual (lambda in (0, 1), f* the conjugate of an f-divergence
generator, delta(s, a, s') = r + gamma (1 - d) V(s') - V(s)):

  min_V  (1 - lambda) E_D[V(s)] + lambda E_D[f*(delta)]                                          (eq. 4)

Its true gradient has a forward part (through V(s)) and a backward part (through V(s')) that often
point against each other. O-DICE keeps the forward gradient and only the part of the eta-scaled
backward gradient orthogonal to it (§3, Algorithm 1; eq. 9):

  g_fwd = grad lambda E[f*(r + gamma V_target(s') - V(s))]
  g_bwd = grad lambda eta E[f*(r + gamma V(s') - V_target(s))]
  g     = grad (1 - lambda) E[V(s)] + g_fwd + (g_bwd - <g_bwd, g_fwd> / max(||g_fwd||^2, 1e-10) g_fwd)

The projection is global: one coefficient over all value parameters, as the code does. `update`
chooses the rule: "orthogonal" (O-DICE), "true" (the plain true gradient, online V on both sides)
or "semi" (only the forward part, an IQL-like semi-gradient), the paper's three learners.
f = Pearson chi^2 (the default): f*(y) = y w - (w - 1)^2 with w = max(y/2 + 1, 0); reverse KL:
f*(y) = exp(y - 1).

Policy extraction (as the official code does, not the paper's f'^-1-ratio in full): weighted
behaviour cloning max E_D[w log pi(a|s)] with w = min(f'^-1(delta_fwd), 100), i.e. ReLU(delta) for
Pearson chi^2 (exp(delta - 1) for reverse KL), delta the forward residual, detached.

Defaults from the code's RL config: lambda 0.6, eta 1, value and policy lr 2e-4, policy weight decay
1e-4, LayerNorm in V, Polyak 0.005, rewards scaled by 1000 / (max - min episode return). Ours, where
we deviate: a single V (the code's twin-V option is off), the library's Gaussian policy with a tanh
mean (the code's has no tanh and clips actions), states standardized (the code does not).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.core.gradients import flat_grad, orthogonal_part, write_grad
from policylab.core.nn import adam, mlp, soft_update
from policylab.offline.bc import GaussianBCActor
from policylab.offline.train import OfflineConfig, Prepared, require_actions, return_spread_scale

UPDATES = ("orthogonal", "true", "semi")
DIVERGENCES = ("pearson_chi2", "reverse_kl")


@dataclass(frozen=True)
class ODICEConfig(OfflineConfig):
    lam: float = param(0.6, gt=0, lt=1)
    """lambda of eq. 4, the weight of the dual term."""
    eta: float = param(1.0, ge=0)
    """Scale of the backward gradient before its projection."""
    update: str = "orthogonal"
    divergence: str = "pearson_chi2"
    lr: float = param(2e-4, gt=0)
    policy_weight_decay: float = param(1e-4, ge=0)
    tau: float = param(0.005, gt=0, le=1)
    max_weight: float = param(100.0, gt=0)
    value_layer_norm: bool = True
    normalize_rewards: bool = True
    """Scale rewards by 1000 / (max - min episode return) of the dataset, as the code does for locomotion."""

    def check(self) -> None:
        super().check()
        for field, allowed in (("update", UPDATES), ("divergence", DIVERGENCES)):
            if getattr(self, field) not in allowed:
                raise ConfigError(f"ODICEConfig.{field} = {getattr(self, field)!r} is not allowed: one of "
                                  f"{', '.join(allowed)}")


def f_star(y: torch.Tensor, divergence: str) -> torch.Tensor:
    if divergence == "reverse_kl":
        return torch.exp(y - 1)
    w = (y / 2 + 1).clamp(min=0)
    return y * w - (w - 1).square()


def f_prime_inverse(y: torch.Tensor, divergence: str) -> torch.Tensor:
    """The optimal density ratio w*(delta): ReLU(delta) for the code's Pearson chi^2, exp(delta - 1) for KL."""
    return torch.exp(y - 1) if divergence == "reverse_kl" else y.clamp(min=0)


class ODICE:
    name = "odice"

    def __init__(self, prepared: Prepared, cfg: ODICEConfig):
        data = prepared.data
        require_actions(data, self.name, discrete=False)
        self.cfg = cfg
        n_obs, n_act = data.observations.shape[1], data.actions.shape[1]
        self.value = mlp(n_obs, 1, cfg.hidden, layer_norm=cfg.value_layer_norm)
        self.value_target = copy.deepcopy(self.value).requires_grad_(False)
        self.actor = GaussianBCActor(n_obs, n_act, cfg.hidden)
        self.value_opt = adam(self.value.parameters(), cfg.lr)
        self.actor_opt = adam(self.actor.parameters(), cfg.lr,
                              weight_decay=cfg.policy_weight_decay)
        self.reward_scale = return_spread_scale(prepared, cfg.normalize_rewards)

    def value_gradient(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The update rule's gradient of the value parameters (flat), the residual for the policy weights,
        and what to log."""
        cfg, params = self.cfg, list(self.value.parameters())
        rewards = batch["rewards"] * self.reward_scale
        discount = cfg.gamma * (1 - batch["terminals"])
        v = self.value(batch["observations"]).squeeze(-1)
        v_next = self.value(batch["next_observations"]).squeeze(-1)
        base = flat_grad((1 - cfg.lam) * v.mean(), params, retain_graph=True)
        if cfg.update == "true":
            residual = rewards + discount * v_next - v
            g = base + flat_grad(cfg.lam * f_star(residual, cfg.divergence).mean(), params)
            return g, residual.detach(), {}
        with torch.no_grad():
            target_v = self.value_target(batch["observations"]).squeeze(-1)
            target_next = self.value_target(batch["next_observations"]).squeeze(-1)
        forward_residual = rewards + discount * target_next - v
        g_fwd = flat_grad(cfg.lam * f_star(forward_residual, cfg.divergence).mean(), params,
                          retain_graph=cfg.update == "orthogonal")
        if cfg.update == "semi":
            return base + g_fwd, forward_residual.detach(), {}
        backward_residual = rewards + discount * v_next - target_v
        g_bwd = flat_grad(cfg.lam * cfg.eta * f_star(backward_residual, cfg.divergence).mean(), params)
        cosine = torch.nn.functional.cosine_similarity(g_fwd, g_bwd, dim=0, eps=1e-12)
        return base + g_fwd + orthogonal_part(g_bwd, g_fwd), forward_residual.detach(), {"grad_cosine": cosine}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        grad, residual, info = self.value_gradient(batch)
        write_grad(list(self.value.parameters()), grad)
        self.value_opt.step()
        soft_update(self.value_target, self.value, cfg.tau)

        weights = f_prime_inverse(residual, cfg.divergence).clamp(max=cfg.max_weight)
        actor_loss = self.actor.weighted_nll(batch["observations"], batch["actions"], weights)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        return {"loss/actor": actor_loss.detach(), "residual": residual.mean(), "weight": weights.mean(),
                "weight_zero_frac": (weights == 0).float().mean(), **info}

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    parts = ("value", "value_target", "actor", "value_opt", "actor_opt")

    def state_dict(self) -> dict[str, Any]:
        return {p: getattr(self, p).state_dict() for p in self.parts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for p in self.parts:
            getattr(self, p).load_state_dict(state[p])
