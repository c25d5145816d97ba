"""SS-ORL (policylab.offline.ssorl): the label split, the IDM's inputs and likelihood by hand, proxy
labels on a task with a known inverse model, and the pipeline through an offline algorithm."""

import math

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.data import Episode, load_dataset, save_dataset
from policylab.data.format import DatasetError
from policylab.offline import SSORLConfig, train_ssorl
from policylab.offline.ssorl import InverseDynamics, idm_inputs, label_split, proxy_label


def test_split_draws_from_the_lowest_returns_only():
    returns = torch.arange(20.0)  # trajectory i has return i
    mask = label_split(returns, 0.1, 0.5, seed=0)
    assert mask.sum() == 2 and (torch.nonzero(mask).flatten() < 10).all()
    assert torch.equal(mask, label_split(returns, 0.1, 0.5, seed=0))
    assert label_split(returns, 0.9, 0.5, seed=1).sum() == 10  # min(p n, q n)


def test_split_seeds_differ():
    returns = torch.arange(100.0)
    assert not torch.equal(label_split(returns, 0.1, 0.5, 0), label_split(returns, 0.1, 0.5, 1))


def episode(states, actions):
    T = len(actions)
    return Episode(np.asarray(states, np.float32)[:, None], np.asarray(actions, np.float32)[:, None],
                   np.zeros(T, np.float32), np.zeros(T, bool), np.array([False] * (T - 1) + [True]))


def write(tmp_path, episodes):
    return load_dataset(save_dataset(tmp_path / "d", episodes, {"env_id": "Pendulum-v1", "ref_min_score": 0.0,
                                                                  "ref_max_score": 1.0}))


def test_inputs_stack_past_states_and_pad_at_episode_starts(tmp_path):
    data = write(tmp_path, [episode([1, 2, 3], [0.1, 0.2]), episode([5, 6], [0.3])])
    x = idm_inputs(data, 1, torch.zeros(1), torch.ones(1))
    # rows: [s_{t-1}, s_t, s_{t+1}]; the first transition of each episode has no past state
    assert x.tolist() == [[0, 1, 2], [1, 2, 3], [0, 5, 6]]


def test_tanh_gaussian_nll_by_hand():
    model = InverseDynamics(1, 1, (4,), 1)
    for p in model.parameters():
        torch.nn.init.zeros_(p)  # mean 0, log-std 0 for any input
    a = torch.tensor([[0.5]])
    u = math.atanh(0.5)
    expected = -(-0.5 * u ** 2 - 0.5 * math.log(2 * math.pi) - math.log(1 - 0.25))
    assert model.nll(torch.zeros(1, 1), a).item() == pytest.approx(expected, rel=1e-5)
    assert torch.isfinite(model.nll(torch.zeros(1, 1), torch.tensor([[1.0]])))  # labels at the bound are clipped


def test_select_episodes_keeps_whole_episodes(tmp_path):
    data = write(tmp_path, [episode([1, 2, 3], [0.1, 0.2]), episode([5, 6], [0.3]), episode([7, 8, 9], [0.4, 0.5])])
    sub = data.select_episodes(torch.tensor([True, False, True]))
    assert sub.episode_starts.tolist() == [0, 2, 4]
    assert sub.actions[:, 0].tolist() == pytest.approx([0.1, 0.2, 0.4, 0.5])
    with pytest.raises(DatasetError, match="at least one"):
        data.select_episodes(torch.zeros(3, dtype=torch.bool))


@pytest.mark.xdist_group("pendulum-data")
def test_proxy_labels_beat_guessing_the_mean_action(datasets):
    """Pendulum's torque sets the next angular velocity: an IDM trained on 10% of the episodes (the
    random ones, from the lower half) should label the rest far better than the labelled actions' mean
    (margin fixed before the first run: half the mean-guess MSE)."""
    from policylab.offline.train import open_data

    data = open_data(datasets["pendulum-mix10"])
    cfg = SSORLConfig(idm_steps=600, idm_hidden=(64, 64))
    relabelled, info = proxy_label(data, cfg, seed=0)
    rows = info["labelled"][data.episode_ids]
    assert torch.equal(relabelled.actions[rows], data.actions[rows])  # labelled actions are kept
    unit_true = data.actions[~rows] / 2.0  # Pendulum's torque bound is 2
    guess_mse = float((unit_true - data.actions[rows].mean(0) / 2.0).square().mean())
    assert info["proxy_label_mse"] < 0.5 * guess_mse, (info, guess_mse)


@pytest.mark.xdist_group("pendulum-data")
def test_pipeline_runs_the_base_algorithm_and_refuses_bad_input(datasets):
    summary = train_ssorl(SSORLConfig(idm_steps=20, base="bc", base_hidden=(16,)), env_id=datasets["pendulum-mix10"],
                          seed=0, steps=5, evals=1, eval_episodes=1, progress=False)
    assert summary["ssorl"]["labelled_trajectories"] == 20 and math.isfinite(summary["eval"]["eval/return"])
    with pytest.raises(ConfigError, match="SSORLConfig.base"):
        SSORLConfig(base="ssorl")
