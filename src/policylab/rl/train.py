"""Train an online algorithm on a gymnasium env through the core Trainer.

The steps are split so that the Python API (`rl/api.py`) and `train_online` (the CLI, the experiments,
the catalog) run the very same code in the same order: `online_updates` turns an environment-step
budget into updates, `make_collector` builds the batch source, `fit_online` runs the Trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from policylab.core.config import Config
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.core.seeding import seed_everything
from policylab.core.trainer import Trainer, TrainerConfig
from policylab.envs.evaluate import evaluate_policy
from policylab.envs.factory import EnvLike, describe_env
from policylab.envs.vector import VectorEnv
from policylab.rl.collectors import ReplayCollector, RolloutCollector


def is_on_policy(cfg: Config) -> bool:
    return hasattr(cfg, "rollout_steps")


def online_updates(cfg: Config, env_steps: int, warm: bool = False) -> int:
    """How many updates spend `env_steps` environment steps (at least one); `warm`: the replay warm-up is
    behind (a later `learn` call), so every step is a learning step."""
    if isinstance(env_steps, bool) or not isinstance(env_steps, int) or env_steps <= 0:
        raise ConfigError(f"steps = {env_steps!r} is not allowed: must be an integer > 0 environment steps")
    if is_on_policy(cfg):
        return max(env_steps // (cfg.num_envs * cfg.rollout_steps), 1)
    if warm:
        return max(math.ceil(env_steps / cfg.num_envs), 1)
    if cfg.learning_starts >= env_steps:
        raise ConfigError(f"learning_starts = {cfg.learning_starts} is not allowed with steps = {env_steps}: "
                          "the random warm-up must end before the budget does")
    return max(math.ceil((env_steps - cfg.learning_starts) / cfg.num_envs), 1)


def make_collector(cfg: Config, envs: VectorEnv, env_steps: int) -> RolloutCollector | ReplayCollector:
    if is_on_policy(cfg):
        return RolloutCollector(envs, cfg.rollout_steps)
    return ReplayCollector(envs, min(cfg.buffer_size, env_steps + cfg.num_envs), cfg.batch_size,
                           cfg.learning_starts)


def build_online(algo_cls: type, cfg: Config, env: EnvLike, seed: int, env_steps: int):
    """Return (algo, batch source, number of updates that spend `env_steps`)."""
    updates = online_updates(cfg, env_steps)
    seed_everything(seed)
    envs = VectorEnv(env, cfg.num_envs, seed)
    algo = algo_cls(envs.single_observation_space, envs.single_action_space, cfg, total_updates=updates)
    return algo, make_collector(cfg, envs, env_steps), updates


def fit_online(algo: Any, source: Any, updates: int, *, eval_env: EnvLike | None, seed: int,
               run: RunDir | None = None, max_seconds: float | None = None, eval_episodes: int = 10,
               evals: int = 10, checkpoints: int = 10, progress: bool | None = None,
               callbacks: tuple[Callable, ...] = ()) -> dict[str, Any]:
    """Run `updates` updates; evaluate `evals` times on `eval_env` (none when it is None or eval_episodes is 0)."""
    trainer_cfg = TrainerConfig(
        max_steps=updates, max_seconds=max_seconds,
        log_every=max(updates // 100, 1),
        eval_every=max(updates // evals, 1) if evals > 0 else 0,
        checkpoint_every=max(updates // checkpoints, 1) if checkpoints > 0 else 0,
        progress=progress,
    )
    evaluate = None
    if eval_env is not None and eval_episodes > 0:
        evaluate = lambda agent: evaluate_policy(agent, eval_env, eval_episodes, seed=10_000 + 100 * seed)
    summary = Trainer(algo, source, trainer_cfg, run, evaluate, callbacks).fit()
    summary["env_steps"] = source.env_steps
    summary["algorithm"] = algo
    summary["collector"] = source  # the replay datasets of the offline catalog read its buffer
    return summary


def train_online(algo_cls: type, cfg: Config, *, env_id: EnvLike, seed: int = 0, steps: int = 100_000,
                 run: RunDir | None = None, max_seconds: float | None = None, eval_episodes: int = 10,
                 evals: int = 10, checkpoints: int = 10, progress: bool | None = None,
                 callbacks: tuple[Callable, ...] = ()) -> dict[str, Any]:
    """Train for `steps` environment steps; evaluate and checkpoint `evals`/`checkpoints` times."""
    algo, source, updates = build_online(algo_cls, cfg, env_id, seed, steps)
    if run is not None:
        run.save_config(cfg, algo=algo.name, env_id=describe_env(env_id), seed=seed, steps=steps)
    return fit_online(algo, source, updates, eval_env=env_id, seed=seed, run=run, max_seconds=max_seconds,
                      eval_episodes=eval_episodes, evals=evals, checkpoints=checkpoints, progress=progress,
                      callbacks=callbacks)


def eval_curve(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(environment steps, evaluation return) pairs from a run's metric records."""
    return [(r["env_steps"], r["eval/return"]) for r in records if "eval/return" in r and "env_steps" in r]
