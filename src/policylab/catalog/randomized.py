"""Randomized-dynamics datasets with privileged knowledge (HIB's setting, offline).

`pendulum-dr-teacher`: Pendulum-v1 whose mass m and length l are redrawn uniformly per episode from
m in [0.5, 2] x l in [0.5, 1.5]; behaviour = a TD3 teacher trained online on that env with e = (m, l)
appended to its observation (so it knows the dynamics), acting with Gaussian noise. The dataset stores the
plain observations and e once per episode in its metadata (`policylab.data.privileged`), never in the
observations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium

from policylab.catalog.datasets import DatasetRecipe, _behaviour_dir, cached_references, noisy_act
from policylab.core.registry import DATASETS
from policylab.core.run import RunDir
from policylab.data import save_dataset
from policylab.data.collect import collect_episodes
from policylab.data.privileged import privileged_metadata, split_privileged
from policylab.envs.robust import ParamBox, privileged_randomized_env_id, randomized_env_id
from policylab.rl import TD3, TD3Config, load_policy, save_policy, train_online

PENDULUM = "Pendulum-v1"
PENDULUM_BOX = ParamBox(("m", "l"), (0.5, 0.5), (2.0, 1.5))
TEACHER = TD3Config(hidden=(64, 64), learning_starts=1000)
TEACHER_STEPS = 40_000
TEACHER_NOISE = 0.2
"""Gaussian noise on the teacher's actions, as a fraction of the action half-range (exploration in the data)."""
EPISODES = 200
VERSION = 1


def pendulum_dr_teacher(progress: bool | None = None) -> TD3:
    """TD3 64 x 64 on the randomized Pendulum with e = (m, l) in its observation, 40k steps, seed 0; kept."""
    env_id = privileged_randomized_env_id(PENDULUM, PENDULUM_BOX)
    path = _behaviour_dir() / "pendulum-dr-td3-e.pt"
    if path.exists():
        return load_policy(path, "td3")
    run = RunDir(_behaviour_dir() / "runs", "pendulum-dr-td3-e", "main", 0)
    summary = train_online(TD3, TEACHER, env_id=env_id, seed=0, steps=TEACHER_STEPS, run=run, evals=4,
                           progress=progress)
    save_policy(summary["algorithm"], env_id, path)
    return summary["algorithm"]


def pendulum_dr_references(progress: bool | None = None) -> dict[str, Any]:
    """ref_min = uniform random actions, ref_max = the deterministic teacher (which sees e), 100 episodes each of
    the randomized env; computed once."""
    return cached_references(_behaviour_dir() / "pendulum-dr-refs.json", randomized_env_id(PENDULUM, PENDULUM_BOX),
                             privileged_randomized_env_id(PENDULUM, PENDULUM_BOX),
                             lambda: pendulum_dr_teacher(progress), (1500, 2500),
                             "mean return over 100 randomized episodes: uniform random actions (min), the "
                             "deterministic TD3 teacher that sees (m, l) (max)")


def build_pendulum_dr_teacher(path: Path, progress: bool | None) -> None:
    teacher = pendulum_dr_teacher(progress)
    privileged = privileged_randomized_env_id(PENDULUM, PENDULUM_BOX)
    raw = collect_episodes(privileged, noisy_act(teacher, privileged, TEACHER_NOISE, 5), EPISODES, seed=500)
    episodes, values = split_privileged(raw, len(PENDULUM_BOX.names))
    meta = {"gymnasium_version": gymnasium.__version__, "builder_version": VERSION, "name": path.stem,
            "kind": "randomized dynamics, privileged teacher",
            "behaviour": {"teacher": f"TD3 64x64 on {privileged} (sees m, l), {TEACHER_STEPS} steps, seed 0, action "
                                     f"noise {TEACHER_NOISE} of the half-range"},
            "seeds": {"actions": 5, "envs": 500}, **pendulum_dr_references(progress),
            **privileged_metadata(PENDULUM, PENDULUM_BOX, values)}
    save_dataset(path, episodes, meta)


DATASETS.add("pendulum-dr-teacher", DatasetRecipe(
    "pendulum-dr-teacher", randomized_env_id(PENDULUM, PENDULUM_BOX),
    f"{EPISODES} episodes of Pendulum with m, l redrawn per episode, a noisy TD3 teacher that sees (m, l); "
    "e = (m, l) per episode in the metadata", build_pendulum_dr_teacher, VERSION))
