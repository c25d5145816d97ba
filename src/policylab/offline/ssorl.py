"""SS-ORL — "Semi-Supervised Offline Reinforcement Learning with Action-Free Trajectories" (Zheng,
Henaff, Amos, Grover; ICML 2023; official code github.com/facebookresearch/ssorl, `inverse_model_seq.py`,
`data.py`).

Most trajectories carry states and rewards but no actions. SS-ORL (Algorithm 1):
1. train an inverse dynamics model (IDM) p(a_t | s_{t-k}, ..., s_t, s_{t+1}) on the labelled
   trajectories: a tanh-squashed diagonal Gaussian, L = -E_labelled[log p(a_t | .)], the best
   checkpoint by the NLL on held-out labelled *trajectories*;
2. proxy-label every action-free transition with the ensemble's mean action, clipped to the bounds;
3. run any offline algorithm, unchanged, on the labelled plus the proxy-labelled data.

The paper's split (§5): trajectories sorted by return, min(p n, q n) of them labelled, drawn at random
from the lowest q fraction (p = 0.1, q = 0.5): the labels come from the worse half. Sources: the split,
the IDM's form (k = 1 past state, zero-padded at an episode's start; log-std in [-5, 2]; labels
clipped to +-(1 - 1e-5) so the tanh NLL stays finite), validation by trajectory and the ensemble mean
follow the official code. Ours: a 2 x 256 IDM trained 3k steps at lr 1e-3 (the code trains 2 x 1024
longer at 1e-4) without dropout; states standardized with the whole dataset's statistics (action-
free data has states too) and actions in the env's unit box.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.nn import EnsembleMLP, adam
from policylab.core.registry import ALGORITHMS
from policylab.data import OfflineData
from policylab.envs.factory import make_env
from policylab.envs.spaces import ActionScaler

LABEL_CLIP = 1 - 1e-5


@dataclass(frozen=True)
class SSORLConfig(Config):
    labelled_fraction: float = param(0.1, gt=0, le=1)
    """p: the share of all trajectories that keep their actions."""
    label_pool: float = param(0.5, gt=0, le=1)
    """q: labelled trajectories are drawn from the lowest-return q fraction."""
    history: int = param(1, ge=0)
    """k: past states the IDM sees besides s_t and s_{t+1}."""
    idm_hidden: tuple[int, ...] = (256, 256)
    ensemble: int = param(1, gt=0)
    idm_lr: float = param(1e-3, gt=0)
    idm_batch_size: int = param(1024, gt=0)
    idm_steps: int = param(3000, gt=0)
    idm_holdout: float = param(0.1, ge=0, lt=1)
    """Share of the labelled trajectories held out to pick the best IDM checkpoint."""
    idm_eval_every: int = param(250, gt=0)
    base: str = "td3_bc"
    """The offline algorithm run on the labelled + proxy-labelled data."""
    base_hidden: tuple[int, ...] = (256, 256)

    def check(self) -> None:
        if self.base not in ALGORITHMS or ALGORITHMS.get(self.base).pillar != "offline" or self.base == "ssorl":
            known = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).pillar == "offline" and n != "ssorl"]
            raise ConfigError(f"SSORLConfig.base = {self.base!r} is not allowed: offline algorithms: "
                              f"{', '.join(known)}")


def label_split(returns: torch.Tensor, fraction: float, pool: float, seed: int) -> torch.Tensor:
    """Boolean mask over trajectories: min(p n, q n) drawn at random from the lowest-return q fraction."""
    n = returns.shape[0]
    pool_size = max(1, math.ceil(pool * n))
    count = max(1, min(round(fraction * n), pool_size))
    lowest = returns.argsort()[:pool_size]
    chosen = lowest[torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed))[:count]]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[chosen] = True
    return mask


def idm_inputs(data: OfflineData, history: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[N, (k + 2) obs_dim]: s_{t-k}, ..., s_t, s_{t+1} standardized, zeros before an episode's start."""
    t = torch.arange(len(data))
    start = data.episode_starts[:-1][data.episode_ids]
    norm = lambda x: (x - mean) / std  # noqa: E731
    past = []
    for j in range(history, 0, -1):
        index = t - j
        valid = (index >= start)[:, None]
        past.append(torch.where(valid, norm(data.observations[index.clamp(min=0)]), 0.0))
    return torch.cat([*past, norm(data.observations), norm(data.next_observations)], 1)


