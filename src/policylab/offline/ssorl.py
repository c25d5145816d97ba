"""SS-ORL — "Semi-Supervised Offline Reinforcement Learning with Action-Free Trajectories" (Zheng,
Henaff, Amos, Grover; ICML 2023; official code github.com/facebookresearch/ssorl, `inverse_model_seq.py`,
`data.py`, `model/mlp.py`, `config/config.yaml`).

Most trajectories carry states and rewards but no actions. SS-ORL (Algorithm 1):
1. train an inverse dynamics model (IDM) p(a_t | s_{t-k}, ..., s_t, s_{t+1}) on the labelled
   trajectories: a tanh-squashed diagonal Gaussian, L = -E_labelled[log p(a_t | .)], the best
   checkpoint by the NLL on held-out labelled *trajectories*;
2. proxy-label every action-free transition with the ensemble's mean action, clipped to the bounds;
3. run any offline algorithm, unchanged, on the labelled plus the proxy-labelled data.

The paper's split (§5): trajectories sorted by return, min(p n, q n) of them labelled, drawn at random
from the lowest q fraction (p = 0.1, q = 0.5): the labels come from the worse half.

As the official code does (checked in it):
- the split (`data.py`, `load_dataset` / `setup_action_label`): its loader drops the lowest-return
  trajectory (a loop that keeps trajectories while their total length stays *below* the dataset's), then
  labels floor(p n') drawn uniformly from the floor(q n') lowest of the n' = n - 1 left, both sizes floored;
- the IDM's window (`data.py` `get_transition`, `inverse_model_seq.py` `predict_actions_unlabeled_trajs`):
  k = 1 past state; the k + 2 states are sliced from the episode's own T states, front-padded with raw
  zeros and then standardized, so a pad reads -mean / std; the code never uses s_T, so the last step's
  window is [pad, s_{T-2}, s_{T-1}] (`official_edges = False` gives [s_{t-k}, ..., s_t, s_{t+1}] with
  standardized zeros as pads instead);
- labels clamped to +-(1 - 1e-6) for the likelihood and proxy labels clipped to the same range
  (`utils.py` `get_env_spec`'s action range, in D4RL's unit box); log-std squashed by tanh into [-5, 2]
  (`model/mlp.py`); validation by held-out trajectories (floor(10%) of the labelled ones); the ensemble mean.
Ours: the IDM is one network with mean and log-std heads (the code: two MLPs), 2 x 256, lr 1e-3, 3k steps
of batch 1024 drawn with replacement, validated every 250 steps, no dropout (the code's default: 2 x 1024
with dropout 0.1, lr 1e-4, 100 iterations of batch 1024 over shuffled transitions, validated every 10);
states standardized with the whole dataset's statistics as the code does, but with the sample std floored
at 1e-3 (the code adds 1e-6, which would scale a constant dimension's pad to -mean * 1e6); actions in the
env's unit box; the lowest-return trajectory stays in the data, proxy-labelled (the code drops it from
everything, which reads as a side effect of its loader, and we want the fully labelled arm and SS-ORL to
see the same trajectories). The code means to keep the best validation checkpoint but rebinds a loop
variable (`inverse_model_seq.py`, `inverse_model = copy.deepcopy(best_inverse_model)`), so it labels with
the last iterate; we keep the best, as it intends.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.nn import EnsembleMLP, adam
from policylab.core.registry import ALGORITHMS
from policylab.data import OfflineData
from policylab.envs.spaces import ActionScaler

LABEL_CLIP = 1 - 1e-6
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class SSORLConfig(Config):
    labelled_fraction: float = param(0.1, gt=0, le=1)
    """p: the share of all trajectories that keep their actions."""
    label_pool: float = param(0.5, gt=0, le=1)
    """q: labelled trajectories are drawn from the lowest-return q fraction."""
    history: int = param(1, ge=0)
    """k: past states the IDM sees besides s_t and s_{t+1}."""
    official_edges: bool = True
    """Episode-edge windows as the official code builds them (raw-zero pads, [pad, s_{T-2}, s_{T-1}] last)."""
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
    """Boolean mask over trajectories, as the official code draws it: the lowest-return trajectory is set
    aside, then floor(p n') are drawn at random from the floor(q n') lowest-return of the n' = n - 1 left."""
    n = returns.shape[0]
    survivors = returns.argsort(stable=True)[1:]  # ascending; the official loader drops the lowest
    pool_size = int(pool * (n - 1))
    count = min(int(fraction * (n - 1)), pool_size)
    if count == 0:
        raise ConfigError(f"label_split: {n} trajectories leave {n - 1} after the lowest-return one, and "
                          f"floor({fraction} x {n - 1}) or floor({pool} x {n - 1}) is 0: no trajectory would keep its "
                          "actions (raise labelled_fraction / label_pool or use more trajectories)")
    lowest = survivors[:pool_size]
    chosen = lowest[torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed))[:count]]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[chosen] = True
    return mask


