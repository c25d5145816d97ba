"""maze2d-umaze and maze2d-medium: D4RL's maze2d data, rebuilt on the `envs/maze.py` environments.

The datasets follow D4RL's generation script: one stream of transitions from the waypoint
controller (with Gaussian action noise) heading to random target cells, a new one each time the
current one is reached; the stream is cut into episodes of the time limit, each ending in a
truncation, the next one starting where it ended. As in D4RL (whose rewards were relabelled to the
evaluation goal), the observation's goal and the reward refer to the fixed evaluation goal, never
to the controller's current target: the data hold the same observations the evaluation sees, and
a policy must stitch pieces of trajectories to reach the goal.
Reference returns (100 evaluation episodes each): ref_min = uniform random actions, ref_max = the
noise-free controller heading to the evaluation goal.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from policylab.catalog.datasets import DatasetRecipe
from policylab.core.registry import DATASETS
from policylab.data import Episode, save_dataset
from policylab.envs.evaluate import RandomAgent, evaluate_policy
from policylab.envs.maze import (
    GOAL_RADIUS,
    KD,
    KP,
    MAZES,
    Cell,
    ControllerAgent,
    Maze2D,
    WaypointController,
    cell_center,
    cell_of,
    free_cells,
)

BUILDER_VERSION = 1
TARGET_REACHED = 0.5
"""The behaviour controller draws its next random target once within this distance of the current one."""
NOISE = 0.5
"""Gaussian action-noise std of D4RL's waypoint controller."""
SEEDS = {"stream": 0, "refs_random": 1_000, "refs_controller": 2_000}


# -- the datasets ----------------------------------------------------------------------------------

def collect_stream(maze: str, transitions: int, seed: int) -> tuple[list[Episode], int]:
    """D4RL-style data: one stream toward random target cells, cut into truncated episodes of the
    time limit (the last one shorter when `transitions` is not a multiple); (episodes, targets reached)."""
    spec = MAZES[maze]
    env = Maze2D(maze, horizon=None)
    controller = WaypointController(spec.rows)
    rng = np.random.default_rng(seed)
    cells = free_cells(spec.rows)

    def new_target(pos: np.ndarray) -> np.ndarray:
        here = cell_of(spec.rows, pos)
        choices = [c for c in cells if c != here]
        return cell_center(spec.rows, choices[rng.integers(len(choices))])

    obs = np.empty((transitions + 1, 6), dtype=np.float32)
    actions = np.empty((transitions, 2), dtype=np.float32)
    rewards = np.empty(transitions, dtype=np.float32)
    obs[0], _ = env.reset(seed=seed, options={"start_cell": cells[rng.integers(len(cells))]})
    target, reached = new_target(obs[0, :2]), 0
    for t in range(transitions):
        pos, vel = obs[t, :2].astype(np.float64), obs[t, 2:4].astype(np.float64)
        if np.linalg.norm(pos - target) <= TARGET_REACHED:
            target, reached = new_target(pos), reached + 1
        actions[t] = controller.action(pos, vel, target, rng.normal(0.0, NOISE, 2))
        obs[t + 1], rewards[t], *_ = env.step(actions[t])
    env.close()
    episodes = []
    for lo in range(0, transitions, spec.horizon):
        hi = min(lo + spec.horizon, transitions)
        truncations = np.zeros(hi - lo, dtype=bool)
        truncations[-1] = True
        episodes.append(Episode(obs[lo:hi + 1], actions[lo:hi], rewards[lo:hi], np.zeros(hi - lo, dtype=bool),
                                truncations))
    return episodes, reached


def maze_references(maze: str) -> dict[str, Any]:
    """Mean return over `ref_episodes` evaluation episodes: uniform random actions, the noise-free controller."""
    spec = MAZES[maze]
    space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    rand = evaluate_policy(RandomAgent(space, SEEDS["refs_random"]), spec.env_id, spec.ref_episodes,
                           seed=SEEDS["refs_random"])
    best = evaluate_policy(ControllerAgent(spec.rows), spec.env_id, spec.ref_episodes, seed=SEEDS["refs_controller"])
    return {"ref_min_score": rand["return"], "ref_max_score": best["return"],
            "ref_source": f"mean return over {spec.ref_episodes} episodes: uniform random actions (min), the "
                          "noise-free waypoint controller heading to the evaluation goal (max)"}


def build_maze(maze: str, path: Path, progress: bool | None = None) -> None:
    spec = MAZES[maze]
    began = time.perf_counter()
    episodes, reached = collect_stream(maze, spec.transitions, SEEDS["stream"])
    refs = maze_references(maze)
    behaviour = {"controller": "BFS over free cells + PD toward the next cell's centre", "kp": KP, "kd": KD,
                 "noise_std": NOISE, "targets": "uniform over free cells other than the current one, redrawn "
                 f"within {TARGET_REACHED} of the current target", "targets_reached": reached}
    meta = {"env_id": spec.env_id, "name": path.stem, "pointmaze_id": spec.pointmaze_id,
            "gymnasium_version": gymnasium.__version__, "builder_version": BUILDER_VERSION,
            "maze_map": list(spec.rows), "start_cell": list(spec.start_cell), "goal_cell": list(spec.goal_cell),
            "goal": cell_center(spec.rows, spec.goal_cell).tolist(), "horizon": spec.horizon,
            "reward": f"sparse: 1 within {GOAL_RADIUS} of the fixed goal after the step", "behaviour": behaviour,
            "seeds": SEEDS, **refs, "build_seconds": round(time.perf_counter() - began, 1)}
    save_dataset(path, episodes, meta)


