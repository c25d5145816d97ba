"""Named offline datasets: recipes that train behaviour policies with `rl/` and write with `data/`.

Everything is rebuilt from fixed seeds on this machine (no downloads) and cached under
`datasets_dir()` (`~/.cache/policylab/datasets`, or `$POLICYLAB_DATA`); a dataset that is
present and valid is not rebuilt. Behaviour policies and their training checkpoints are kept
in `datasets_dir()/behaviour/`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from policylab.core.atomic import atomic_write_json, exclusive
from policylab.core.errors import PolicylabError
from policylab.core.registry import DATASETS
from policylab.core.run import RunDir
from policylab.data import DatasetError, load_dataset, save_dataset
from policylab.data.collect import collect_episodes
from policylab.envs.factory import make_env
from policylab.rl import SAC, SACConfig, load_policy, save_policy, train_online

BUILDER_VERSION = 2
"""2: first observations of episodes fixed (version 1 builds after f33d642 held a later state there)."""


@dataclass(frozen=True)
class DatasetRecipe:
    name: str
    env_id: str
    description: str
    build: Callable[[Path, bool | None], None]
    """build(path, progress) writes the dataset at `path` (save_dataset)."""
    version: int = 1
    """The builder version its sidecar must carry; a cached file of another version is rebuilt."""


def datasets_dir() -> Path:
    return Path(os.environ.get("POLICYLAB_DATA", Path.home() / ".cache" / "policylab" / "datasets"))


def dataset_path(name: str) -> Path:
    DATASETS.get(name)
    return datasets_dir() / f"{name}.parquet"


def build_dataset(name: str, force: bool = False, progress: bool | None = None) -> Path:
    """The dataset's path, built first when missing or invalid (one builder at a time per dataset)."""
    recipe: DatasetRecipe = DATASETS.get(name)
    path = dataset_path(name)
    with exclusive(path):
        before = _recorded_sha256(path)
        if not force and path.exists():
            try:
                if load_dataset(path).metadata.get("builder_version") == recipe.version:
                    return path
                print(f"policylab: dataset {name} in the cache was built by another builder version; "
                      "rebuilding it from its recipe", file=sys.stderr)
            except DatasetError as err:
                print(f"policylab: dataset {name} in the cache is unusable ({err}); rebuilding it from its recipe",
                      file=sys.stderr)
        recipe.build(path, progress)
        after = _recorded_sha256(path)
        if before is not None and after is not None:
            same = "the same bytes as" if before == after else "other bytes than"
            print(f"policylab: rebuilt dataset {name}: sha256 {after[:12]}, {same} the copy it replaced "
                  f"({before[:12]})", file=sys.stderr)
    return path


def _recorded_sha256(path: Path) -> str | None:
    """The content hash a dataset's sidecar records, or None where there is no readable sidecar."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    digest = meta.get("sha256") if isinstance(meta, dict) else None
    return digest if isinstance(digest, str) else None


def open_dataset(name_or_path: str, progress: bool | None = None):
    """A dataset by catalog name (built when missing) or by file path."""
    if name_or_path in DATASETS:
        return load_dataset(build_dataset(name_or_path, progress=progress))
    if Path(name_or_path).with_suffix(".parquet").exists() or Path(name_or_path).exists():
        return load_dataset(name_or_path)
    raise PolicylabError(f"dataset {name_or_path!r} is neither a known dataset ({', '.join(DATASETS.names())}) "
                         "nor a dataset file")


# -- Pendulum: random and SAC-expert episodes, and their mixtures ----------------------------------

PENDULUM = "Pendulum-v1"
PENDULUM_SAC = SACConfig(lr=1e-3, learning_starts=1000, hidden=(64, 64))
PENDULUM_SAC_STEPS = 15_000
EXPERT_NOISE = 0.1
"""Gaussian exploration noise on the expert's actions, as a fraction of the action half-range."""


def _behaviour_dir() -> Path:
    return datasets_dir() / "behaviour"


def pendulum_expert(progress: bool | None = None) -> SAC:
    """SAC on Pendulum-v1, 15k steps, seed 0 (the quickstart's settings); trained once and kept."""
    path = _behaviour_dir() / "pendulum-sac.pt"
    if path.exists():
        return load_policy(path, "sac")
    run = RunDir(_behaviour_dir() / "runs", "pendulum-sac", "main", 0)
    summary = train_online(SAC, PENDULUM_SAC, env_id=PENDULUM, seed=0, steps=PENDULUM_SAC_STEPS, run=run,
                           evals=5, progress=progress)
    save_policy(summary["algorithm"], PENDULUM, path)
    return summary["algorithm"]