class InverseDynamics(torch.nn.Module):
    """An ensemble of tanh-Gaussian action models, one batched network."""

    def __init__(self, in_dim: int, act_dim: int, hidden: tuple[int, ...], ensemble: int):
        super().__init__()
        self.net = EnsembleMLP(ensemble, in_dim, 2 * act_dim, hidden)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and log-std, [E, B, act_dim] each."""
        mean, log_std = self.net(x).chunk(2, dim=-1)
        return mean, log_std.clamp(-5.0, 2.0)

    def nll(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """-log p(a | x) of the tanh-squashed Gaussian, averaged over members and transitions."""
        a = actions.clamp(-LABEL_CLIP, LABEL_CLIP)
        u = torch.atanh(a)
        mean, log_std = self.distribution(x)
        gauss = -0.5 * ((u - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)
        return -(gauss - torch.log1p(-a.square())).sum(-1).mean()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The ensemble's mean action in [-1, 1]."""
        return torch.tanh(self.distribution(x)[0]).mean(0).clamp(-1.0, 1.0)


def fit_inverse_dynamics(x: torch.Tensor, actions: torch.Tensor, episode: torch.Tensor, cfg: SSORLConfig,
                         seed: int) -> tuple[InverseDynamics, dict[str, float]]:
    """Train on the labelled transitions; keep the checkpoint with the best held-out-trajectory NLL."""
    generator = torch.Generator().manual_seed(seed)
    episodes = episode.unique()
    held = episodes[torch.randperm(len(episodes), generator=generator)[:int(cfg.idm_holdout * len(episodes))]]
    validation = torch.isin(episode, held)
    train_x, train_a = x[~validation], actions[~validation]
    torch.manual_seed(seed)
    model = InverseDynamics(x.shape[1], actions.shape[1], cfg.idm_hidden, cfg.ensemble)
    opt = adam(model.parameters(), cfg.idm_lr)
    best, best_nll = copy.deepcopy(model.state_dict()), float("inf")
    for step in range(1, cfg.idm_steps + 1):
        rows = torch.randint(len(train_x), (cfg.idm_batch_size,), generator=generator)
        loss = model.nll(train_x[rows], train_a[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if validation.any() and (step % cfg.idm_eval_every == 0 or step == cfg.idm_steps):
            with torch.no_grad():
                nll = float(model.nll(x[validation], actions[validation]))
            if nll < best_nll:
                best, best_nll = copy.deepcopy(model.state_dict()), nll
    if validation.any():
        model.load_state_dict(best)
    return model, {"idm_validation_nll": best_nll, "idm_train_nll": float(loss.detach())}


def proxy_label(data: OfflineData, cfg: SSORLConfig, seed: int) -> tuple[OfflineData, dict[str, Any]]:
    """The dataset with the unlabelled trajectories' actions replaced by the IDM's, and diagnostics
    (the labelled mask; the proxy labels' error against the hidden true actions, which only a
    benchmark can know)."""
    if data.discrete:
        raise ConfigError("ssorl needs continuous actions (a tanh-Gaussian inverse dynamics model); dataset "
                          f"{data.metadata.get('name', '?')!r} has discrete actions")
    labelled = label_split(data.episode_returns(), cfg.labelled_fraction, cfg.label_pool, seed)
    scaler = ActionScaler(make_env(data.metadata["env_id"]).action_space)
    unit = torch.as_tensor(scaler.to_unit(data.actions.numpy()), dtype=torch.float32).clamp(-1, 1)
    mean, std = data.observations.mean(0), data.observations.std(0).clamp(min=1e-3)
    x = idm_inputs(data, cfg.history, mean, std)
    rows = labelled[data.episode_ids]
    model, info = fit_inverse_dynamics(x[rows], unit[rows], data.episode_ids[rows], cfg, seed)
    guessed = model.predict(x[~rows])
    actions = data.actions.clone()  # labelled actions stay bit for bit
    actions[~rows] = torch.as_tensor(scaler.to_env(guessed.numpy()), dtype=data.actions.dtype)
    info.update(labelled=labelled, labelled_trajectories=int(labelled.sum()),
                proxy_label_mse=float((guessed - unit[~rows]).square().mean()) if (~rows).any() else 0.0)
    return replace(data, actions=actions.contiguous()), info


def train_ssorl(cfg: SSORLConfig, *, env_id: Any, seed: int = 0, steps: int = 10_000, **train_kwargs: Any
                ) -> dict[str, Any]:
    """Proxy-label `env_id`'s dataset, then train `cfg.base` on it (its defaults, `base_hidden` wide)."""
    from policylab.offline.train import open_data

    data, info = proxy_label(open_data(env_id), cfg, seed)
    spec = ALGORITHMS.get(cfg.base)
    summary = spec.train(spec.config(hidden=cfg.base_hidden), env_id=data, seed=seed, steps=steps, **train_kwargs)
    summary["ssorl"] = {k: v for k, v in info.items() if k != "labelled"}
    return summary
