"""Train an offline algorithm on a dataset through the core Trainer; evaluate in the dataset's env.

The dataset is prepared once: states standardized with the dataset's mean and std (CORL's and
TD3+BC's default), continuous actions mapped to [-1, 1] by the env's action bounds. Batches come
from a sampler (uniform by default), so weighted samplers plug in without touching algorithms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.core.trainer import Trainer, TrainerConfig
from policylab.data import SAMPLERS, OfflineData, UniformTransitions, load_dataset
from policylab.envs.evaluate import evaluate_policy
from policylab.envs.factory import make_env
from policylab.envs.spaces import ActionScaler


@dataclass(frozen=True)
class OfflineConfig(Config):
    batch_size: int = param(256, gt=0)
    hidden: tuple[int, ...] = (256, 256)
    lr: float = param(3e-4, gt=0)
    gamma: float = param(0.99, gt=0, le=1)
    normalize_states: bool = True
    """Standardize observations with the dataset's mean and std (applied at evaluation too)."""
    sampler: str = "uniform"
    """How batches are drawn (`policylab.data.SAMPLERS`): uniform, or trajectory weighting rw / aw / top."""
    sampler_temperature: float = param(0.1, gt=0)
    """alpha of the rw / aw samplers (Hong et al. 2023: 0.1)."""
    sampler_top_percent: float = param(10.0, gt=0, le=100)
    """K of the top sampler: uniform over the best K% trajectories."""

    def check(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"{type(self).__name__}.sampler = {self.sampler!r} is not allowed: known samplers: "
                              f"{', '.join(SAMPLERS.names())}")