def random_act(env_id: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    space = make_env(env_id).action_space
    rng = np.random.default_rng(seed)
    if hasattr(space, "n"):
        return lambda obs: rng.integers(0, space.n, len(obs))
    return lambda obs: rng.uniform(space.low, space.high, (len(obs), *space.shape)).astype(np.float32)


def noisy_act(agent: Any, env_id: str, noise: float, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    space = make_env(env_id).action_space
    rng = np.random.default_rng(seed)
    scale = noise * (space.high - space.low) / 2

    def act(obs: np.ndarray) -> np.ndarray:
        action = agent.act(obs, deterministic=True)
        return np.clip(action + rng.normal(0.0, 1.0, action.shape) * scale, space.low, space.high).astype(np.float32)

    return act


def cached_references(path: Path, random_env: str, expert_env: str, expert: Callable[[], Any], seeds: tuple[int, int],
                      source: str) -> dict[str, Any]:
    """ref_min / ref_max: the mean return of 100 episodes of uniform random actions in `random_env` and of the
    deterministic `expert()` in `expert_env` (reset seeds from seeds[0] and seeds[1]); computed once, kept at `path`."""
    if path.exists():
        return json.loads(path.read_text())
    agent = expert()
    rand = collect_episodes(random_env, random_act(random_env, seeds[0]), 100, seed=seeds[0])
    best = collect_episodes(expert_env, lambda o: agent.act(o, True), 100, seed=seeds[1])
    refs = {"ref_min_score": float(np.mean([e.ret for e in rand])),
            "ref_max_score": float(np.mean([e.ret for e in best])), "ref_source": source}
    atomic_write_json(path, refs)
    return refs


def pendulum_references(progress: bool | None = None) -> dict[str, Any]:
    """ref_min = uniform random policy, ref_max = deterministic expert, 100 episodes each; computed once."""
    return cached_references(_behaviour_dir() / "pendulum-refs.json", PENDULUM, PENDULUM,
                             lambda: pendulum_expert(progress), (1000, 2000),
                             "mean return over 100 episodes: uniform random actions (min), the deterministic SAC "
                             "expert (max)")


def _pendulum_meta(progress: bool | None, **extra: Any) -> dict[str, Any]:
    return {"env_id": PENDULUM, "gymnasium_version": gymnasium.__version__, "builder_version": BUILDER_VERSION,
            "behaviour": {"expert": f"SAC 64x64, {PENDULUM_SAC_STEPS} steps, seed 0, action noise "
                                    f"{EXPERT_NOISE} of the half-range", "random": "uniform actions"},
            **pendulum_references(progress), **extra}


def build_pendulum(expert_percent: float | None, random_only: bool = False) -> Callable[[Path, bool | None], None]:
    """random: 100 random episodes; expert: 100 noisy-expert episodes; mixX: 200 episodes, X% expert."""

    def build(path: Path, progress: bool | None) -> None:
        expert = None if random_only else pendulum_expert(progress)
        if random_only:
            episodes = collect_episodes(PENDULUM, random_act(PENDULUM, 1), 100, seed=1)
            extra = {"kind": "random", "seeds": {"actions": 1, "envs": 1}}
        elif expert_percent is None:
            episodes = collect_episodes(PENDULUM, noisy_act(expert, PENDULUM, EXPERT_NOISE, 2), 100, seed=100)
            extra = {"kind": "expert", "seeds": {"actions": 2, "envs": 100}}
        else:
            n_expert = max(1, round(200 * expert_percent / 100))
            episodes = (collect_episodes(PENDULUM, noisy_act(expert, PENDULUM, EXPERT_NOISE, 3), n_expert, seed=300)
                        + collect_episodes(PENDULUM, random_act(PENDULUM, 4), 200 - n_expert, seed=400))
            extra = {"kind": "mixture", "expert_episodes": n_expert, "random_episodes": 200 - n_expert,
                     "expert_percent": expert_percent, "seeds": {"expert": 3, "random": 4, "envs": [300, 400]}}
        save_dataset(path, episodes, _pendulum_meta(progress, name=path.stem, **extra))

    return build


DATASETS.add("pendulum-random", DatasetRecipe("pendulum-random", PENDULUM, "100 uniform-random episodes (20k steps)",
                                              build_pendulum(None, random_only=True), BUILDER_VERSION))
DATASETS.add("pendulum-expert", DatasetRecipe("pendulum-expert", PENDULUM, "100 noisy SAC-expert episodes (20k steps)",
                                              build_pendulum(None), BUILDER_VERSION))
for _pct in (1, 5, 10, 50):
    DATASETS.add(f"pendulum-mix{_pct}", DatasetRecipe(
        f"pendulum-mix{_pct}", PENDULUM, f"200 episodes, {_pct}% noisy SAC-expert, the rest uniform random",
        build_pendulum(float(_pct)), BUILDER_VERSION))
