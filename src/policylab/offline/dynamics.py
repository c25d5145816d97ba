"""A probabilistic dynamics ensemble for model-based offline RL (PETS / MBPO / MOPO's model, as
OfflineRL-Kit trains it for MBRCSL): E Gaussian MLPs evaluated as one batched network.

    p_e(s' - s, r | s, a) = N(mu_e(s, a), diag exp(logvar_e(s, a)))
    logvar soft-bounded: max - softplus(max - l), then min + softplus(l - min), max / min learned
    L = mean_e [ (mu_e - y)^2 exp(-logvar_e) + logvar_e ] + 0.01 (sum max - sum min) + weight decay
Each step, every member gets its own minibatch drawn uniformly with replacement from the whole training
split: independent minibatch streams, not a fixed per-member bootstrap resample (OfflineRL-Kit draws one
bootstrap index set per member once, `np.random.randint(train_size, size=[num_ensemble, train_size])`,
and reshuffles it every epoch). A hold-out set (the smaller
of 20% and `holdout_max` transitions) scores every member by MSE after each epoch; a member's weights
are kept at its best hold-out score (an improvement counts when > 1%); training stops once no member
improved for `patience` epochs; the `elites` best members make the predictions, one drawn per row.
Inputs: standardized states (the caller's) and unit-box actions.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.nn import EnsembleMLP
from policylab.core.run import progress_bar


@dataclass(frozen=True)
class DynamicsConfig(Config):
    ensemble: int = param(7, gt=0)
    elites: int = param(5, gt=0)
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    """Per layer, input layer first (OfflineRL-Kit's); one more entry than `hidden`."""
    lr: float = param(1e-3, gt=0)
    batch_size: int = param(256, gt=0)
    holdout: float = param(0.2, gt=0, lt=1)
    holdout_max: int = param(1000, gt=0)
    patience: int = param(5, gt=0)
    """Epochs without a > 1% hold-out improvement of any member before training stops."""
    max_epochs: int = param(100, gt=0)
    epoch_steps: int | None = param(None, gt=0)
    """Gradient steps per epoch; None is one pass over the training transitions."""

    def check(self) -> None:
        if self.elites > self.ensemble:
            raise ConfigError(f"DynamicsConfig.elites = {self.elites} is not allowed: at most ensemble = "
                              f"{self.ensemble}")
        if len(self.weight_decay) != len(self.hidden) + 1:
            raise ConfigError(f"DynamicsConfig.weight_decay has {len(self.weight_decay)} entries; it needs one per "
                              f"layer, len(hidden) + 1 = {len(self.hidden) + 1}")


class DynamicsEnsemble(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: DynamicsConfig):
        super().__init__()
        self.obs_dim, self.cfg = obs_dim, cfg
        out = obs_dim + 1
        self.net = EnsembleMLP(cfg.ensemble, obs_dim + act_dim, 2 * out, cfg.hidden, act="silu")
        self.max_logvar = nn.Parameter(torch.full((out,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out,), -10.0))
        self.register_buffer("elite_index", torch.arange(cfg.elites))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and bounded log-variance of [s' - s, r], [E, B, obs_dim + 1] each."""
        x = torch.cat([obs, action], -1)
        mean, logvar = self.net(x).chunk(2, -1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        return mean, self.min_logvar + F.softplus(logvar - self.min_logvar)

    def nll(self, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean, logvar = self(obs, action)
        gauss = ((mean - target).square() * (-logvar).exp() + logvar).mean((1, 2)).sum()
        return gauss + 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    def decay(self) -> torch.Tensor:
        return sum(w * layer.weight.square().sum() / 2 for w, layer in zip(self.cfg.weight_decay, self.net.layers))

    @torch.no_grad()
    def member_mse(self, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self(obs, action)[0] - target).square().mean((1, 2))

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (s', r) from one elite per row; also the elites' disagreement (max distance of an
        elite's mean next state from their average), MOPO's uncertainty."""
        mean, logvar = self(obs, action)
        mean, logvar = mean[self.elite_index], logvar[self.elite_index]
        sample = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=generator)
        pick = torch.randint(len(self.elite_index), (obs.shape[0],), generator=generator)
        chosen = sample[pick, torch.arange(obs.shape[0])]
        spread = (mean[..., :-1] - mean[..., :-1].mean(0)).norm(dim=-1).amax(0)
        return obs + chosen[:, :-1], chosen[:, -1], spread


def fit_dynamics(obs: torch.Tensor, actions: torch.Tensor, next_obs: torch.Tensor, rewards: torch.Tensor,
                 cfg: DynamicsConfig, seed: int, progress: bool | None = None
                 ) -> tuple[DynamicsEnsemble, dict[str, float]]:
    """Train with hold-out early stopping; returns the model (best weights per member, elites chosen)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    target = torch.cat([next_obs - obs, rewards[:, None]], -1)
    order = torch.randperm(len(obs), generator=generator)
    n_hold = min(int(cfg.holdout * len(obs)), cfg.holdout_max)
    hold, train = order[:n_hold], order[n_hold:]
    model = DynamicsEnsemble(obs.shape[1], actions.shape[1], cfg)
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    best = model.member_mse(obs[hold], actions[hold], target[hold])
    snapshots = [copy.deepcopy(model.net.state_dict()) for _ in range(cfg.ensemble)]
    steps = cfg.epoch_steps or max(len(train) // cfg.batch_size, 1)
    stale, epochs = 0, 0
    with progress_bar(progress) as bar:
        task = bar.add_task("dynamics epochs", total=cfg.max_epochs, rate="")
        while epochs < cfg.max_epochs:
            epochs += 1
            bar.update(task, completed=epochs, rate=f"hold-out {float(best.mean()):.4g}")
            for _ in range(steps):
                rows = train[torch.randint(len(train), (cfg.ensemble, cfg.batch_size), generator=generator)]
                loss = model.nll(obs[rows], actions[rows], target[rows]) + model.decay()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            mse = model.member_mse(obs[hold], actions[hold], target[hold])
            improved = (best - mse) / best > 0.01
            if improved.any():
                state = model.net.state_dict()
                for e in torch.nonzero(improved).flatten().tolist():
                    snapshots[e] = {k: v.clone() for k, v in state.items()}
                best = torch.where(improved, mse, best)
                stale = 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    # each member's best weights: one stacked state, member e from snapshot e
    merged = {k: torch.stack([snapshots[e][k][e] for e in range(cfg.ensemble)]) for k in snapshots[0]}
    model.net.load_state_dict(merged)
    final = model.member_mse(obs[hold], actions[hold], target[hold])
    model.elite_index = final.argsort()[:cfg.elites]
    return model, {"dynamics/epochs": float(epochs), "dynamics/holdout_mse": float(final[model.elite_index].mean()),
                   "dynamics/train_loss": float(loss.detach())}
