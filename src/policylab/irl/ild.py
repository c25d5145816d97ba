"""ILD — "Imitation Learning via Differentiable Physics" (Chen, Ma, Xu; arXiv 2206.04873; official code
github.com/sail-sg/ILD, `policy/brax_task/train_on_policy.py`).

No reward learning: the policy is unrolled inside a differentiable simulator (`envs/diff`) and the
distance between its state trajectory and one expert trajectory is minimized by back-propagation
through the dynamics. The distance matches each state to its nearest counterpart (Chamfer), which
forgives timing differences that a time-aligned loss punishes:
    d(x, y) = RMS over feature dimensions of (x - y)        (features standardized by the expert's std)
    L_CF = w_dev (1/T) sum_t w_t min_t' d(s_t, s^E_t') + (1/T') sum_t' w_t' min_t d(s^E_t', s_t)
           deviation: every agent state near some expert state; coverage: every expert state reached;
           w_t = rho^(T - t) reverse discounts (rho = 1 by default)
    L_L2 = (1/T) sum_t d(s_t, s^E_t)                        the time-aligned ablation
Official defaults kept: BC warm start (MSE to the expert's actions) before ILD, truncation of the
back-propagation every 10 steps, gradient-norm clip 0.3, lr 1e-3 decayed linearly to 1e-5, deviation
weight 1. Ours: a deterministic tanh policy (the official samples a reparameterized tanh-Gaussian with
its entropy term off by default), `rollouts` starts per iteration from the task's start distribution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.nn import adam, mlp
from policylab.envs.diff import DiffEnv, rollout

OBJECTIVES = ("chamfer", "l2")


@dataclass(frozen=True)
class ILDConfig(Config):
    objective: str = "chamfer"
    truncate_every: int | None = param(10, gt=0)
    """Detach the state every this many steps (None: full back-propagation through the rollout)."""
    deviation_weight: float = param(1.0, ge=0)
    reverse_discount: float = param(1.0, gt=0, le=1)
    iterations: int = param(200, gt=0)
    rollouts: int = param(32, gt=0)
    lr: float = param(1e-3, gt=0)
    final_lr: float = param(1e-5, gt=0)
    max_grad_norm: float = param(0.3, gt=0)
    bc_steps: int = param(1000, ge=0)
    """Behaviour-cloning warm start (MSE to the expert's actions), as the official il = 1."""
    hidden: tuple[int, ...] = (64, 64)

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"ILDConfig.objective = {self.objective!r} is not allowed: one of "
                              f"{', '.join(OBJECTIVES)}")


class TanhPolicy(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, max_action: float, hidden: tuple[int, ...]):
        super().__init__()
        self.net, self.max_action = mlp(obs_dim, action_dim, hidden, act="tanh"), max_action

    def forward(self, obs: torch.Tensor, t: int | None = None) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(obs))


def pairwise_rms(agent: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
    """[B, T, T']: RMS over features between agent states [B, T, d] and expert states [T', d]."""
    return ((agent[:, :, None, :] - expert[None, None]).square().mean(-1) + 1e-12).sqrt()


def chamfer_loss(agent: torch.Tensor, expert: torch.Tensor, deviation_weight: float = 1.0,
                 reverse_discount: float = 1.0) -> torch.Tensor:
    distance = pairwise_rms(agent, expert)
    w_agent = reverse_discount ** torch.arange(agent.shape[1] - 1, -1, -1, dtype=agent.dtype)
    w_expert = reverse_discount ** torch.arange(expert.shape[0] - 1, -1, -1, dtype=agent.dtype)
    deviation = (w_agent * distance.amin(2)).mean(1)
    coverage = (w_expert * distance.amin(1)).mean(1)
    return (deviation_weight * deviation + coverage).mean()


def aligned_loss(agent: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
    if agent.shape[1] != expert.shape[0]:
        raise ConfigError(f"the time-aligned loss needs trajectories of one length, got {agent.shape[1]} and "
                          f"{expert.shape[0]}")
    return ((agent - expert[None]).square().mean(-1) + 1e-12).sqrt().mean()


def behaviour_cloning(policy: TanhPolicy, obs: torch.Tensor, actions: torch.Tensor, steps: int, lr: float) -> None:
    opt = adam(policy.parameters(), lr)
    for _ in range(steps):
        loss = (policy(obs) - actions).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def ild(env: DiffEnv, expert_states: torch.Tensor, expert_actions: torch.Tensor,
        sample_starts: Callable[[int, torch.Generator], torch.Tensor], cfg: ILDConfig, seed: int
        ) -> tuple[TanhPolicy, list[float]]:
    """Train a policy to imitate one expert trajectory (states [T + 1, n], actions [T, m]); the losses."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    expert_obs = env.observe(expert_states)
    scale = expert_obs.std(0).clamp(min=1e-3)
    policy = TanhPolicy(expert_obs.shape[1], env.action_dim, env.max_action, cfg.hidden)
    behaviour_cloning(policy, expert_obs[:-1], expert_actions, cfg.bc_steps, cfg.lr)
    opt = adam(policy.parameters(), cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: 1 - (1 - cfg.final_lr / cfg.lr) * it / max(cfg.iterations - 1, 1))
    target = expert_obs[1:] / scale
    horizon = expert_actions.shape[0]
    losses = []
    for _ in range(cfg.iterations):
        states, _ = rollout(env, policy, sample_starts(cfg.rollouts, generator), horizon, cfg.truncate_every)
        agent = env.observe(states[:, 1:].reshape(-1, env.state_dim)).view(cfg.rollouts, horizon, -1) / scale
        loss = (chamfer_loss(agent, target, cfg.deviation_weight, cfg.reverse_discount) if cfg.objective == "chamfer"
                else aligned_loss(agent, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return policy, losses
