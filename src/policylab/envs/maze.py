"""D4RL's maze2d environments on gymnasium-robotics' PointMaze, and the waypoint controller that drives them.

`Maze2D-UMaze-v0` / `Maze2D-Medium-v0` are PointMaze-v3 (a force-actuated ball, actions in
[-1, 1]^2) with a flat observation [x, y, vx, vy, goal_x, goal_y], a fixed start cell (position
noise U(-0.1, 0.1), velocity noise N(0, 0.1), as D4RL's reset), a fixed goal at the centre of a
fixed cell, no termination and D4RL's time limits (300 / 600 steps). The reward is D4RL's sparse
one, 1 when the ball is within 0.5 of the goal after the step (`reward_type="dense"`: exp(-distance)).
`Maze2D-Stitch-v0` is MBRCSL's stitching maze on the same env: its 4 x 6 map, a 200-step limit and
MBRCSL's dense reward exp(-distance) by default (no termination at the goal, so a policy that gets
there sooner collects more).
The controller (BFS over free cells to the target's cell, then PD toward the next cell's centre)
makes the `maze2d-*` and `stitch-maze` datasets (`catalog/maze.py`) and their expert reference.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections import deque
from dataclasses import dataclass
from functools import partial

import gymnasium
import numpy as np

from policylab.core.registry import ENVIRONMENTS

GOAL_RADIUS = 0.5
"""Sparse reward radius around the goal (D4RL maze2d)."""
KP, KD = 10.0, 1.0
"""PD gains of D4RL's waypoint controller."""

UMAZE = ("#####",
         "#...#",
         "###.#",
         "#...#",
         "#####")
MEDIUM = ("########",
          "#..##..#",
          "#..#...#",
          "##...###",
          "#..#...#",
          "#.#..#.#",
          "#...#..#",
          "########")

STITCH = ("######",
          "#..###",
          "#....#",
          "######")
"""MBRCSL's point-maze map (its `maze_default.json`): from the start (1, 2) the goal (2, 4) is three cells
away through (2, 2); its data go either to (2, 2) and stop, or around by (1, 1) and (2, 1)."""

Cell = tuple[int, int]


@dataclass(frozen=True)
class MazeSpec:
    pointmaze_id: str
    env_id: str
    rows: tuple[str, ...]
    """'#' wall, '.' free; the same maps as gymnasium-robotics' U_MAZE / MEDIUM_MAZE."""
    start_cell: Cell
    goal_cell: Cell
    horizon: int
    """Evaluation episode length and the datasets' episode length (D4RL maze2d's time limit)."""
    transitions: int
    ref_episodes: int = 100
    reward_type: str = "sparse"
    """The environment's default reward: D4RL's sparse one, or MBRCSL's dense exp(-distance)."""

    @property
    def maze_map(self) -> list[list[int]]:
        return [[1 if c == "#" else 0 for c in row] for row in self.rows]


MAZES = {
    "umaze": MazeSpec("PointMaze_UMaze-v3", "Maze2D-UMaze-v0", UMAZE, (3, 1), (1, 1), 300, 200_000),
    "medium": MazeSpec("PointMaze_Medium-v3", "Maze2D-Medium-v0", MEDIUM, (1, 1), (6, 6), 600, 400_000),
    "stitch": MazeSpec("PointMaze_UMaze-v3", "Maze2D-Stitch-v0", STITCH, (1, 2), (2, 4), 200, 200_000,
                       reward_type="dense"),
}


# -- geometry and the waypoint controller ------------------------------------------------------

def cell_center(rows: tuple[str, ...], cell: Cell) -> np.ndarray:
    """PointMaze's frame: the map is centred at the origin, x grows with the column, y with row^-1."""
    return np.array([cell[1] + 0.5 - len(rows[0]) / 2, len(rows) / 2 - cell[0] - 0.5])


def cell_of(rows: tuple[str, ...], xy: np.ndarray) -> Cell:
    return int(np.floor(len(rows) / 2 - xy[1])), int(np.floor(xy[0] + len(rows[0]) / 2))


def free_cells(rows: tuple[str, ...]) -> list[Cell]:
    return [(i, j) for i, row in enumerate(rows) for j, c in enumerate(row) if c != "#"]