def dataset_spaces(data: OfflineData) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces a dataset implies: the action bounds its metadata records (arrays,
    Minari), else those of its env (the catalog's datasets), else its actions' range."""
    meta = data.metadata
    obs_space = gym.spaces.Box(-np.inf, np.inf, (data.observations.shape[1],), np.float32)
    if data.discrete:
        return obs_space, gym.spaces.Discrete(int(meta["num_actions"]))
    if "action_low" in meta and "action_high" in meta:
        return obs_space, gym.spaces.Box(np.asarray(meta["action_low"], np.float32),
                                         np.asarray(meta["action_high"], np.float32), dtype=np.float32)
    if meta.get("env_id"):
        env = make_env(meta["env_id"])
        action_space = env.action_space
        env.close()
        return obs_space, action_space
    low, high = data.actions.min(0).values.numpy(), data.actions.max(0).values.numpy()
    return obs_space, gym.spaces.Box(low, np.maximum(high, low + 1e-6), dtype=np.float32)


class Prepared:
    """The dataset in the algorithm's units, plus the maps back to the environment's."""

    def __init__(self, data: OfflineData, normalize: bool, stats: dict[str, Any] | None = None):
        """`stats` (from `stats()`) reuses a saved model's normalization instead of this dataset's."""
        self.observation_space, self.action_space = dataset_spaces(data)
        obs = data.observations
        if stats is not None:
            self.mean, self.std = stats["mean"], stats["std"]
        else:
            self.mean = obs.mean(0) if normalize else torch.zeros(obs.shape[1])
            self.std = obs.std(0).clamp(min=1e-3) if normalize else torch.ones(obs.shape[1])
        actions = data.actions
        self.scaler = None if data.discrete else ActionScaler(self.action_space)
        if self.scaler is not None:
            actions = torch.as_tensor(self.scaler.to_unit(actions.numpy()), dtype=torch.float32).clamp(-1, 1)
        self.data = replace(data, observations=self.normalize(obs).contiguous(), actions=actions.contiguous(),
                            next_observations=self.normalize(data.next_observations).contiguous())
        self.raw = data

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std

    def stats(self) -> dict[str, Any]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}


def return_spread_scale(prepared: Prepared, enabled: bool) -> float:
    """1000 / (max - min episode return) of the dataset (CORL's and the IQL/O-DICE code's locomotion reward
    scaling, so temperatures mean the same across reward scales); 1 when disabled or all returns are equal."""
    returns = prepared.raw.episode_returns()
    spread = float(returns.max() - returns.min())
    return 1000.0 / spread if enabled and spread > 0 else 1.0


def require_actions(data: OfflineData, algo: str, discrete: bool) -> None:
    """Refuse a dataset whose action type the algorithm cannot learn from, naming both."""
    if data.discrete != discrete:
        want, have = ("discrete", "continuous") if discrete else ("continuous", "discrete")
        raise ConfigError(f"{algo} needs {want} actions; dataset {data.metadata.get('name', '?')!r} has {have} "
                          f"actions ({data.metadata.get('env_id', '?')})")


class OfflineSource:
    """Batch source for the Trainer: one sampler draw per update."""

    def __init__(self, sampler: Any):
        self.sampler = sampler
        self.updates = 0

    def next_batch(self, algo: Any) -> dict[str, torch.Tensor]:
        self.updates += 1
        return self.sampler.sample()

    def metrics(self) -> dict[str, float]:
        return self.sampler.metrics() if hasattr(self.sampler, "metrics") else {}

    def counters(self) -> dict[str, float]:
        return {"gradient_steps": self.updates}

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.updates = state["updates"]


class EnvPolicy:
    """An offline algorithm's policy as the evaluator expects it: env observations in, env actions out.

    The evaluator's per-episode hooks go to the algorithm's `policy_reset` / `policy_observe` where it has
    them (a return-conditioned policy tracks its remaining target); rewards stay in env units.
    """

    def __init__(self, algo: Any, prepared: Prepared):
        self.algo, self.prepared = algo, prepared

    def reset(self, num_episodes: int) -> None:
        if hasattr(self.algo, "policy_reset"):
            self.algo.policy_reset(num_episodes)

    def observe(self, indices: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        if hasattr(self.algo, "policy_observe"):
            self.algo.policy_observe(torch.as_tensor(indices), torch.as_tensor(rewards), torch.as_tensor(dones))

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        unit = self.algo.policy_action(self.prepared.normalize(torch.as_tensor(obs, dtype=torch.float32)))
        if self.prepared.scaler is None:
            return unit.numpy()
        return self.prepared.scaler.to_env(unit.numpy())


def open_data(dataset: str | Path | OfflineData) -> OfflineData:
    if isinstance(dataset, OfflineData):
        return dataset
    if not Path(dataset).with_suffix(".parquet").exists():
        raise ConfigError(f"dataset {dataset!r} is not a dataset file; named datasets are built with "
                          "`policylab data build <name>` (the CLI resolves names for you)")
    return load_dataset(dataset)


def prepare_offline(algo_cls: type, cfg: OfflineConfig, data: OfflineData, seed: int,
                    sampler: Callable[[OfflineData, int, int], Any] | None = None,
                    stats: dict[str, Any] | None = None) -> tuple[Prepared, Any, OfflineSource]:
    """(the prepared dataset, the algorithm, its batch source): everything before the loop."""
    seed_everything(seed)
    prepared = Prepared(data, cfg.normalize_states, stats)
    algo = algo_cls(prepared, cfg)
    own = algo.make_sampler(prepared.data, seed) if hasattr(algo, "make_sampler") else None
    if sampler is not None:  # a caller's sampler wins over the config's and the algorithm's
        chosen = sampler(prepared.data, cfg.batch_size, seed)
    elif cfg.sampler != "uniform":
        if own is not None:
            raise ConfigError(f"{type(cfg).__name__}.sampler = {cfg.sampler!r} is not allowed with {algo.name}: it "
                              "draws its own batches (return-conditioned windows or a top-percent subset)")
        chosen = SAMPLERS.get(cfg.sampler)(prepared.data, cfg.batch_size, seed, cfg)
    else:
        chosen = own if own is not None else UniformTransitions(prepared.data, cfg.batch_size, seed)
    return prepared, algo, OfflineSource(chosen)


def fit_offline(algo: Any, source: OfflineSource, prepared: Prepared, steps: int, *, eval_env: Any, seed: int,
                run: RunDir | None = None, max_seconds: float | None = None, progress: bool | None = None,
                evals: int = 10, eval_episodes: int = 10, checkpoints: int = 5,
                callbacks: tuple[Callable, ...] = ()) -> dict[str, Any]:
    """`steps` gradient steps; evaluation only with an `eval_env`, normalized scores only with reference scores."""
    policy = EnvPolicy(algo, prepared)
    data = prepared.raw

    def evaluate(_: Any) -> dict[str, float]:
        result = evaluate_policy(policy, eval_env, eval_episodes, seed=10_000 + 100 * seed)
        if data.has_reference_scores:
            result["normalized_score"] = float(data.normalized_score(result["return"]))
        return result

    trainer_cfg = TrainerConfig(max_steps=steps, max_seconds=max_seconds, log_every=max(steps // 100, 1),
                                eval_every=max(steps // evals, 1) if evals > 0 else 0,
                                checkpoint_every=max(steps // checkpoints, 1) if checkpoints > 0 else 0,
                                progress=progress)
    evaluating = eval_env is not None and eval_episodes > 0
    summary = Trainer(algo, source, trainer_cfg, run, evaluate if evaluating else None, callbacks).fit()
    summary.update(algorithm=algo, policy=policy)
    return summary


def check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"steps = {steps!r} is not allowed: must be an integer > 0 gradient steps")
    return steps


def train_offline(algo_cls: type, cfg: OfflineConfig, *, env_id: str | Path | OfflineData, seed: int = 0,
                  steps: int = 10_000, run: RunDir | None = None, max_seconds: float | None = None,
                  progress: bool | None = None, evals: int = 10, eval_episodes: int = 10, checkpoints: int = 5,
                  sampler: Callable[[OfflineData, int, int], Any] | None = None,
                  callbacks: tuple[Callable, ...] = ()) -> dict[str, Any]:
    """`steps` gradient steps on the dataset `env_id` (a dataset file or loaded data), evaluated in the env
    its metadata names (none: no evaluation)."""
    check_steps(steps)
    data = open_data(env_id)
    prepared, algo, source = prepare_offline(algo_cls, cfg, data, seed, sampler)
    if run is not None:
        run.save_config(cfg, algo=algo.name, dataset=str(data.metadata.get("name", env_id)), seed=seed, steps=steps)
    return fit_offline(algo, source, prepared, steps, eval_env=data.metadata.get("env_id"), seed=seed, run=run,
                       max_seconds=max_seconds, progress=progress, evals=evals, eval_episodes=eval_episodes,
                       checkpoints=checkpoints, callbacks=callbacks)
