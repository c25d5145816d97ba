import numpy as np
import pytest

from policylab.core.errors import ConfigError, UnknownNameError
from policylab.envs.factory import make_env
from policylab.envs.robust import (
    DomainRandomization,
    ParamBox,
    evaluate_grid,
    make_param_env,
    param_env_id,
    policy_worst_case,
    randomized_env_id,
    worst_case_search,
)

BOX = ParamBox(("m", "l"), (0.5, 0.5), (2.0, 1.5))


def pendulum_step_by_hand(th, thdot, u, m, length, g=10.0, dt=0.05):
    newthdot = np.clip(thdot + (3 * g / (2 * length) * np.sin(th) + 3.0 / (m * length**2) * u) * dt, -8, 8)
    newth = th + newthdot * dt
    return np.array([np.cos(newth), np.sin(newth), newthdot], dtype=np.float32)


@pytest.mark.parametrize("m, length", [(1.0, 1.0), (2.0, 0.5), (0.5, 1.5)])
def test_parameters_change_pendulum_dynamics(m, length):
    env = make_param_env("Pendulum-v1", {"m": m, "l": length})
    env.reset(seed=0)
    assert (env.unwrapped.m, env.unwrapped.l) == (m, length)
    env.unwrapped.state = np.array([0.7, -0.3])
    obs, *_ = env.step(np.array([1.5], dtype=np.float32))
    np.testing.assert_allclose(obs, pendulum_step_by_hand(0.7, -0.3, 1.5, m, length), rtol=1e-5, atol=1e-6)


def test_heavier_longer_pendulum_steps_differently():
    nominal, heavy = make_param_env("Pendulum-v1"), make_param_env("Pendulum-v1", {"m": 2.0, "l": 1.5})
    for env in (nominal, heavy):
        env.reset(seed=0)
        env.unwrapped.state = np.array([0.7, -0.3])
    a = np.array([1.5], dtype=np.float32)
    assert not np.allclose(nominal.step(a)[0], heavy.step(a)[0])


def test_bad_parameters_name_field_value_and_allowed():
    with pytest.raises(ConfigError, match=r"'mass'.*its parameters are m, l"):
        make_param_env("Pendulum-v1", {"mass": 2.0})
    with pytest.raises(ConfigError, match=r"m = -1.0 .*\(0.0, inf\)"):
        make_param_env("Pendulum-v1", {"m": -1.0})
    with pytest.raises(UnknownNameError, match="Pendulum-v1"):
        make_param_env("CartPole-v1", {"m": 1.0})
    with pytest.raises(ConfigError, match="low <= high"):
        ParamBox(("m",), (2.0,), (1.0,))
    with pytest.raises(ConfigError, match="one value per name"):
        ParamBox(("m", "l"), (0.5,), (2.0, 1.5))
    with pytest.raises(ConfigError, match="l = 0.0"):
        ParamBox(("m", "l"), (0.5, 0.0), (2.0, 1.5)).check_for("Pendulum-v1")


def test_grid_has_corners_and_every_combination():
    points = BOX.grid(3)
    assert points.shape == (9, 2)
    assert {tuple(p) for p in points} == {(m, ln) for m in (0.5, 1.25, 2.0) for ln in (0.5, 1.0, 1.5)}
    np.testing.assert_allclose(BOX.grid(1), [[1.25, 1.0]])


def test_domain_randomization_resamples_every_episode_and_replays_with_a_seed():
    def draws(seed):
        env = DomainRandomization(make_param_env("Pendulum-v1"), "Pendulum-v1", BOX)
        first = env.reset(seed=seed)[1]["params"]
        seen = [first] + [env.reset()[1]["params"] for _ in range(4)]
        assert (env.unwrapped.m, env.unwrapped.l) == (seen[-1]["m"], seen[-1]["l"])  # really written in
        return [(p["m"], p["l"]) for p in seen]

    a, b, c = draws(3), draws(3), draws(4)
    assert a == b and a != c
    assert len(set(a)) == 5
    assert all(0.5 <= m <= 2.0 and 0.5 <= ln <= 1.5 for m, ln in a)


def test_env_ids_build_the_parameterized_and_randomized_envs():
    env = make_env(param_env_id("Pendulum-v1", {"m": 1.75}))
    assert (env.unwrapped.m, env.unwrapped.l) == (1.75, 1.0)
    assert param_env_id("Pendulum-v1", {"m": 1.75}) == param_env_id("Pendulum-v1", {"m": 1.75})
    randomized = make_env(randomized_env_id("Pendulum-v1", BOX))
    masses = {randomized.reset(seed=0)[1]["params"]["m"]} | {randomized.reset()[1]["params"]["m"] for _ in range(3)}
    assert len(masses) == 4


class RecordingAgent:
    """Constant torque; records every observation batch it is shown."""

    def __init__(self, torque=0.0):
        self.torque, self.seen = torque, []

    def act(self, obs, deterministic=True):
        self.seen.append(obs.copy())
        return np.full((len(obs), 1), self.torque, dtype=np.float32)


def test_grid_evaluation_uses_common_random_numbers():
    agent = RecordingAgent(0.5)
    points = np.array([[1.0, 1.0], [2.0, 1.5], [1.0, 1.0]])
    grid = evaluate_grid(agent, "Pendulum-v1", ("m", "l"), points, episodes=2, seed=5)
    start = agent.seen[0].reshape(3, 2, 3)  # cells x episodes x obs
    np.testing.assert_array_equal(start[0], start[1])  # episode k starts alike on every cell
    assert not np.array_equal(start[0, 0], start[0, 1])
    np.testing.assert_array_equal(grid.returns[0], grid.returns[2])  # same model, same numbers
    assert not np.allclose(grid.returns[0], grid.returns[1])
    assert grid.returns.shape == (3, 2) and grid.env_steps == 3 * 2 * 200
    assert grid.worst == grid.cell_means.min()
    assert grid.worst_params == dict(zip(("m", "l"), points[grid.cell_means.argmin()], strict=True))


def test_worst_case_search_finds_the_known_minimum():
    def bowl(points):
        return (points[:, 0] - 1.25) ** 2 + (points[:, 1] - 0.75) ** 2 - 3.0

    found = worst_case_search(bowl, BOX, "grid", 5)
    assert found.params == {"m": 1.25, "l": 0.75} and found.value == pytest.approx(-3.0)
    assert len(found.points) == 25
    near = worst_case_search(bowl, BOX, "random", 400, seed=1)
    assert abs(near.params["m"] - 1.25) < 0.1 and abs(near.params["l"] - 0.75) < 0.1
    with pytest.raises(ConfigError, match="search = 'cmaes'"):
        worst_case_search(bowl, BOX, "cmaes", 5)


def test_policy_worst_case_is_the_lowest_grid_cell():
    found, grid = policy_worst_case(RecordingAgent(0.0), "Pendulum-v1", BOX, "grid", 2, episodes=1, seed=0)
    assert found.value == grid.worst and found.params == grid.worst_params
    assert len(grid.points) == 4
