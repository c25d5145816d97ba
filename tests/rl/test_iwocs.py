import numpy as np
import pytest
import torch

import policylab.rl.iwocs as iwocs
from policylab.core.errors import ConfigError
from policylab.core.registry import ALGORITHMS
from policylab.envs.factory import make_env
from policylab.envs.robust import GridEvaluation, WorstCase
from policylab.envs.spaces import ActionScaler
from policylab.rl.iwocs import IWOCSConfig, RobustTD3Policy, robust_choice, should_stop, train_iwocs


def test_robust_choice_is_argmax_of_min_over_models():
    # q[model j, candidate k, state b]
    q = torch.tensor([[[4.0, 5.0], [-1.0, 1.0], [-0.5, 0.0]],
                      [[-3.0, 0.0], [-1.0, 2.0], [-0.6, 3.0]]])
    assert robust_choice(q).tolist() == [2, 1]  # mins: [-3, -1, -0.6] and [0, 1, 0]
    assert q.mean(0).argmax(0).tolist() == [0, 0] != robust_choice(q).tolist()  # not the mean's choice


class HandMadeAgent:
    """Constant proposal; twin critics -w (a - target)^2 + b and the same minus `gap`."""

    def __init__(self, proposal, target, w, b, gap=0.0):
        self.proposal, self.target, self.w, self.b, self.gap = proposal, target, w, b, gap
        self.critic = None
        self.scaler = ActionScaler(make_env("Pendulum-v1").action_space)

    def actor(self, obs):
        return torch.full((obs.shape[0], 1), self.proposal)

    def q_values(self, critic, obs, actions):
        q = -self.w * (actions[:, 0] - self.target) ** 2 + self.b
        return torch.stack([q, q - self.gap])


def test_robust_policy_picks_the_proposal_with_the_best_worst_critic():
    easy = HandMadeAgent(0.5, 0.5, 1.0, 0.0)  # likes +0.5, mild values
    hard = HandMadeAgent(-0.5, -0.5, 0.1, -1.0)  # likes -0.5, lower values
    obs = np.zeros((3, 3), dtype=np.float32)
    # Q at +0.5: min(0, -1.1) = -1.1; at -0.5: min(-1, -1) = -1 -> the hard model's proposal (-0.5 = -1 N m)
    np.testing.assert_allclose(RobustTD3Policy([easy, hard]).act(obs), -1.0)
    np.testing.assert_allclose(RobustTD3Policy([easy]).act(obs), 1.0)  # one model: its own actor
    # TD3's twin minimum counts: a second easy twin 2 lower makes +0.5 score min(-2, -1.1) > min(-3, -1)
    np.testing.assert_allclose(RobustTD3Policy([HandMadeAgent(0.5, 0.5, 1.0, 0.0, gap=2.0), hard]).act(obs), 1.0)


def test_stopping_rule():
    assert should_stop(-500.0, -510.0, 25.0)  # the search found nothing worse
    assert should_stop(-530.0, -510.0, 25.0)  # worse, but within epsilon
    assert not should_stop(-540.0, -510.0, 25.0)
    assert not should_stop(-510.1, -510.0, 0.0)


def test_config_validation_names_the_problem():
    with pytest.raises(ConfigError, match="one value per name"):
        IWOCSConfig(param_names=("m", "l"), param_low=(0.5,), param_high=(2.0, 1.5))
    with pytest.raises(ConfigError, match="search"):
        IWOCSConfig(search="cmaes")
    with pytest.raises(ConfigError, match="iterations"):
        IWOCSConfig(iterations=0)
    assert IWOCSConfig(hidden=(8,)).td3().hidden == (8,)
    assert "iwocs" in ALGORITHMS


def fake_loop(monkeypatch, worst_values, known_values):
    """Replace TD3 training and the search by stubs; return the models each training was given."""
    trained = []

    def train_online(algo, cfg, *, env_id, steps, **kwargs):
        trained.append(env_id)
        return {"algorithm": HandMadeAgent(0.0, 0.0, 1.0, 0.0), "env_steps": steps, "steps": steps}

    worst = iter(worst_values)
    known = iter(known_values)

    def policy_worst_case(policy, env_id, box, method, size, episodes, seed):
        value = next(worst)
        grid = GridEvaluation(box.names, np.zeros((4, 2)), np.zeros((4, episodes)), 800)
        return WorstCase({"m": 2.0, "l": 1.5 - 0.1 * len(trained)}, value, grid.points, grid.cell_means), grid

    def evaluate_grid(policy, env_id, names, points, episodes, seed):
        return GridEvaluation(tuple(names), points, np.full((len(points), episodes), next(known)), 100)

    monkeypatch.setattr(iwocs, "train_online", train_online)
    monkeypatch.setattr(iwocs, "policy_worst_case", policy_worst_case)
    monkeypatch.setattr(iwocs, "evaluate_grid", evaluate_grid)
    monkeypatch.setattr(iwocs, "evaluate_policy", lambda *a, **k: {"return": 0.0})
    return trained


def test_loop_stops_when_the_search_finds_nothing_worse(monkeypatch):
    trained = fake_loop(monkeypatch, worst_values=[-900.0, -600.0], known_values=[-300.0, -590.0])
    out = train_iwocs(IWOCSConfig(iterations=5, epsilon=25.0), env_id="Pendulum-v1", steps=1000)
    assert len(trained) == 2 and "m=1.0" in trained[0] and "m=2.0" in trained[1]
    assert out["models"] == [{"m": 1.0, "l": 1.0}, {"m": 2.0, "l": 1.4}]
    assert out["iterations"][-1]["stopped"] and out["train_env_steps"] == 2000
    assert out["env_steps"] == 2000 + 2 * (800 + 100)


def test_loop_runs_i_max_trainings_without_a_last_search(monkeypatch):
    trained = fake_loop(monkeypatch, worst_values=[-900.0, -800.0], known_values=[-300.0, -400.0])
    out = train_iwocs(IWOCSConfig(iterations=3, epsilon=25.0), env_id="Pendulum-v1", steps=1000)
    assert len(trained) == 3 and len(out["models"]) == 3
    assert "worst_return" not in out["iterations"][-1]
    assert out["search_env_steps"] == 2 * (800 + 100)


def test_train_iwocs_runs_end_to_end(tmp_path):
    from policylab.core.run import RunDir

    cfg = IWOCSConfig(hidden=(16, 16), learning_starts=100, batch_size=32, iterations=2, epsilon=0.0,
                      search_size=2, search_episodes=1)
    out = train_iwocs(cfg, env_id="Pendulum-v1", seed=0, steps=200, run=RunDir(tmp_path, "iw"), eval_episodes=1)
    assert out["train_env_steps"] == 200 * len(out["iterations"])
    assert out["search_env_steps"] == (4 + 1) * 200  # 2 x 2 candidates and the nominal model, 1 episode each
    assert out["policy"].act(np.zeros((2, 3), dtype=np.float32)).shape == (2, 1)
    assert (tmp_path / "iw" / "main" / "seed0" / "summary.json").exists()
