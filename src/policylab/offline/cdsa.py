"""CDSA — "Conservative Denoising Score-based Algorithm for Offline Reinforcement Learning" (Liu, Yang,
Li; 2024, arXiv 2406.07541). CDSA-style: no official code exists and the paper's method section was not
readable here, so the composition below is reconstructed from its abstract and summary; the parts are
standard and named.

The conservatism leaves the policy: a pretrained offline policy (IQL, TD3+BC, ...) is left as it is,
and at test time its action is nudged toward where the dataset has density, along a learned score
(the gradient of the log-density), turned into an action by an inverse dynamics model (the paper's
"deterministic and continuous MDP" is what makes s' = f(s, a) and its inverse well defined).

    DSM  L(xi) = E_{x~D, sigma, z~N(0,I)} || eps_xi(x + sigma z, sigma) - z ||^2        score s_xi = -eps_xi / sigma
    (the noise-conditional denoising score matching loss sigma^2 ||s_xi + z / sigma||^2, written for eps)
    a0 = pi(s);  s'0 = s + f(s, a0)                                        forward model (MSE)
    s'* = s'0 + lambda sigma_g^2 s_xi(s'0, sigma_g)                         Tweedie's denoising step toward the data
    da = g(s, s'*) - g(s, s'0)                                  inverse dynamics g (MSE); its own bias cancels
    a = clip(a0 + clip(da, +-delta), -1, 1)                                 the auxiliary action, bounded
`guidance="action"` instead moves the action itself along the score of the joint (s, a) density,
a = a0 + lambda sigma_g^2 s_xi^(a)((s, a0), sigma_g) (clipped the same way); "both" adds the two.
Ours (not the paper's, whose defaults are unknown): 10 geometric noise levels 1 -> 0.01 on standardized
states and unit-box actions, sigma_g = 0.1, lambda = 1 (the exact Tweedie step), delta = 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from policylab.core.atomic import atomic_write
from policylab.core.config import Config, param, save_config
from policylab.core.errors import ConfigError
from policylab.core.nn import adam, mlp
from policylab.core.registry import ALGORITHMS
from policylab.envs.evaluate import episode_returns

GUIDANCE = ("state", "action", "both")


@dataclass(frozen=True)
class CDSAConfig(Config):
    base: str = "iql"
    """The pretrained offline policy whose actions are adjusted."""
    base_hidden: tuple[int, ...] = (256, 256)
    guidance: str = "state"
    """state: the state score through forward and inverse dynamics; action: the joint (s, a) score; both."""
    score_hidden: tuple[int, ...] = (256, 256, 256)
    model_hidden: tuple[int, ...] = (256, 256)
    sigma_max: float = param(1.0, gt=0)
    sigma_min: float = param(0.01, gt=0)
    noise_levels: int = param(10, gt=0)
    guide_sigma: float = param(0.1, gt=0)
    """sigma_g: the noise level whose score moves the predicted next state (or the action)."""
    step_scale: float = param(1.0, ge=0)
    """lambda: 1 is Tweedie's step to the denoised mean; 0 leaves the base policy unchanged."""
    max_shift: float = param(0.2, ge=0)
    """delta: bound on each coordinate of the adjustment, in the unit action box."""
    lr: float = param(1e-3, gt=0)
    batch_size: int = param(256, gt=0)
    guide_steps: int = param(5000, gt=0)
    """Gradient steps of the score, forward and inverse models (trained together, disjoint parameters)."""

    def check(self) -> None:
        if self.guidance not in GUIDANCE:
            raise ConfigError(f"CDSAConfig.guidance = {self.guidance!r} is not allowed: one of {', '.join(GUIDANCE)}")
        if self.sigma_min >= self.sigma_max:
            raise ConfigError(f"CDSAConfig.sigma_min = {self.sigma_min} is not allowed: must be below sigma_max = "
                              f"{self.sigma_max}")
        offline = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).pillar == "offline"
                   and ALGORITHMS.get(n).algorithm is not None]
        if self.base not in offline:
            raise ConfigError(f"CDSAConfig.base = {self.base!r} is not allowed: offline algorithms with a policy: "
                              f"{', '.join(offline)}")


def noise_levels(cfg: CDSAConfig) -> torch.Tensor:
    """sigma_1 > ... > sigma_L, geometric (NCSN)."""
    return torch.logspace(math.log10(cfg.sigma_max), math.log10(cfg.sigma_min), cfg.noise_levels)


