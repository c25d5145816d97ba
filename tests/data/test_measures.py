"""TQ and SACo on hand-made datasets, counted by hand."""

import math

import numpy as np
import pytest

from policylab.core.errors import ConfigError
from policylab.data import Episode, load_dataset, save_dataset
from policylab.data.collect import cut_episode, take_transitions
from policylab.data.measures import (
    bin_limits,
    dataset_measures,
    state_action_coverage,
    trajectory_quality,
    unique_state_actions,
)


def episode(states, actions, rewards, terminated=True):
    """A discrete episode over 1-D states: len(states) = len(actions) + 1."""
    T = len(actions)
    return Episode(np.asarray(states, dtype=np.float32)[:, None], np.asarray(actions, dtype=np.int64),
                   np.asarray(rewards, dtype=np.float32), np.array([False] * (T - 1) + [terminated]),
                   np.array([False] * (T - 1) + [not terminated]))


def write(tmp_path, name, episodes):
    return load_dataset(save_dataset(tmp_path / name, episodes, {"env_id": "CartPole-v1", "ref_min_score": 0.0,
                                                                 "ref_max_score": 1.0, "num_actions": 2}))


def test_trajectory_quality_normalizes_between_random_and_best():
    assert trajectory_quality(30.0, 20.0, 120.0) == pytest.approx(0.1)
    assert trajectory_quality(20.0, 20.0, 120.0) == 0.0
    assert trajectory_quality(120.0, 20.0, 120.0) == 1.0
    with pytest.raises(ConfigError, match="undefined"):
        trajectory_quality(1.0, 5.0, 5.0)


def test_unique_state_actions_bins_on_the_reference_grid(tmp_path):
    # states 0.0, 0.004, 1.0 on the grid [0, 1] with 100 points: digitize gives bins 1, 1, 100;
    # (0.0, a=0) and (0.004, a=0) fall together, (0.0, a=1) is new, (1.0, a=0) is new -> 3 pairs
    replay = write(tmp_path, "replay", [episode([0.0, 0.004, 0.0, 1.0, 0.5], [0, 0, 1, 0], [1, 1, 1, 1])])
    limits = bin_limits(replay)
    np.testing.assert_allclose(limits, [[0.0, 1.0], [0.0, 1.0]])
    assert unique_state_actions(replay, limits) == 3
    narrow = write(tmp_path, "narrow", [episode([0.0, 0.0, 0.0], [0, 0], [1, 1])])
    assert unique_state_actions(narrow, limits) == 1
    with pytest.raises(ConfigError, match="limits has shape"):
        unique_state_actions(narrow, limits[:1])


def test_dataset_measures_by_hand(tmp_path):
    replay = write(tmp_path, "replay", [episode([0.0, 0.25, 0.5, 0.75, 1.0], [0, 1, 0, 1], [1, 1, 1, 1])])
    subset = write(tmp_path, "subset", [episode([0.0, 0.25, 0.9], [0, 1], [1, 0]),
                                        episode([0.0, 0.1], [0], [4])])
    limits = bin_limits(replay)
    replay_unique = unique_state_actions(replay, limits)
    assert replay_unique == 4
    m = dataset_measures(subset, random_return=1.0, max_return=5.0, limits=limits, replay_unique=replay_unique)
    assert m["mean_return"] == pytest.approx(2.5)  # returns 1 and 4
    assert m["tq"] == pytest.approx((2.5 - 1.0) / (5.0 - 1.0))
    assert m["unique_state_actions"] == 2  # (0.0, 0) twice and (0.25, 1)
    assert m["saco"] == pytest.approx(2 / 4)
    assert m["lsaco"] == pytest.approx(math.log(2) / math.log(4))


def test_coverage_needs_a_reference_with_pairs():
    assert state_action_coverage(1, 1) == 1.0
    with pytest.raises(ConfigError, match="replay_unique"):
        state_action_coverage(1, 1, log=True)


def test_take_transitions_cuts_the_last_episode_into_a_truncation():
    eps = [episode([0, 1, 2, 3], [0, 1, 0], [1, 1, 1]), episode([0, 1, 2], [1, 1], [1, 1])]
    taken = take_transitions(eps, 4)
    assert [e.length for e in taken] == [3, 1]
    assert taken[0].terminations[-1] and not taken[0].truncations[-1]
    assert taken[1].truncations[-1] and not taken[1].terminations[-1]
    np.testing.assert_array_equal(taken[1].observations[:, 0], [0, 1])
    assert cut_episode(eps[0], 10) is eps[0]
    with pytest.raises(ValueError, match="only 5"):
        take_transitions(eps, 6)


def test_collected_episodes_start_from_their_reset_observation():
    """Regression: the first observation used to alias the row the collector kept overwriting."""
    from policylab.data.collect import collect_episodes, collect_transitions
    from policylab.envs.factory import make_env

    rng = np.random.default_rng(0)
    eps = collect_episodes("Pendulum-v1", lambda o: rng.uniform(-2, 2, (len(o), 1)).astype(np.float32), 3, seed=5)
    for i, ep in enumerate(eps):
        np.testing.assert_array_equal(ep.observations[0], make_env("Pendulum-v1").reset(seed=5 + i)[0])
    eps = collect_transitions("CartPole-v1", lambda o: rng.integers(0, 2, len(o)), 300, seed=7, num_envs=4)
    assert sum(e.length for e in eps) == 300
    assert all(np.abs(e.observations[0]).max() <= 0.05 for e in eps)  # CartPole resets in [-0.05, 0.05]^4
    assert all(np.abs(e.observations[1:]).max() > 0.05 for e in eps if e.length > 5)
