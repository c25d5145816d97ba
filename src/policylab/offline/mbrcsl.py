"""MBRCSL — "Free from Bellman Completeness: Trajectory Stitching via Model-based Return-conditioned
Supervised Learning" (Zhou, Zhu, Zhou, Cui, Gupta, Du; ICLR 2024, arXiv 2310.19308; official code
github.com/zhaoyizhou1123/mbrcsl, `examples/pointmaze/run_mbrcsl_maze.py`).

RCSL copies whole trajectories, so it cannot join the start of one to the end of another; Q-learning
can, but needs Bellman completeness. MBRCSL stitches with a model instead (Algorithm 1):
1. a dynamics ensemble p(s', r | s, a) (`offline/dynamics.py`: 7 Gaussian members, 5 elites, hold-out
   early stopping) and a multi-modal behaviour policy pi_b(a | s) (`offline/diffusion.py`: DDPM, 10 steps)
   fitted on the data;
2. rollouts of pi_b in the model from the data's initial states, H = the data's episode length, in
   batches of 200: tau = (s_0, a_0, r_0, ...), R(tau) = sum_t r_t;
3. keep a rollout iff R(tau) > max over the data's trajectories of their return (the filter), until
   100 are kept or the batch budget is spent; each kept step carries g_t = R(tau) - sum_{t'<t} r_t';
4. RCSL (`offline/rcsl.py`) trained on the kept rollouts only; at test time conditioned on the best
   kept return, then on what is left of it.
One guard is ours: a rollout that leaves the data's state range (widened by `support_margin`) is
discarded whatever its model return, since a diverging model's rewards pass any filter.
Where no rollout beats the data the filter keeps nothing; we then train RCSL on the data itself and
say so (`mbrcsl/fallback` = 1) rather than lowering the bar. Datasets with terminations are refused:
the model does not predict them (the paper's tasks have none). The elites' disagreement along the
kept rollouts is logged (the notes' pitfall: the filter trusts the model's rewards).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.atomic import atomic_write_json
from policylab.core.config import Config, param, save_config
from policylab.core.errors import ConfigError
from policylab.core.run import progress_bar
from policylab.data import OfflineData
from policylab.offline.diffusion import DiffusionConfig, DiffusionPolicy, fit_diffusion_policy
from policylab.offline.dynamics import DynamicsConfig, DynamicsEnsemble, fit_dynamics
from policylab.offline.rcsl import RCSL, RCSLConfig
from policylab.offline.train import Prepared, open_data, train_offline


@dataclass(frozen=True)
class MBRCSLConfig(Config):
    """Defaults are the official code's (pointmaze), except RCSL's weight decay 0.1, not used here."""

    dynamics_ensemble: int = param(7, gt=0)
    dynamics_elites: int = param(5, gt=0)
    dynamics_hidden: tuple[int, ...] = (200, 200, 200, 200)
    dynamics_weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    dynamics_lr: float = param(1e-3, gt=0)
    dynamics_max_epochs: int = param(100, gt=0)
    dynamics_epoch_steps: int | None = param(None, gt=0)
    """Gradient steps per hold-out check; None is one pass over the training transitions."""
    behaviour_steps: int = param(10, gt=0)
    """K, the diffusion behaviour policy's denoising steps."""
    behaviour_hidden: tuple[int, ...] = (256, 256, 256)
    behaviour_train_steps: int = param(40_000, gt=0)
    """About the official 50 epochs of a 1k-trajectory maze dataset at batch 256."""
    rcsl_hidden: tuple[int, ...] = (1024, 1024)
    rcsl_lr: float = param(5e-5, gt=0)
    rollout_batch: int = param(200, gt=0)
    keep: int = param(100, gt=0)
    """Stop rolling out once this many rollouts beat the data's best return."""
    max_rollout_batches: int = param(1000, gt=0)
    horizon: int | None = param(None, gt=0)
    """Rollout length; None is the data's longest episode."""
    support_margin: float | None = param(0.1, ge=0)
    """Ours, not the paper's: a rollout whose states leave the data's per-dimension range, widened by this
    fraction of it (at least of one standard deviation), is never kept (a diverging model's rewards would
    pass any return filter); None turns the guard off, as the official code has none."""

    def check(self) -> None:
        self.dynamics()  # its own checks, named by its fields

    def dynamics(self) -> DynamicsConfig:
        return DynamicsConfig(ensemble=self.dynamics_ensemble, elites=self.dynamics_elites,
                              hidden=self.dynamics_hidden, weight_decay=self.dynamics_weight_decay,
                              lr=self.dynamics_lr, max_epochs=self.dynamics_max_epochs,
                              epoch_steps=self.dynamics_epoch_steps)

    def behaviour(self) -> DiffusionConfig:
        return DiffusionConfig(steps=self.behaviour_steps, hidden=self.behaviour_hidden,
                               train_steps=self.behaviour_train_steps)

    def rcsl(self) -> RCSLConfig:
        return RCSLConfig(hidden=self.rcsl_hidden, lr=self.rcsl_lr)


