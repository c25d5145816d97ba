"""maze2d datasets: the flat PointMaze env, the waypoint controller, and a tiny build of the recipe."""

from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium_robotics")

from policylab.catalog import build_dataset  # noqa: E402
from policylab.catalog import maze as M  # noqa: E402
from policylab.data import load_dataset  # noqa: E402
from policylab.envs.factory import make_env  # noqa: E402


@pytest.mark.parametrize("name", ["umaze", "medium"])
def test_flat_env_has_fixed_goal_and_start_and_is_seed_deterministic(name):
    spec = M.MAZES[name]
    env = make_env(spec.env_id)
    assert env.observation_space.shape == (6,) and env.action_space.shape == (2,)
    goal, start = M.cell_center(spec.rows, spec.goal_cell), M.cell_center(spec.rows, spec.start_cell)
    for cell in M.free_cells(spec.rows):  # our geometry is PointMaze's
        assert np.allclose(env.inner.maze.cell_rowcol_to_xy(np.array(cell)), M.cell_center(spec.rows, cell))

    def rollout(seed):
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace, ends = [obs], []
        for _ in range(spec.horizon):
            obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 2))
            trace.append(obs)
            ends.append((terminated, truncated))
        return np.stack(trace), ends

    trace, ends = rollout(7)
    assert trace.dtype == np.float32 and trace.shape == (spec.horizon + 1, 6)
    assert np.all(trace[:, 4:] == goal.astype(np.float32))  # [x, y, vx, vy, goal_x, goal_y], goal fixed
    assert np.all(np.abs(trace[0, :2] - start) <= 0.1 + 1e-6)
    assert ends[:-1] == [(False, False)] * (spec.horizon - 1) and ends[-1] == (False, True)  # time limit only
    assert np.array_equal(rollout(7)[0], trace)
    assert not np.array_equal(rollout(8)[0][0], trace[0])


@pytest.mark.parametrize("name", ["umaze", "medium"])
def test_noise_free_controller_reaches_the_goal_from_the_start(name):
    spec = M.MAZES[name]
    agent = M.ControllerAgent(spec.rows)
    env = make_env(spec.env_id)
    successes, returns = 0, []
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        total, truncated = 0.0, False
        while not truncated:
            obs, reward, _, truncated, _ = env.step(agent.act(obs[None])[0])
            total += reward
        successes += total > 0
        returns.append(total)
    assert successes >= 8, returns
    assert np.mean(returns) > spec.horizon / 3  # it gets there early and stays


def test_tiny_build_is_loadable_with_stream_episodes_and_refs(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYLAB_DATA", str(tmp_path))
    monkeypatch.setitem(M.MAZES, "umaze", replace(M.MAZES["umaze"], transitions=1_000, ref_episodes=4))
    spec = M.MAZES["umaze"]
    data = load_dataset(build_dataset("maze2d-umaze"))
    meta = data.metadata
    assert len(data) == 1_000 and data.num_episodes == 4
    assert (data.episode_starts[1:] - data.episode_starts[:-1]).tolist() == [300, 300, 300, 100]
    ends = data.episode_starts[1:] - 1
    assert data.terminals.sum() == 0 and data.timeouts.sum() == 4 and torch.all(data.timeouts[ends] == 1)
    # one stream: each episode starts where the previous one ended
    starts = data.episode_starts[1:-1]
    assert torch.equal(data.observations[starts], data.next_observations[starts - 1])
    goal = torch.tensor(M.cell_center(spec.rows, spec.goal_cell), dtype=torch.float32)
    assert torch.all(data.observations[:, 4:] == goal) and torch.all(data.next_observations[:, 4:] == goal)
    reached = (data.next_observations[:, :2] - goal).norm(dim=1) <= M.GOAL_RADIUS
    assert torch.equal(data.rewards, reached.float())  # sparse reward w.r.t. the evaluation goal
    assert data.actions.abs().max() <= 1.0
    assert meta["env_id"] == "Maze2D-UMaze-v0" and meta["builder_version"] == M.BUILDER_VERSION
    assert meta["maze_map"] == list(spec.rows) and meta["goal_cell"] == [1, 1] and meta["horizon"] == 300
    assert meta["behaviour"]["kp"] == M.KP and meta["behaviour"]["targets_reached"] > 0
    assert meta["ref_max_score"] > meta["ref_min_score"] + 100  # the controller scores, random actions barely
    episodes, _ = M.collect_stream("umaze", 300, M.SEEDS["stream"])
    assert np.array_equal(episodes[0].observations[:-1], data.observations[:300].numpy())  # fixed seeds


def test_stitch_env_has_dense_reward_and_the_short_route(tmp_path):
    spec = M.MAZES["stitch"]
    env = make_env(spec.env_id)
    assert env.reward_type == "dense" and env.horizon == 200
    obs, _ = env.reset(seed=0)
    agent, goal, cells = M.ControllerAgent(spec.rows), M.cell_center(spec.rows, spec.goal_cell), []
    for _ in range(spec.horizon):
        obs, reward, *_ = env.step(agent.act(obs[None])[0])
        assert reward == pytest.approx(np.exp(-np.linalg.norm(obs[:2] - goal)), rel=1e-5)
        cell = M.cell_of(spec.rows, obs[:2])
        if not cells or cells[-1] != cell:
            cells.append(cell)
    assert cells[:4] == [(1, 2), (2, 2), (2, 3), (2, 4)]  # down, then right: the route no data trajectory takes


def test_tiny_stitch_build_has_the_four_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYLAB_DATA", str(tmp_path))
    monkeypatch.setitem(M.MAZES, "stitch", replace(M.MAZES["stitch"], transitions=1_600, ref_episodes=3))
    spec = M.MAZES["stitch"]
    data = load_dataset(build_dataset("stitch-maze"))
    meta = data.metadata
    assert data.num_episodes == 8 and len(data) == 1_600 and data.terminals.sum() == 0
    assert [g["trajectories"] for g in meta["behaviour"]["groups"]] == [2, 2, 2, 2]
    goal = torch.tensor(M.cell_center(spec.rows, spec.goal_cell), dtype=torch.float32)
    assert torch.allclose(data.rewards, torch.exp(-(data.next_observations[:, :2] - goal).norm(dim=1)), rtol=1e-5)
    ends = data.next_observations[data.episode_starts[1:] - 1, :2].numpy()
    mid = M.cell_center(spec.rows, (2, 2))
    assert np.all(np.linalg.norm(ends[:4] - mid, axis=1) < 0.5)  # the first groups stop at the midpoint
    assert np.all(np.linalg.norm(ends[4:6] - goal.numpy(), axis=1) < 0.5)  # the detour reaches the goal
    corner = M.cell_center(spec.rows, (1, 1))
    detour = data.observations[data.episode_starts[4]:data.episode_starts[5], :2].numpy()
    assert np.linalg.norm(detour - corner, axis=1).min() < 0.5  # ... by way of (1, 1)
    assert float(data.episode_returns().max()) < meta["ref_max_score"]  # the data never takes the short route
    # the MBRCSL claim check's diagnostic, on real data: replaying recorded actions from recorded states
    # reproduces the recorded returns (MuJoCo is deterministic), and half the data stays off column 1
    from policylab.experiments.mbrcsl import replay_kept

    replay = replay_kept(data)
    assert replay["kept_real_return"] == pytest.approx(float(data.episode_returns().mean()), rel=1e-3)
    assert replay["kept_short_route"] == 0.5
