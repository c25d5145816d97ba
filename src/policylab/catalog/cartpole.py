"""The five CartPole datasets of "A Dataset Perspective on Offline RL" (Schweighofer et al. 2022, §4).

One online double-DQN run (the authors' settings: gamma 0.95, 3 x 256, Adam 1e-4, batch 32) makes
all five, each of `transitions` transitions:
- replay: every transition the DQN saw while learning (the buffer keeps all of them; the authors
  learn from a 50k buffer and record every transition separately);
- expert: the greedy policy;  noisy: the same policy, epsilon-greedy with epsilon 0.2. The paper
  uses the final policy; policylab uses the policy of the best evaluation during training (ties go
  to the later one), because a DQN's final policy on CartPole can sit anywhere in its oscillation
  (our first run's evaluations moved between 115 and 500 over its last 40k steps);
- random: uniform actions;  mixed: 80% random and 20% expert transitions. The authors mix
  transitions; policylab stores episodes, so it mixes whole episodes (the random dataset's first
  80% of transitions and the expert's first 20%, the last episode of each cut as a truncation).
Reference returns follow the paper: ref_min_score = g(D_random), the random dataset's mean return,
and ref_max_score = g_max, the DQN's best evaluation return during training. Every sidecar also
carries TQ, SACo and lSACo (`data/measures.py`) against the replay dataset's bins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from policylab.catalog.behaviour import PolicySnapshots, best_snapshot, load_snapshot, replay_episodes
from policylab.catalog.datasets import DatasetRecipe
from policylab.core.atomic import atomic_write_json, exclusive
from policylab.core.registry import DATASETS
from policylab.core.run import RunDir
from policylab.data import DatasetError, load_dataset, save_dataset
from policylab.data.collect import collect_transitions, take_transitions
from policylab.data.format import dataset_paths, read_metadata
from policylab.data.measures import bin_limits, dataset_measures, unique_state_actions
from policylab.rl import DQN, DQNConfig, train_online

CARTPOLE = "CartPole-v1"
KINDS = ("random", "mixed", "replay", "noisy", "expert")
NOISY_EPSILON = 0.2
MIXED_EXPERT_FRACTION = 0.2
BUILDER_VERSION = 2
"""2: first observations of episodes fixed (version 1 held a later state there)."""
SEEDS = {"dqn": 0, "expert": 10_000, "noisy": 20_000, "random": 30_000}


def dqn_config(transitions: int) -> DQNConfig:
    return DQNConfig(gamma=0.95, buffer_size=transitions)


def epsilon_greedy(agent: DQN, epsilon: float, seed: int):
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        greedy = agent.act(obs, deterministic=True)
        explore = rng.random(len(obs)) < epsilon
        return np.where(explore, rng.integers(0, agent.n_actions, len(obs)), greedy)

    return act


def suite_paths(folder: Path, prefix: str) -> dict[str, Path]:
    return {kind: folder / f"{prefix}-{kind}.parquet" for kind in KINDS}


def _suite_valid(paths: dict[str, Path]) -> bool:
    try:
        metas = [load_dataset(p).metadata for p in paths.values()]
        return all("measures" in m and m.get("builder_version") == BUILDER_VERSION for m in metas)
    except DatasetError:
        return False


def build_cartpole_suite(folder: Path, prefix: str = "cartpole", transitions: int = 100_000,
                         progress: bool | None = None) -> dict[str, Path]:
    """All five datasets `<prefix>-<kind>` in `folder`, from one DQN run of `transitions` steps (kept)."""
    paths = suite_paths(folder, prefix)
    with exclusive(folder / f"{prefix}-suite"):
        if _suite_valid(paths):
            return paths
        behaviour = folder / "behaviour"
        run = RunDir(behaviour / "runs", f"{prefix}-dqn", "main", SEEDS["dqn"])
        cfg = dqn_config(transitions)
        snapshots = PolicySnapshots(behaviour / f"{prefix}-dqn", CARTPOLE)
        summary = train_online(DQN, cfg, env_id=CARTPOLE, seed=SEEDS["dqn"], steps=transitions, run=run, evals=25,
                               progress=progress, callbacks=(snapshots,))
        agent = load_snapshot(snapshots.folder, best_snapshot(snapshots.entries))
        online = [e["return"] for e in sorted(snapshots.entries, key=lambda e: e["step"])]
        n_actions = agent.n_actions
        uniform_rng = np.random.default_rng(SEEDS["random"])
        random = collect_transitions(CARTPOLE, lambda o: uniform_rng.integers(0, n_actions, len(o)), transitions,
                                     seed=SEEDS["random"])
        expert = collect_transitions(CARTPOLE, lambda o: agent.act(o, True), transitions, seed=SEEDS["expert"])
        n_expert = round(transitions * MIXED_EXPERT_FRACTION)
        episodes = {
            "random": random, "expert": expert, "replay": replay_episodes(summary["collector"].buffer),
            "noisy": collect_transitions(CARTPOLE, epsilon_greedy(agent, NOISY_EPSILON, SEEDS["noisy"]),
                                         transitions, seed=SEEDS["noisy"]),
            "mixed": take_transitions(random, transitions - n_expert) + take_transitions(expert, n_expert),
        }
        refs = {"ref_min_score": float(np.mean([e.ret for e in random])), "ref_max_score": float(max(online)),
                "ref_source": "ref_min: mean episode return of the random dataset; ref_max: best evaluation "
                              "return (10 greedy episodes) of the online DQN during training (the paper's g_max)"}
        behaviours = {"random": "uniform actions", "expert": "best-evaluation DQN policy, greedy",
                      "noisy": f"best-evaluation DQN policy, epsilon-greedy epsilon = {NOISY_EPSILON}",
                      "replay": "every transition of the online DQN run",
                      "mixed": f"{1 - MIXED_EXPERT_FRACTION:.0%} random + {MIXED_EXPERT_FRACTION:.0%} expert "
                               "transitions (whole episodes)"}
        for kind in KINDS:
            meta = {"env_id": CARTPOLE, "name": paths[kind].stem, "gymnasium_version": gymnasium.__version__,
                    "builder_version": BUILDER_VERSION, "kind": kind, "num_actions": n_actions,
                    "behaviour": behaviours[kind], "dqn": {"steps": transitions, "seed": SEEDS["dqn"],
                                                           "gamma": cfg.gamma, "online_eval_returns": online},
                    "seeds": SEEDS, **refs}
            save_dataset(paths[kind], episodes[kind], meta)
        _add_measures(paths, refs)
    return paths


def _add_measures(paths: dict[str, Path], refs: dict[str, Any]) -> None:
    """Write TQ / SACo / lSACo into every sidecar, binned on the replay dataset's ranges."""
    replay = load_dataset(paths["replay"])
    limits = bin_limits(replay)
    replay_unique = unique_state_actions(replay, limits)
    reference = {"dataset": paths["replay"].stem, "limits": limits.tolist(), "replay_unique": replay_unique,
                 "random_return": refs["ref_min_score"], "max_return": refs["ref_max_score"]}
    for path in paths.values():
        measures = dataset_measures(load_dataset(path), random_return=refs["ref_min_score"],
                                    max_return=refs["ref_max_score"], limits=limits, replay_unique=replay_unique)
        meta = read_metadata(path)
        meta.update(measures=measures, measure_reference=reference)
        atomic_write_json(dataset_paths(path)[1], meta)


def build_named(kind: str):
    def build(path: Path, progress: bool | None) -> None:
        build_cartpole_suite(path.parent, path.stem[: -len(kind) - 1], progress=progress)

    return build


for _kind in KINDS:
    DATASETS.add(f"cartpole-{_kind}", DatasetRecipe(
        f"cartpole-{_kind}", CARTPOLE, f"100k transitions, {_kind} (one DQN run makes all five cartpole "
                                       "datasets, a few minutes)", build_named(_kind), BUILDER_VERSION))
