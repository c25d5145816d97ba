"""A DDPM behaviour policy pi(a | s) (Ho et al. 2020; Chi et al.'s diffusion policy, as MBRCSL uses it):
multi-modal, so at a fork it picks a branch instead of averaging two into a wall.

    q(a_k | a_0) = N(sqrt(abar_k) a_0, (1 - abar_k) I)        cosine schedule, K steps (MBRCSL: K = 10)
    L = E || eps - eps_theta(sqrt(abar_k) a_0 + sqrt(1 - abar_k) eps, s, k) ||^2
    sampling: a_K ~ N(0, I); per step predict a_0, clip it to the action box, then draw a_{k-1} from the
    posterior q(a_{k-1} | a_k, a_0) (the "clip_sample" DDPM sampler)
The denoiser is an MLP on [s, a_k, one-hot(k)]; actions live in the unit box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from policylab.core.config import Config, param
from policylab.core.nn import adam, mlp
from policylab.core.run import progress_bar


@dataclass(frozen=True)
class DiffusionConfig(Config):
    steps: int = param(10, gt=0)
    """K denoising steps."""
    hidden: tuple[int, ...] = (256, 256, 256)
    lr: float = param(1e-3, gt=0)
    batch_size: int = param(256, gt=0)
    train_steps: int = param(10_000, gt=0)


def cosine_alpha_bars(steps: int, s: float = 0.008) -> torch.Tensor:
    """abar_k for k = 1..K (Nichol and Dhariwal's cosine schedule, betas capped at 0.999)."""
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2).square()
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


class DiffusionPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: DiffusionConfig):
        super().__init__()
        self.cfg, self.act_dim = cfg, act_dim
        self.denoiser = mlp(obs_dim + act_dim + cfg.steps, act_dim, cfg.hidden, act="silu")
        self.register_buffer("alpha_bars", cosine_alpha_bars(cfg.steps))

    def predict_noise(self, obs: torch.Tensor, noisy: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """k: [B] step indices 0..K-1 (index k is the (k+1)-th noise level)."""
        return self.denoiser(torch.cat([obs, noisy, F.one_hot(k, self.cfg.steps).float()], -1))

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
             ) -> torch.Tensor:
        k = torch.randint(self.cfg.steps, (obs.shape[0],), generator=generator)
        eps = torch.randn(actions.shape, generator=generator)
        abar = self.alpha_bars[k][:, None]
        noisy = abar.sqrt() * actions + (1 - abar).sqrt() * eps
        return (self.predict_noise(obs, noisy, k) - eps).square().sum(-1).mean()

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = obs.shape[0]
        a = torch.randn((n, self.act_dim), generator=generator)
        bars = self.alpha_bars
        for k in range(self.cfg.steps - 1, -1, -1):
            abar, abar_prev = bars[k], (bars[k - 1] if k > 0 else torch.tensor(1.0))
            alpha = abar / abar_prev
            eps = self.predict_noise(obs, a, torch.full((n,), k))
            a0 = ((a - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1.0, 1.0)
            mean = (abar_prev.sqrt() * (1 - alpha) * a0 + alpha.sqrt() * (1 - abar_prev) * a) / (1 - abar)
            if k == 0:
                return mean.clamp(-1.0, 1.0)
            var = (1 - abar_prev) / (1 - abar) * (1 - alpha)
            a = mean + var.sqrt() * torch.randn(a.shape, generator=generator)
        return a


def fit_diffusion_policy(obs: torch.Tensor, actions: torch.Tensor, cfg: DiffusionConfig, seed: int,
                         progress: bool | None = None) -> tuple[DiffusionPolicy, dict[str, float]]:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    policy = DiffusionPolicy(obs.shape[1], actions.shape[1], cfg)
    opt = adam(policy.parameters(), cfg.lr)
    with progress_bar(progress) as bar:
        task = bar.add_task("behaviour policy", total=cfg.train_steps, rate="")
        for step in range(1, cfg.train_steps + 1):
            rows = torch.randint(len(obs), (cfg.batch_size,), generator=generator)
            loss = policy.loss(obs[rows], actions[rows], generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 100 == 0 or step == cfg.train_steps:
                bar.update(task, completed=step)
    return policy, {"behaviour/loss": float(loss.detach())}