class ScoreModel(nn.Module):
    """Noise-conditional score s(x, sigma) = -eps(x, log sigma) / sigma."""

    def __init__(self, dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.eps = mlp(dim + 1, dim, hidden)

    def predict_noise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.eps(torch.cat([x, sigma.log().expand(x.shape[0], 1)], -1))

    def score(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        s = torch.full((x.shape[0], 1), sigma)
        return -self.predict_noise(x, s) / sigma

    def dsm_loss(self, x: torch.Tensor, levels: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """E || eps(x + sigma z, sigma) - z ||^2 with sigma drawn uniformly from `levels` per row."""
        sigma = levels[torch.randint(len(levels), (x.shape[0], 1), generator=generator)]
        z = torch.randn(x.shape, generator=generator)
        return (self.predict_noise(x + sigma * z, sigma) - z).square().sum(-1).mean()


class DensityGuide(nn.Module):
    """The score model(s) and the dynamics pair that turn a state correction into an action correction."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: CDSAConfig):
        super().__init__()
        self.cfg = cfg
        self.uses_state = cfg.guidance in ("state", "both")
        self.uses_action = cfg.guidance in ("action", "both")
        if self.uses_state:
            self.state_score = ScoreModel(obs_dim, cfg.score_hidden)
            self.forward_model = mlp(obs_dim + act_dim, obs_dim, cfg.model_hidden)
            self.inverse_model = nn.Sequential(mlp(2 * obs_dim, act_dim, cfg.model_hidden), nn.Tanh())
        if self.uses_action:
            self.joint_score = ScoreModel(obs_dim + act_dim, cfg.score_hidden)
        self.act_dim = act_dim

    def losses(self, batch: dict[str, torch.Tensor], levels: torch.Tensor, generator: torch.Generator
               ) -> dict[str, torch.Tensor]:
        s, a, s2 = batch["observations"], batch["actions"], batch["next_observations"]
        out = {}
        if self.uses_state:
            out["state_dsm"] = self.state_score.dsm_loss(s2, levels, generator)
            out["forward"] = (s + self.forward_model(torch.cat([s, a], -1)) - s2).square().sum(-1).mean()
            out["inverse"] = (self.inverse_model(torch.cat([s, s2], -1)) - a).square().sum(-1).mean()
        if self.uses_action:
            out["joint_dsm"] = self.joint_score.dsm_loss(torch.cat([s, a], -1), levels, generator)
        return out

    @torch.no_grad()
    def shift(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The unclipped auxiliary action for standardized states and unit-box actions."""
        cfg = self.cfg
        step = cfg.step_scale * cfg.guide_sigma ** 2
        delta = torch.zeros_like(action)
        if self.uses_state:
            predicted = obs + self.forward_model(torch.cat([obs, action], -1))
            denser = predicted + step * self.state_score.score(predicted, cfg.guide_sigma)
            delta += self.inverse_model(torch.cat([obs, denser], -1)) - self.inverse_model(
                torch.cat([obs, predicted], -1))
        if self.uses_action:
            joint = self.joint_score.score(torch.cat([obs, action], -1), cfg.guide_sigma)
            delta += step * joint[:, -self.act_dim:]
        return delta

    def adjust(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        bound = self.cfg.max_shift
        return (action + self.shift(obs, action).clamp(-bound, bound)).clamp(-1.0, 1.0)


def fit_guide(data: Any, cfg: CDSAConfig, seed: int) -> tuple[DensityGuide, dict[str, float]]:
    """Train the guide on prepared data (standardized states, unit-box actions); final losses as metrics."""
    if data.discrete:
        raise ConfigError("cdsa needs continuous actions (the score moves actions in a box); dataset "
                          f"{data.metadata.get('name', '?')!r} has discrete actions")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    guide = DensityGuide(data.observations.shape[1], data.actions.shape[1], cfg)
    opt = adam(guide.parameters(), cfg.lr)
    levels = noise_levels(cfg)
    for _ in range(cfg.guide_steps):
        rows = torch.randint(len(data), (cfg.batch_size,), generator=generator)
        batch = {k: getattr(data, k)[rows] for k in ("observations", "actions", "next_observations")}
        losses = guide.losses(batch, levels, generator)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
    return guide, {f"cdsa/{k}": float(v.detach()) for k, v in losses.items()}


class GuidedAlgorithm:
    """A trained offline algorithm whose `policy_action` goes through the guide; everything else forwarded."""

    def __init__(self, algo: Any, guide: DensityGuide):
        self.algo, self.guide = algo, guide
        self.name = f"{algo.name}+cdsa"

    def __getattr__(self, attr: str) -> Any:  # policy_reset / policy_observe of a return-conditioned base
        return getattr(self.algo, attr)

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.guide.adjust(obs, self.algo.policy_action(obs))

    def mean_shift(self, obs: torch.Tensor) -> float:
        """Mean |a - a0| over the rows of `obs`: how far the guide moves the base policy."""
        base = self.algo.policy_action(obs)
        return float((self.guide.adjust(obs, base) - base).abs().mean())


def train_cdsa(cfg: CDSAConfig, *, env_id: Any, seed: int = 0, steps: int = 10_000, eval_episodes: int = 10,
               **train_kwargs: Any) -> dict[str, Any]:
    """Train `cfg.base` for `steps`, then the guide; evaluate the guided policy on the base's evaluation
    seeds (`eval/return`, `eval/normalized_score`) next to the base's (`eval/base_*`)."""
    from policylab.offline.train import EnvPolicy, open_data

    data = open_data(env_id)
    spec = ALGORITHMS.get(cfg.base)
    summary = spec.train(spec.config(hidden=cfg.base_hidden), env_id=data, seed=seed, steps=steps,
                         eval_episodes=eval_episodes, **train_kwargs)
    prepared = summary["policy"].prepared
    guide, metrics = fit_guide(prepared.data, cfg, seed)
    run = train_kwargs.get("run")
    if run is not None:  # the base's checkpoints are in the run already; the guide and its config beside them
        save_config(run.path / "cdsa_config.json", cfg)
        atomic_write(run.path / "cdsa_guide.pt", lambda f: torch.save(guide.state_dict(), f))
    guided = EnvPolicy(GuidedAlgorithm(summary["algorithm"], guide), prepared)
    evaluation = dict(summary.get("eval", {}))
    if eval_episodes > 0:
        returns = episode_returns(guided, data.metadata["env_id"], eval_episodes, seed=10_000 + 100 * seed)
        evaluation = {**{k.replace("eval/", "eval/base_"): v for k, v in evaluation.items()},
                      "eval/return": float(returns.mean()),
                      "eval/normalized_score": float(data.normalized_score(returns.mean()))}
    summary.update(eval={**evaluation, **metrics}, policy=guided, algorithm=guided.algo)
    return summary