def idm_inputs(data: OfflineData, history: int, mean: torch.Tensor, std: torch.Tensor,
               official_edges: bool = True) -> torch.Tensor:
    """[N, (k + 2) obs_dim]: the window s_{t-k}, ..., s_t, s_{t+1} of each transition, standardized.

    official_edges (k > 0): the official code's window, the last k + 2 of the episode's states s_0..s_{T-1}
    up to s_{t+1}, front-padded with raw zeros before standardizing; at the last step (no s_T among them)
    that is [pad, s_{T-2}, s_{T-1}] for k = 1. Otherwise, and for k = 0 (where the code takes the next
    observation too), past states before the start are standardized zeros and s_{t+1} is the next observation.
    """
    t = torch.arange(len(data))
    ids = data.episode_ids
    start, end = data.episode_starts[:-1][ids], data.episode_starts[1:][ids]
    norm = lambda x: (x - mean) / std  # noqa: E731
    if official_edges and history > 0:
        pad = norm(torch.zeros_like(mean))
        upper = torch.minimum(t + 2, end)  # one past the window's last state
        lower = torch.maximum(t - history, start)
        columns = []
        for j in range(history + 2):
            index = upper - (history + 2) + j
            valid = (index >= lower)[:, None]
            columns.append(torch.where(valid, norm(data.observations[index.clamp(min=0)]), pad))
        return torch.cat(columns, 1)
    past = []
    for j in range(history, 0, -1):
        index = t - j
        valid = (index >= start)[:, None]
        past.append(torch.where(valid, norm(data.observations[index.clamp(min=0)]), 0.0))
    return torch.cat([*past, norm(data.observations), norm(data.next_observations)], 1)


def tanh_gaussian_nll(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """-log p(a) of tanh(N(mean, exp(log_std)^2)), summed over action dimensions and averaged over the rest;
    labels clamped to +-LABEL_CLIP so that atanh stays finite. log |d tanh(u) / du| in the stable form
    2 (log 2 - u - softplus(-2 u)), as the official code's TanhTransform computes it."""
    u = torch.atanh(actions.clamp(-LABEL_CLIP, LABEL_CLIP))
    gauss = -0.5 * ((u - mean) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return -(gauss - log_det).sum(-1).mean()


class InverseDynamics(torch.nn.Module):
    """An ensemble of tanh-Gaussian action models, one batched network."""

    def __init__(self, in_dim: int, act_dim: int, hidden: tuple[int, ...], ensemble: int):
        super().__init__()
        self.net = EnsembleMLP(ensemble, in_dim, 2 * act_dim, hidden)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and log-std, [E, B, act_dim] each; the log-std squashed by tanh into [-5, 2]."""
        mean, raw = self.net(x).chunk(2, dim=-1)
        return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1.0)

    def nll(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """-log p(a | x) of the tanh-squashed Gaussian, averaged over members and transitions."""
        return tanh_gaussian_nll(*self.distribution(x), actions)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The ensemble's mean action (mean of tanh(mu_e)), clipped to +-LABEL_CLIP."""
        return torch.tanh(self.distribution(x)[0]).mean(0).clamp(-LABEL_CLIP, LABEL_CLIP)


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
    from policylab.offline.train import dataset_spaces

    labelled = label_split(data.episode_returns(), cfg.labelled_fraction, cfg.label_pool, seed)
    scaler = ActionScaler(dataset_spaces(data)[1])  # the recorded bounds, else the env's
    unit = torch.as_tensor(scaler.to_unit(data.actions.numpy()), dtype=torch.float32).clamp(-1, 1)
    mean, std = data.observations.mean(0), data.observations.std(0).clamp(min=1e-3)
    x = idm_inputs(data, cfg.history, mean, std, cfg.official_edges)
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
