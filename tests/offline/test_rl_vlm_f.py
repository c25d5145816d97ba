"""Offline RL-VLM-F (policylab.offline.rl_vlm_f): progress functions and the relabel convention by hand,
reward standardization, a reward fit that must rank states by progress, and the pipeline through IQL."""

import math

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.core.registry import ALGORITHMS
from policylab.core.stats import spearman
from policylab.data import Episode, load_dataset, save_dataset
from policylab.data.preferences import ScriptedTeacher, label_pairs, sample_pairs
from policylab.offline import RLVLMFConfig, train_rl_vlm_f
from policylab.offline.rl_vlm_f import (
    fit_reward,
    maze_progress,
    pendulum_progress,
    predicted_rewards,
    preference_relabel,
    relabel,
    standardize,
)


class FirstFeature(torch.nn.Module):
    """A stand-in reward ensemble: member k returns (k + 1) * obs[:, 0] + k."""

    def forward(self, obs):
        return torch.stack([(k + 1) * obs[:, 0] + k for k in range(3)])


def pendulum_data(tmp_path, episodes):
    eps = []
    for states in episodes:
        T = len(states) - 1
        obs = np.array([[math.cos(s), math.sin(s), 0.0] for s in states], np.float32)
        eps.append(Episode(obs, np.zeros((T, 1), np.float32), np.arange(T, dtype=np.float32), np.zeros(T, bool),
                           np.array([False] * (T - 1) + [True])))
    return load_dataset(save_dataset(tmp_path / "d", eps, {"env_id": "Pendulum-v1", "ref_min_score": -1000.0,
                                                             "ref_max_score": 0.0}))


def test_progress_functions_by_hand():
    obs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]])  # theta = 0, and theta = pi / 2 with theta_dot 2
    assert pendulum_progress(obs).tolist() == pytest.approx([0.0, -(math.pi ** 2 / 4 + 0.4)])
    assert maze_progress(torch.tensor([[0.0, 0.0, 9.0, 9.0, 3.0, 4.0]])).tolist() == pytest.approx([-5.0])


def test_standardize_and_a_constant_row():
    out = standardize(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert out[0].tolist() == pytest.approx([-1.0, 0.0, 1.0]) and out[1].tolist() == [0.0, 0.0, 0.0]


def test_members_are_put_on_one_scale_before_the_mean():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    # members x, 2x + 1, 3x + 2 standardize to the same vector; the mean is standardized again
    r = predicted_rewards(FirstFeature(), x)
    assert r.tolist() == pytest.approx(standardize(x[:, 0]).tolist())
    assert r.mean().item() == pytest.approx(0.0, abs=1e-6) and r.std().item() == pytest.approx(1.0)


def test_relabel_scores_the_next_observation(tmp_path):
    data = pendulum_data(tmp_path, [[0.1, 0.2, 0.3], [0.5, 0.6]])
    # cos(theta) of o_{t+1}: theta 0.2, 0.3 then 0.6; of o_t: 0.1, 0.2 then 0.5
    nxt = relabel(data, FirstFeature(), "next").rewards
    cur = relabel(data, FirstFeature(), "current").rewards
    assert nxt.tolist() == pytest.approx(standardize(torch.cos(torch.tensor([0.2, 0.3, 0.6]))).tolist(), abs=1e-5)
    assert cur.tolist() == pytest.approx(standardize(torch.cos(torch.tensor([0.1, 0.2, 0.5]))).tolist(), abs=1e-5)
    assert torch.equal(relabel(data, FirstFeature()).rewards, nxt)  # "next" is the default, as the code
    with pytest.raises(ConfigError, match="relabel_with = 'previous'"):
        relabel(data, FirstFeature(), "previous")


def test_reward_fit_ranks_states_by_progress():
    """Margin fixed before the first run: Spearman(r_hat, progress) > 0.9 on held-out states."""
    gen = torch.Generator().manual_seed(0)
    states, held_out = torch.randn(400, 3, generator=gen), torch.randn(400, 3, generator=gen)

    def progress(obs):
        return -(obs[..., 0].square() + 0.5 * obs[..., 1])  # nonlinear, the third feature is irrelevant

    first, second = sample_pairs(len(states), 600, seed=0)
    pairs = label_pairs(ScriptedTeacher(progress, "g", epsilon=0.1, seed=0), states, first, second, "g")
    model, info = fit_reward(states, pairs, RLVLMFConfig(reward_steps=300, ensemble=2), seed=0)
    assert spearman(predicted_rewards(model, held_out).tolist(), progress(held_out).tolist()) > 0.9
    assert info["reward_train_accuracy"] > 0.8  # about 0.9 at best with 10% flipped labels


def test_pipeline_relabels_with_a_user_oracle_and_is_seeded(tmp_path):
    data = pendulum_data(tmp_path, [np.linspace(3.0, 0.0, 30), np.linspace(-3.0, 0.5, 30)])
    oracle = ScriptedTeacher(pendulum_progress, "stand up", seed=0)
    cfg = RLVLMFConfig(num_pairs=200, reward_steps=100, goal="stand up")
    out, info = preference_relabel(data, cfg, seed=0, oracle=oracle)
    assert info["pairs_answered"] == 200 and info["label_error_rate"] == 0.0
    assert info["reward_spearman"] > 0.8
    assert out.rewards.mean().item() == pytest.approx(0.0, abs=1e-5) and torch.equal(out.actions, data.actions)
    again, _ = preference_relabel(data, cfg, seed=0, oracle=ScriptedTeacher(pendulum_progress, "stand up", seed=0))
    assert torch.equal(out.rewards, again.rewards)


def test_configuration_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="base = 'rl_vlm_f'"):
        RLVLMFConfig(base="rl_vlm_f")
    with pytest.raises(ConfigError, match="teacher_proximity"):
        RLVLMFConfig(teacher_proximity=1.5)
    with pytest.raises(ConfigError, match="relabel_with"):
        RLVLMFConfig(relabel_with="previous")
    data = pendulum_data(tmp_path, [[0.1, 0.2, 0.3]])
    data.metadata["env_id"] = "CartPole-v1"
    with pytest.raises(ConfigError, match="env_id = 'CartPole-v1' has no scripted teacher"):
        preference_relabel(data, RLVLMFConfig(num_pairs=4), seed=0)


def test_all_tied_labels_are_a_clear_error(tmp_path):
    data = pendulum_data(tmp_path, [[0.3, 0.3, 0.3, 0.3]])
    with pytest.raises(ConfigError, match="'no preference'"):
        preference_relabel(data, RLVLMFConfig(num_pairs=10), seed=0)


def test_registered_pipeline_trains_iql(tmp_path):
    data = pendulum_data(tmp_path, [np.linspace(3.0, 0.0, 20), np.linspace(-3.0, 0.5, 20)])
    spec = ALGORITHMS.get("rl_vlm_f")
    assert spec.train is train_rl_vlm_f
    summary = spec.train(RLVLMFConfig(num_pairs=50, reward_steps=20, base_hidden=(8,)), env_id=data, seed=0,
                         steps=10, evals=1, eval_episodes=1, checkpoints=0, progress=False)
    assert summary["algorithm"].name == "iql" and summary["rl_vlm_f"]["pairs_answered"] == 50
    assert np.isfinite(summary["eval"]["eval/normalized_score"])