def _recipe(maze: str) -> DatasetRecipe:
    spec = MAZES[maze]
    return DatasetRecipe(f"maze2d-{maze}", spec.env_id,
                         f"{spec.transitions // 1000}k transitions of a noisy waypoint controller toward random "
                         f"cells, cut into {spec.horizon}-step episodes; fixed evaluation goal (stitching)",
                         partial(build_maze, maze), BUILDER_VERSION)


for _maze in ("umaze", "medium"):
    DATASETS.add(f"maze2d-{_maze}", _recipe(_maze))


# -- MBRCSL's stitching maze -----------------------------------------------------------------------

STITCH_VERSION = 1
STITCH_GROUPS = (
    # (waypoint cells in order, trajectories, random actions once the last one is reached)
    (((2, 2),), 250, False),
    (((2, 2),), 250, False),
    (((1, 1), (2, 1), (2, 4)), 250, False),
    (((1, 1), (2, 1), (2, 4)), 250, True),
)
"""MBRCSL's `maze_default.json`: half the data go from the start to (2, 2) and stay (short of the goal),
half go around by (1, 1) and (2, 1) to the goal, one of those groups walking at random once there.
The shortest route needs the first groups' start and the second groups' end."""
STITCH_NOISE = 0.1
"""Gaussian action noise of the data's controller (MBRCSL's jitters its waypoints instead)."""
WAYPOINT_REACHED, WAYPOINT_SPEED = 0.5, 0.5
"""An intermediate waypoint counts as reached within this distance at speeds below this per axis
(MBRCSL's sampler: pos_threshold 0.5, vel_threshold 0.5)."""


def stitch_episode(env: Maze2D, controller: WaypointController, waypoints: tuple[Cell, ...], random_end: bool,
                   rng: np.random.Generator, seed: int) -> Episode:
    rows = env.maze_spec.rows
    obs = np.empty((env.horizon + 1, 6), dtype=np.float32)
    actions = np.empty((env.horizon, 2), dtype=np.float32)
    rewards = np.empty(env.horizon, dtype=np.float32)
    obs[0], _ = env.reset(seed=seed)
    todo, walking = list(waypoints), False
    for t in range(env.horizon):
        pos, vel = obs[t, :2].astype(np.float64), obs[t, 2:4].astype(np.float64)
        target = cell_center(rows, todo[0])
        if len(todo) > 1 and np.linalg.norm(pos - target) <= WAYPOINT_REACHED and np.all(np.abs(vel) <= WAYPOINT_SPEED):
            todo.pop(0)
            target = cell_center(rows, todo[0])
        walking = walking or (random_end and len(todo) == 1 and np.linalg.norm(pos - target) <= WAYPOINT_REACHED)
        if walking:  # from the first arrival on
            actions[t] = rng.uniform(-1.0, 1.0, 2)
        else:
            actions[t] = controller.action(pos, vel, target, rng.normal(0.0, STITCH_NOISE, 2))
        obs[t + 1], rewards[t], *_ = env.step(actions[t])
    truncations = np.zeros(env.horizon, dtype=bool)
    truncations[-1] = True
    return Episode(obs, actions, rewards, np.zeros(env.horizon, dtype=bool), truncations)


def build_stitch_maze(path: Path, progress: bool | None = None) -> None:
    spec = MAZES["stitch"]
    began = time.perf_counter()
    env = Maze2D("stitch")
    controller = WaypointController(spec.rows)
    rng = np.random.default_rng(SEEDS["stream"])
    episodes, groups = [], []
    scale = spec.transitions / (spec.horizon * sum(n for _, n, _ in STITCH_GROUPS))
    for g, (waypoints, count, random_end) in enumerate(STITCH_GROUPS):
        for _ in range(max(1, round(count * scale))):
            episodes.append(stitch_episode(env, controller, waypoints, random_end, rng, seed=len(episodes)))
            groups.append(g)
    env.close()
    returns, member = np.array([e.ret for e in episodes]), np.array(groups)
    group_summary = [{"waypoints": [list(c) for c in w], "trajectories": int((member == g).sum()),
                      "random_after_goal": r, "mean_return": float(returns[member == g].mean())}
                     for g, (w, _, r) in enumerate(STITCH_GROUPS)]
    refs = maze_references("stitch")
    meta = {"env_id": spec.env_id, "name": path.stem, "pointmaze_id": spec.pointmaze_id,
            "gymnasium_version": gymnasium.__version__, "builder_version": STITCH_VERSION,
            "maze_map": list(spec.rows), "start_cell": list(spec.start_cell), "goal_cell": list(spec.goal_cell),
            "goal": cell_center(spec.rows, spec.goal_cell).tolist(), "horizon": spec.horizon,
            "reward": "dense: exp(-distance to the fixed goal) after the step",
            "behaviour": {"controller": "BFS over free cells + PD toward the next cell's centre", "kp": KP, "kd": KD,
                          "noise_std": STITCH_NOISE, "groups": group_summary},
            "seeds": SEEDS, **refs, "build_seconds": round(time.perf_counter() - began, 1)}
    save_dataset(path, episodes, meta)


DATASETS.add("stitch-maze", DatasetRecipe(
    "stitch-maze", MAZES["stitch"].env_id,
    "MBRCSL's stitching maze: 1,000 x 200 steps of a waypoint controller, half to the midpoint, half around to "
    "the goal; dense reward; the best route joins the two", build_stitch_maze, STITCH_VERSION))
