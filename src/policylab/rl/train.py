"""Train an online algorithm on a gymnasium env through the core Trainer."""

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
from policylab.envs.vector import VectorEnv
from policylab.rl.collectors import ReplayCollector, RolloutCollector


def build_online(algo_cls: type, cfg: Config, env_id: str, seed: int, env_steps: int):
    """Return (algo, batch source, number of updates that spend `env_steps`)."""
    if env_steps <= 0:
        raise ConfigError(f"steps = {env_steps} is not allowed: must be > 0 environment steps")
    seed_everything(seed)
    envs = VectorEnv(env_id, cfg.num_envs, seed)
    on_policy = hasattr(cfg, "rollout_steps")
    if on_policy:
        updates = max(env_steps // (cfg.num_envs * cfg.rollout_steps), 1)
    else:
        if cfg.learning_starts >= env_steps:
            raise ConfigError(f"learning_starts = {cfg.learning_starts} is not allowed with steps = {env_steps}: "
                              "the random warm-up must end before the budget does")
        updates = max(math.ceil((env_steps - cfg.learning_starts) / cfg.num_envs), 1)
    algo = algo_cls(envs.single_observation_space, envs.single_action_space, cfg, total_updates=updates)
    if on_policy:
        source = RolloutCollector(envs, cfg.rollout_steps)
    else:
        source = ReplayCollector(envs, min(cfg.buffer_size, env_steps + cfg.num_envs), cfg.batch_size,
                                 cfg.learning_starts)
    return algo, source, updates


def train_online(algo_cls: type, cfg: Config, *, env_id: str, seed: int = 0, steps: int = 100_000,
                 run: RunDir | None = None, max_seconds: float | None = None, eval_episodes: int = 10,
                 evals: int = 10, checkpoints: int = 10, progress: bool | None = None,
                 callbacks: tuple[Callable, ...] = ()) -> dict[str, Any]:
    """Train for `steps` environment steps; evaluate and checkpoint `evals`/`checkpoints` times."""
    algo, source, updates = build_online(algo_cls, cfg, env_id, seed, steps)
    if run is not None:
        run.save_config(cfg, algo=algo.name, env_id=env_id, seed=seed, steps=steps)
    trainer_cfg = TrainerConfig(
        max_steps=updates, max_seconds=max_seconds,
        log_every=max(updates // 100, 1),
        eval_every=max(updates // evals, 1) if evals > 0 else 0,
        checkpoint_every=max(updates // checkpoints, 1) if checkpoints > 0 else 0,
        progress=progress,
    )
    evaluate = None
    if eval_episodes > 0:
        evaluate = lambda agent: evaluate_policy(agent, env_id, eval_episodes, seed=10_000 + 100 * seed)
    summary = Trainer(algo, source, trainer_cfg, run, evaluate, callbacks).fit()
    summary["env_steps"] = source.env_steps
    summary["algorithm"] = algo
    summary["collector"] = source  # the replay datasets of the offline catalog read its buffer
    return summary


def eval_curve(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(environment steps, evaluation return) pairs from a run's metric records."""
    return [(r["env_steps"], r["eval/return"]) for r in records if "eval/return" in r and "env_steps" in r]