@torch.no_grad()
def model_rollouts(dynamics: DynamicsEnsemble, behaviour: DiffusionPolicy, starts: torch.Tensor, horizon: int,
                   generator: torch.Generator, varying: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One batch of rollouts from `starts` [B, obs]: observations [B, H + 1, obs], actions [B, H, act],
    rewards [B, H], disagreement [B, H] (standardized units, as the models see them). The dynamics model
    sees and predicts only the `varying` dimensions (all by default); the others keep their start value."""
    varying = torch.arange(starts.shape[1]) if varying is None else varying
    obs = [starts]
    actions, rewards, spread = [], [], []
    for _ in range(horizon):
        a = behaviour.sample(obs[-1], generator)
        moved, r, d = dynamics.step(obs[-1][:, varying], a, generator)
        nxt = obs[-1].clone()
        nxt[:, varying] = moved
        obs.append(nxt)
        actions.append(a)
        rewards.append(r)
        spread.append(d)
    return {"observations": torch.stack(obs, 1), "actions": torch.stack(actions, 1),
            "rewards": torch.stack(rewards, 1), "disagreement": torch.stack(spread, 1)}


def stitch(data: OfflineData, cfg: MBRCSLConfig, seed: int, progress: bool | None = None
           ) -> tuple[OfflineData | None, dict[str, float]]:
    """Steps 1-3: the kept rollouts as a dataset in env units (None when none beat the data), and metrics."""
    if data.discrete:
        raise ConfigError(f"mbrcsl needs continuous actions; dataset {data.metadata.get('name', '?')!r} has "
                          "discrete actions")
    if data.terminals.any():
        raise ConfigError(f"mbrcsl's model does not predict terminations; dataset {data.metadata.get('name', '?')!r} "
                          f"has {int(data.terminals.sum())} terminal transitions")
    prepared = Prepared(data, normalize=True)
    unit = prepared.data
    varying = torch.nonzero(data.observations.std(0) > 0).flatten()  # a constant goal is not dynamics
    dynamics, metrics = fit_dynamics(unit.observations[:, varying], unit.actions, unit.next_observations[:, varying],
                                     unit.rewards, cfg.dynamics(), seed, progress)
    behaviour, more = fit_diffusion_policy(unit.observations, unit.actions, cfg.behaviour(), seed, progress)
    metrics.update(more)
    best_data_return = float(data.episode_returns().max())
    lengths = data.episode_starts[1:] - data.episode_starts[:-1]
    horizon = cfg.horizon or int(lengths.max())
    starts = unit.observations[data.episode_starts[:-1]]
    low, high = unit.observations.amin(0), unit.observations.amax(0)
    if cfg.support_margin is not None:
        widen = cfg.support_margin * (high - low).clamp(min=1.0)  # a constant dimension gets margin x 1 std
        low, high = low - widen, high + widen
    generator = torch.Generator().manual_seed(seed)
    kept: dict[str, list[torch.Tensor]] = {"observations": [], "actions": [], "rewards": [], "disagreement": []}
    count, batches, left, model_returns = 0, 0, 0, []
    with progress_bar(progress) as bar:
        task = bar.add_task("model rollouts (kept)", total=cfg.keep, rate="")
        while count < cfg.keep and batches < cfg.max_rollout_batches:
            rows = torch.randint(len(starts), (cfg.rollout_batch,), generator=generator)
            batch = model_rollouts(dynamics, behaviour, starts[rows], horizon, generator, varying)
            inside = ((batch["observations"] >= low) & (batch["observations"] <= high)).all(-1).all(-1)
            if cfg.support_margin is None:
                inside = torch.ones_like(inside)
            returns = batch["rewards"].sum(1)
            model_returns.append(returns[inside])
            left += int((~inside).sum())
            good = inside & (returns > best_data_return)
            for key in kept:
                kept[key].append(batch[key][good])
            count += int(good.sum())
            batches += 1
            bar.update(task, completed=min(count, cfg.keep), rate=f"{batches} batches")
    all_returns = torch.cat(model_returns)
    if len(all_returns) == 0:
        all_returns = torch.full((1,), float("nan"))
    metrics.update({"mbrcsl/kept": float(count), "mbrcsl/rollout_batches": float(batches),
                    "mbrcsl/left_support": left / (batches * cfg.rollout_batch),
                    "mbrcsl/best_data_return": best_data_return, "mbrcsl/model_return_mean": float(all_returns.mean()),
                    "mbrcsl/model_return_max": float(all_returns.max())})
    if count == 0:
        return None, metrics
    rollouts = {k: torch.cat(v) for k, v in kept.items()}
    metrics.update({"mbrcsl/kept_return_max": float(rollouts["rewards"].sum(1).max()),
                    "mbrcsl/kept_return_mean": float(rollouts["rewards"].sum(1).mean()),
                    "mbrcsl/kept_disagreement": float(rollouts["disagreement"].mean())})
    return rollout_dataset(rollouts, prepared, data.metadata), metrics


def rollout_dataset(rollouts: dict[str, torch.Tensor], prepared: Prepared, metadata: dict[str, Any]) -> OfflineData:
    """Kept rollouts [N, H] as truncated episodes in env units (states un-standardized, actions back to the box)."""
    n, horizon = rollouts["rewards"].shape
    obs = rollouts["observations"] * prepared.std + prepared.mean
    actions = torch.as_tensor(prepared.scaler.to_env(rollouts["actions"].reshape(n * horizon, -1).numpy()),
                              dtype=torch.float32)
    timeouts = torch.zeros(n, horizon)
    timeouts[:, -1] = 1.0
    return OfflineData(observations=obs[:, :-1].reshape(n * horizon, -1).contiguous(), actions=actions.contiguous(),
                       rewards=rollouts["rewards"].reshape(-1).contiguous(),
                       next_observations=obs[:, 1:].reshape(n * horizon, -1).contiguous(),
                       terminals=torch.zeros(n * horizon), timeouts=timeouts.reshape(-1),
                       episode_starts=torch.arange(0, n * horizon + 1, horizon),
                       metadata={**metadata, "name": f"{metadata.get('name', 'data')}-mbrcsl-rollouts"})


def train_mbrcsl(cfg: MBRCSLConfig, *, env_id: Any, seed: int = 0, steps: int = 10_000, **train_kwargs: Any
                 ) -> dict[str, Any]:
    """Stitch with the model, then `steps` RCSL gradient steps on the kept rollouts (on the data if none)."""
    data = open_data(env_id)
    rollouts, metrics = stitch(data, cfg, seed, train_kwargs.get("progress"))
    metrics["mbrcsl/fallback"] = float(rollouts is None)
    summary = train_offline(RCSL, cfg.rcsl(), env_id=rollouts if rollouts is not None else data, seed=seed,
                            steps=steps, **train_kwargs)
    summary.update(mbrcsl=metrics, rollouts=rollouts)
    run = train_kwargs.get("run")
    if run is not None:  # the run's config.json is RCSL's; the pipeline's config and model phase beside it
        save_config(run.path / "mbrcsl_config.json", cfg)
        atomic_write_json(run.path / "mbrcsl_stitch.json", metrics)
    return summary
