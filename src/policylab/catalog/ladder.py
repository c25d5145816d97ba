"""D4RL-style quality ladders from one TD3 run: random, medium, medium-replay, expert, medium-expert.

One online TD3 run per environment, evaluated and snapshotted along the way (`PolicySnapshots`):
- expert: the best evaluation's policy; medium: the first evaluation at least a third of the way
  from the random return to the best (D4RL's medium is "about a third of expert");
- random: uniform actions;  medium-replay: every transition the run saw until the medium snapshot
  (the random warm-up included), so its size is whatever the run needed, not `transitions`;
- expert and medium datasets act with Gaussian noise of 0.1 of the action half-range (policylab's
  pendulum recipe), medium-expert is half medium, half expert.
Reference returns (100 episodes each): ref_min = uniform random actions, ref_max = the deterministic
expert. The locomotion ladders take tens of minutes to build, once; they are never built in CI.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import gymnasium

from policylab.catalog.behaviour import PolicySnapshots, best_snapshot, load_snapshot, medium_snapshot, replay_episodes
from policylab.catalog.datasets import DatasetRecipe, noisy_act, random_act
from policylab.core.atomic import exclusive
from policylab.core.registry import DATASETS
from policylab.core.run import RunDir
from policylab.data import DatasetError, load_dataset, save_dataset
from policylab.data.collect import collect_transitions, take_transitions
from policylab.envs.evaluate import RandomAgent, evaluate_policy
from policylab.envs.factory import make_env
from policylab.envs.spaces import ActionScaler
from policylab.rl import TD3, TD3Config, train_online

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
NOISE = 0.1
BUILDER_VERSION = 2
"""2: first observations of episodes fixed (version 1 held a later state there)."""
SEEDS = {"td3": 0, "random": 1_000, "medium": 2_000, "expert": 3_000, "refs": 4_000}


@dataclass(frozen=True)
class Ladder:
    prefix: str
    env_id: str
    td3: TD3Config
    train_steps: int
    evals: int
    eval_episodes: int = 5
    transitions: int = 100_000


LADDERS = {
    # InvertedDoublePendulum: a 128-wide TD3 reaches the ~9.36k maximum in about 20k steps (notes §1.3)
    "idp": Ladder("idp", "InvertedDoublePendulum-v5", TD3Config(hidden=(128, 128), learning_starts=5_000), 30_000, 30),
    "hopper": Ladder("hopper", "Hopper-v5", TD3Config(learning_starts=10_000), 200_000, 40),
    "halfcheetah": Ladder("halfcheetah", "HalfCheetah-v5", TD3Config(learning_starts=10_000), 200_000, 40),
}


def ladder_paths(folder: Path, prefix: str) -> dict[str, Path]:
    return {kind: folder / f"{prefix}-{kind}.parquet" for kind in KINDS}


def build_ladder(ladder: Ladder, folder: Path, progress: bool | None = None) -> dict[str, Path]:
    paths = ladder_paths(folder, ladder.prefix)
    with exclusive(folder / f"{ladder.prefix}-ladder"):
        try:
            if all(load_dataset(p).metadata.get("builder_version") == BUILDER_VERSION for p in paths.values()):
                return paths
        except DatasetError:
            pass
        env_id, n = ladder.env_id, ladder.transitions
        space = make_env(env_id).action_space
        behaviour = folder / "behaviour"
        run = RunDir(behaviour / "runs", f"{ladder.prefix}-td3", "main", SEEDS["td3"])
        snapshots = PolicySnapshots(behaviour / f"{ladder.prefix}-td3", env_id)
        cfg = replace(ladder.td3, buffer_size=ladder.train_steps)  # keep every transition for medium-replay
        summary = train_online(TD3, cfg, env_id=env_id, seed=SEEDS["td3"], steps=ladder.train_steps, run=run,
                               evals=ladder.evals, eval_episodes=ladder.eval_episodes, progress=progress,
                               callbacks=(snapshots,))
        random_return = evaluate_policy(RandomAgent(space, SEEDS["refs"]), env_id, 100, seed=SEEDS["refs"])["return"]
        best, medium = best_snapshot(snapshots.entries), medium_snapshot(snapshots.entries, random_return)
        expert_agent, medium_agent = (load_snapshot(snapshots.folder, e) for e in (best, medium))
        expert_return = evaluate_policy(expert_agent, env_id, 100, seed=SEEDS["refs"] + 1000)["return"]
        replay = replay_episodes(summary["collector"].buffer, ActionScaler(space))
        expert = collect_transitions(env_id, noisy_act(expert_agent, env_id, NOISE, SEEDS["expert"]), n,
                                     SEEDS["expert"])
        medium_eps = collect_transitions(env_id, noisy_act(medium_agent, env_id, NOISE, SEEDS["medium"]), n,
                                         SEEDS["medium"])
        episodes = {
            "random": collect_transitions(env_id, random_act(env_id, SEEDS["random"]), n, SEEDS["random"]),
            "medium": medium_eps, "expert": expert,
            "medium-replay": take_transitions(replay, min(medium["env_steps"], sum(e.length for e in replay))),
            "medium-expert": take_transitions(medium_eps, n // 2) + take_transitions(expert, n - n // 2),
        }
        behaviours = {
            "random": "uniform actions",
            "medium": f"TD3 snapshot at update {medium['step']} (eval return {medium['return']:.1f}), noise {NOISE}",
            "expert": f"TD3 snapshot at update {best['step']} (eval return {best['return']:.1f}), noise {NOISE}",
            "medium-replay": f"every transition of the TD3 run up to env step {medium['env_steps']}",
            "medium-expert": "half medium, half expert transitions (whole episodes)"}
        for kind in KINDS:
            meta = {"env_id": env_id, "name": paths[kind].stem, "gymnasium_version": gymnasium.__version__,
                    "builder_version": BUILDER_VERSION, "kind": kind, "behaviour": behaviours[kind],
                    "td3": {"steps": ladder.train_steps, "hidden": list(cfg.hidden), "seed": SEEDS["td3"],
                            "snapshots": snapshots.entries},
                    "seeds": SEEDS, "ref_min_score": float(random_return), "ref_max_score": float(expert_return),
                    "ref_source": "mean return over 100 episodes: uniform random actions (min), the deterministic "
                                  "expert snapshot (max)"}
            save_dataset(paths[kind], episodes[kind], meta)
    return paths


def _recipe(ladder: Ladder, kind: str) -> DatasetRecipe:
    def build(path: Path, progress: bool | None) -> None:
        build_ladder(ladder, path.parent, progress)

    size = "the run's transitions until medium" if kind == "medium-replay" else f"{ladder.transitions // 1000}k"
    return DatasetRecipe(f"{ladder.prefix}-{kind}", ladder.env_id,
                         f"{kind}, {size} ({ladder.env_id}; one {ladder.train_steps // 1000}k-step TD3 run makes "
                         "the whole ladder)", build, BUILDER_VERSION)


for _ladder in LADDERS.values():
    for _kind in KINDS:
        DATASETS.add(f"{_ladder.prefix}-{_kind}", _recipe(_ladder, _kind))