class WaypointController:
    """D4RL's maze2d behaviour: BFS over free cells to the target's cell, PD toward the next cell.

    a = clip(Kp (w - pos) - Kd vel + noise, -1, 1), w the centre of the next cell on a shortest
    path, or the target itself once in its cell.
    """

    def __init__(self, rows: tuple[str, ...], kp: float = KP, kd: float = KD):
        self.rows, self.kp, self.kd = rows, kp, kd
        self.free = set(free_cells(rows))
        self._next_hop: dict[Cell, dict[Cell, np.ndarray]] = {}

    def next_hop(self, goal: Cell) -> dict[Cell, np.ndarray]:
        """For each free cell, the centre of its neighbour one step closer to `goal` (BFS from the goal)."""
        if goal not in self._next_hop:
            hops, queue = {}, deque([goal])
            seen = {goal}
            while queue:
                cell = queue.popleft()
                for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    nb = (cell[0] + di, cell[1] + dj)
                    if nb in self.free and nb not in seen:
                        seen.add(nb)
                        hops[nb] = cell_center(self.rows, cell)
                        queue.append(nb)
            self._next_hop[goal] = hops
        return self._next_hop[goal]

    def action(self, pos: np.ndarray, vel: np.ndarray, target: np.ndarray, noise: np.ndarray | float = 0.0
               ) -> np.ndarray:
        hops = self.next_hop(cell_of(self.rows, target))
        waypoint = hops.get(cell_of(self.rows, pos), target)  # the target's own cell is not in `hops`
        return np.clip(self.kp * (waypoint - pos) - self.kd * vel + noise, -1.0, 1.0).astype(np.float32)


class ControllerAgent:
    """The controller as an evaluation actor: heads to the goal written in each observation."""

    def __init__(self, rows: tuple[str, ...], noise: float = 0.0, seed: int = 0):
        self.controller = WaypointController(rows)
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        noise = np.zeros((len(obs), 2)) if deterministic else self.rng.normal(0.0, self.noise, (len(obs), 2))
        return np.stack([self.controller.action(o[:2], o[2:4], o[4:6], n) for o, n in zip(obs, noise)])


# -- the flat environment ------------------------------------------------------------------------

def _pointmaze(spec: MazeSpec):
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its import prints a notice about Adroit envs
            import gymnasium_robotics
    except ImportError as err:
        raise ImportError("the maze2d environments need gymnasium-robotics: pip install 'policylab[maze]'") from err
    gymnasium.register_envs(gymnasium_robotics)
    env = gymnasium.make(spec.pointmaze_id, maze_map=spec.maze_map, reward_type="sparse", continuing_task=True,
                         reset_target=False).unwrapped
    with contextlib.suppress(OSError):  # the maze's MJCF, written to the temp folder and never removed by PointMaze
        os.remove(env.tmp_xml_file_path)
    env.position_noise_range = 0.0  # start and goal exactly at cell centres; Maze2D adds its own start noise
    return env


class Maze2D(gymnasium.Env):
    """PointMaze with observation [x, y, vx, vy, goal_x, goal_y], fixed start cell and goal; see the module doc."""

    metadata = {"render_modes": []}

    def __init__(self, maze: str = "umaze", reward_type: str | None = None, horizon: int | None = -1):
        """reward_type: sparse, dense, or None for the maze's own; horizon: steps before truncation, -1 the
        maze's time limit, None never (the data stream)."""
        self.maze_spec = MAZES[maze]
        reward_type = reward_type or self.maze_spec.reward_type
        if reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type must be 'sparse' or 'dense', got {reward_type!r}")
        self.reward_type = reward_type
        self.horizon = self.maze_spec.horizon if horizon == -1 else horizon
        self.inner = _pointmaze(self.maze_spec)
        self.goal = cell_center(self.maze_spec.rows, self.maze_spec.goal_cell)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """options: {"start_cell": (row, col)} replaces the fixed start cell (the data stream uses it)."""
        super().reset(seed=seed)
        start = (options or {}).get("start_cell", self.maze_spec.start_cell)
        self.inner.reset(options={"goal_cell": np.array(self.maze_spec.goal_cell), "reset_cell": np.array(start)})
        qpos = cell_center(self.maze_spec.rows, start) + self.np_random.uniform(-0.1, 0.1, 2)
        qvel = self.np_random.normal(0.0, 0.1, 2)
        self.inner.point_env.set_state(qpos, qvel)
        self.t = 0
        return self._obs(np.concatenate([qpos, qvel])), {}

    def _obs(self, point_obs: np.ndarray) -> np.ndarray:
        return np.concatenate([point_obs, self.goal]).astype(np.float32)

    def step(self, action):
        obs, *_ = self.inner.step(np.asarray(action, dtype=np.float64))
        distance = float(np.linalg.norm(obs["achieved_goal"] - self.goal))
        reward = float(distance <= GOAL_RADIUS) if self.reward_type == "sparse" else float(np.exp(-distance))
        self.t += 1
        truncated = self.horizon is not None and self.t >= self.horizon
        return self._obs(obs["observation"]), reward, False, truncated, {"success": distance <= GOAL_RADIUS}

    def close(self) -> None:
        self.inner.close()


for _maze, _spec in MAZES.items():
    ENVIRONMENTS.add(_spec.env_id, partial(Maze2D, _maze))
