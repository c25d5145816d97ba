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
from policylab.offline.ssorl import LABEL_CLIP, InverseDynamics, idm_inputs, label_split, proxy_label, tanh_gaussian_nll


def test_split_draws_from_the_lowest_returns_only():
    returns = torch.arange(21.0)  # trajectory i has return i
    mask = label_split(returns, 0.1, 0.5, seed=0)
    # the lowest (0) is set aside; floor(0.1 x 20) = 2 drawn from the floor(0.5 x 20) = 10 lowest of the rest: 1..10
    chosen = torch.nonzero(mask).flatten()
    assert mask.sum() == 2 and (chosen >= 1).all() and (chosen <= 10).all()
    assert torch.equal(mask, label_split(returns, 0.1, 0.5, seed=0))
    assert label_split(returns, 0.9, 0.5, seed=1).sum() == 10  # min(p n', q n')


def test_split_sizes_floor_and_the_lowest_return_is_never_labelled():
    """The official `data.py`: `load_dataset` drops the lowest-return trajectory, `setup_action_label` floors
    both sizes (int(n * p), int(n * q)) on the n' = n - 1 left."""
    returns = torch.tensor([3.0, -7.0, 5.0, 1.0, 9.0, 2.0, 8.0, 0.0, 4.0, 6.0, 7.5, 2.5, 3.5, 5.5, 6.5, 8.5])
    order = returns.argsort()
    ever = torch.zeros(16, dtype=torch.bool)
    for seed in range(50):
        mask = label_split(returns, 0.1, 0.5, seed)
        assert mask.sum() == 1  # floor(0.1 x 15) = 1 (rounding 1.6 would give 2)
        ever |= mask
    # drawn from the floor(0.5 x 15) = 7 lowest after the lowest (-7 at index 1): ranks 1..7, never rank 0 or 8
    assert torch.equal(ever, torch.isin(torch.arange(16), order[1:8]))
    with pytest.raises(ConfigError, match="no trajectory would keep its actions"):
        label_split(torch.arange(5.0), 0.1, 0.5, seed=0)  # floor(0.1 x 4) = 0: the official code labels none


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
    x = idm_inputs(data, 1, torch.zeros(1), torch.ones(1), official_edges=False)
    # rows: [s_{t-1}, s_t, s_{t+1}]; the first transition of each episode has no past state
    assert x.tolist() == [[0, 1, 2], [1, 2, 3], [0, 5, 6]]


def official_window(states, si, k, mean, std):
    """The official `data.py` `get_transition` for k > 0, on one episode's T states s_0..s_{T-1}."""
    states = np.asarray(states, np.float64)[:, None]
    upper, lower = min(len(states), si + 2), max(0, si - k)
    ss = states[lower:upper]
    ss = np.concatenate([np.zeros((k + 2 - len(ss), 1)), ss])  # raw zeros first ...
    return ((ss - mean) / std).flatten().tolist()  # ... then standardized


@pytest.mark.parametrize("k", [1, 2])
def test_official_windows_pad_raw_zeros_and_end_on_the_last_stored_state(tmp_path, k):
    episodes = [([1, 2, 3, 4, 10], [0.1, 0.2, 0.3, 0.4]), ([5, 6, 11], [0.5, 0.6]), ([7, 12], [0.7])]
    data = write(tmp_path, [episode(s, a) for s, a in episodes])
    mean, std = 1.5, 2.0
    x = idm_inputs(data, k, torch.tensor([mean]), torch.tensor([std]))
    expected = [official_window(s[:-1], si, k, mean, std) for s, a in episodes for si in range(len(a))]
    torch.testing.assert_close(x, torch.tensor(expected, dtype=torch.float32))
    if k == 1:  # by hand: a pad reads (0 - 1.5) / 2 = -0.75; the last step of episode 1 is [pad, s_2, s_3]
        assert x[3].tolist() == pytest.approx([-0.75, (3 - 1.5) / 2, (4 - 1.5) / 2])
        assert x[0].tolist() == pytest.approx([-0.75, (1 - 1.5) / 2, (2 - 1.5) / 2])
        assert x[6].tolist() == pytest.approx([-0.75, -0.75, (7 - 1.5) / 2])  # a one-step episode


def test_official_windows_without_history_take_the_next_observation(tmp_path):
    """k = 0: the official `get_transition` takes observations[si] and next_observations[si], no padding."""
    data = write(tmp_path, [episode([1, 2, 3], [0.1, 0.2]), episode([5, 6], [0.3])])
    x = idm_inputs(data, 0, torch.zeros(1), torch.ones(1))
    assert x.tolist() == [[1, 2], [2, 3], [5, 6]]


def test_tanh_gaussian_nll_by_hand():
    model = InverseDynamics(1, 1, (4,), 1)
    for p in model.parameters():
        torch.nn.init.zeros_(p)  # mean 0 and a raw log-std 0 for any input: log-std -5 + 3.5 (tanh(0) + 1) = -1.5
    assert model.distribution(torch.zeros(1, 1))[1].item() == pytest.approx(-1.5)
    a = torch.tensor([[0.5]])
    u, sigma = math.atanh(0.5), math.exp(-1.5)
    expected = -(-0.5 * (u / sigma) ** 2 + 1.5 - 0.5 * math.log(2 * math.pi) - math.log(1 - 0.25))
    assert model.nll(torch.zeros(1, 1), a).item() == pytest.approx(expected, rel=1e-5)
    assert torch.isfinite(model.nll(torch.zeros(1, 1), torch.tensor([[1.0]])))  # labels at the bound are clipped


def test_labels_clip_at_one_minus_1e6_as_the_official_code():
    """`utils.py` `get_env_spec`: the action range is [low + 1e-6, high - 1e-6]; labels are clamped to it for the
    likelihood, and proxy labels clipped to it."""
    bound = float(torch.tensor(1 - 1e-6))  # the float32 label a label at 1 is clamped to
    assert LABEL_CLIP == pytest.approx(1 - 1e-6, abs=1e-12)
    mean, log_std = torch.tensor([[0.3]]), torch.tensor([[-0.5]])
    for a in (1.0, -1.0):
        u = math.copysign(math.atanh(bound), a)
        by_hand = (0.5 * ((u - 0.3) / math.exp(-0.5)) ** 2 - 0.5 + 0.5 * math.log(2 * math.pi)
                   + math.log(1 - bound ** 2))
        assert tanh_gaussian_nll(mean, log_std, torch.tensor([[a]])).item() == pytest.approx(by_hand, rel=1e-4)
    model = InverseDynamics(1, 1, (4,), 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.net.layers[-1].bias[..., 0] = 30.0  # tanh(30) is 1.0 in float32
    assert model.predict(torch.zeros(3, 1)).max().item() == pytest.approx(bound, abs=0)


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
    assert summary["ssorl"]["labelled_trajectories"] == 19 and math.isfinite(summary["eval"]["eval/return"])
    with pytest.raises(ConfigError, match="SSORLConfig.base"):
        SSORLConfig(base="ssorl")
