"""Offline baselines on the pendulum datasets: learning over a random policy, the no-BC failure,
x%BC, resume equality, bad input."""

import numpy as np
import pytest
import torch

from policylab.core.actor_critic import q_values
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.envs.evaluate import RandomAgent, evaluate_policy
from policylab.envs.factory import make_env
from policylab.offline import BC, CQL, IQL, TD3BC, BCConfig, CQLConfig, IQLConfig, TD3BCConfig, train_offline
from policylab.offline.bc import top_episode_transitions
from policylab.offline.iql import expectile_loss

SMALL = {"hidden": (64, 64)}


def overestimation_gap(summary, episodes=5, gamma=0.99, seed=123):
    """Mean over episodes of Q(s0, pi(s0)) - the discounted return pi actually gets from s0."""
    policy, algo = summary["policy"], summary["algorithm"]
    gaps = []
    for i in range(episodes):
        env = make_env("Pendulum-v1")
        obs, _ = env.reset(seed=seed + i)
        s0 = policy.prepared.normalize(torch.as_tensor(obs, dtype=torch.float32))[None]
        with torch.no_grad():
            q0 = float(q_values(algo.critic, s0, algo.actor(s0)).min(0).values)
        ret, discount, done = 0.0, 1.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs[None])[0])
            ret += discount * reward
            discount *= gamma
            done = terminated or truncated
        gaps.append(q0 - ret)
    return float(np.mean(gaps))


@pytest.mark.slow
@pytest.mark.xdist_group("pendulum-data")
def test_x_percent_bc_recovers_the_expert_inside_a_mostly_random_mixture(datasets):
    """On pendulum-mix10 (90% random episodes) plain BC stays near a random policy (measured: -1072 vs
    random -1118 after 3k steps, the premise of trajectory weighting), while 10%BC trains on the 20 best
    episodes, the expert ones."""
    random_return = evaluate_policy(RandomAgent(make_env("Pendulum-v1").action_space, 0), "Pendulum-v1", 10,
                                    seed=10_000)["return"]
    scores = {}
    for name, cfg in (("bc", BCConfig(**SMALL)), ("bc10", BCConfig(top_percent=10, **SMALL))):
        summary = train_offline(BC, cfg, env_id=datasets["pendulum-mix10"], seed=0, steps=3000, evals=1,
                                progress=False)
        scores[name] = summary["eval"]["eval/return"]
    assert scores["bc10"] > random_return + 500 and scores["bc10"] > scores["bc"] + 500, (scores, random_return)


@pytest.mark.slow
@pytest.mark.xdist_group("pendulum-data")
def test_iql_beats_bc_on_the_mostly_random_mixture(datasets):
    """Same data, budget and network width; the margin (100 return) was fixed before this test first ran
    (an exploratory run at the same settings had given IQL -700 and BC -1044)."""
    runs = {name: train_offline(cls, cfg, env_id=datasets["pendulum-mix10"], seed=0, steps=5000, evals=1,
                                progress=False)
            for name, cls, cfg in (("iql", IQL, IQLConfig(**SMALL)), ("bc", BC, BCConfig(**SMALL)))}
    iql, bc = runs["iql"]["eval"]["eval/return"], runs["bc"]["eval"]["eval/return"]
    assert iql > bc + 100, (iql, bc)


@pytest.mark.xdist_group("pendulum-data")
def test_cql_pushes_down_out_of_distribution_actions(datasets):
    """The conservative penalty's mechanism: after the same 1000 steps on expert data (where uniform random
    actions are out of distribution), Q of random actions sits lower relative to the dataset's actions
    with alpha_c = 10 than with alpha_c = 0 (offline SAC). A first version on pendulum-mix10 failed its
    margin (-0.18 vs -0.13): there 90% of the actions are uniform random, so they are in distribution.
    On expert data at 300 steps the push-down was 10x but just under the margin (-1.00 vs -0.09), so the
    test now trains 1000 steps, with the margin unchanged."""
    from policylab.data import load_dataset

    gaps = {}
    for weight in (0.0, 10.0):
        summary = train_offline(CQL, CQLConfig(cql_alpha=weight, **SMALL), env_id=datasets["pendulum-expert"],
                                seed=0, steps=1000, evals=0, eval_episodes=0, progress=False)
        algo, prepared = summary["algorithm"], summary["policy"].prepared
        obs, actions = prepared.data.observations[:2000], prepared.data.actions[:2000]
        with torch.no_grad():
            q_data = q_values(algo.critic, obs, actions).min(0).values
            q_rand = q_values(algo.critic, obs, torch.rand_like(actions) * 2 - 1).min(0).values
        gaps[weight] = float((q_rand - q_data).mean())
    assert gaps[10.0] < gaps[0.0] - 1.0, gaps
    assert load_dataset(datasets["pendulum-expert"]).num_episodes == 100


def test_expectile_loss_by_hand():
    diff = torch.tensor([1.0, -1.0, 2.0])
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 1 + 0.7 * 4) / 3)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (1 + 1 + 4) / 3)


@pytest.mark.slow
@pytest.mark.xdist_group("pendulum-data")
def test_offline_td3_without_bc_overestimates_where_td3_bc_does_not(datasets):
    """The classic failure on narrow (expert-only) data: margins fixed before the first run."""
    runs = {w: train_offline(TD3BC, TD3BCConfig(bc_weight=w, **SMALL), env_id=datasets["pendulum-expert"], seed=0,
                             steps=5000, evals=1, eval_episodes=5, progress=False) for w in (0.0, 1.0)}
    gap_td3, gap_td3_bc = overestimation_gap(runs[0.0]), overestimation_gap(runs[1.0])
    assert gap_td3 > 100 and gap_td3 > 2 * gap_td3_bc, (gap_td3, gap_td3_bc)
    assert runs[1.0]["eval"]["eval/return"] > runs[0.0]["eval"]["eval/return"] + 300
    random_return = evaluate_policy(RandomAgent(make_env("Pendulum-v1").action_space, 0), "Pendulum-v1", 5,
                                    seed=10_000)["return"]
    assert runs[1.0]["eval"]["eval/return"] > random_return + 500  # TD3+BC learns from expert data


@pytest.mark.xdist_group("pendulum-data")
def test_killed_offline_run_resumes_to_the_same_result(datasets, tmp_path):
    cfg = TD3BCConfig(**SMALL)
    path = datasets["pendulum-mix10"]
    full = train_offline(TD3BC, cfg, env_id=path, seed=1, steps=40, run=RunDir(tmp_path, "full"), evals=0,
                         checkpoints=2, progress=False)
    train_offline(TD3BC, cfg, env_id=path, seed=1, steps=20, run=RunDir(tmp_path, "split"), evals=0, checkpoints=1,
                  progress=False)
    resumed = train_offline(TD3BC, cfg, env_id=path, seed=1, steps=40, run=RunDir(tmp_path, "split"), evals=0,
                            checkpoints=2, progress=False)
    for key, value in full["algorithm"].state_dict().items():
        if isinstance(value, dict) and "state" not in value:
            for name, tensor in value.items():
                assert torch.equal(tensor, resumed["algorithm"].state_dict()[key][name]), (key, name)


@pytest.mark.xdist_group("pendulum-data")
def test_top_percent_picks_the_best_episodes_and_bad_input(datasets):
    from policylab.data import load_dataset

    data = load_dataset(datasets["pendulum-mix10"])
    index = top_episode_transitions(data, 10)
    best = data.episode_returns().argsort(descending=True)[:20]
    assert set(data.episode_ids[index].unique().tolist()) == set(best.tolist())
    assert top_episode_transitions(data, 100) is None
    with pytest.raises(ConfigError, match="BCConfig.top_percent = 0"):
        BCConfig(top_percent=0)
    with pytest.raises(ConfigError, match="not a dataset file"):
        train_offline(BC, BCConfig(), env_id="pendulum-mix10", steps=10)


@pytest.mark.xdist_group("pendulum-data")
def test_a_callers_sampler_replaces_the_algorithms_default(datasets):
    from policylab.data import UniformTransitions

    made = []

    def sampler(data, batch_size, seed):
        made.append((len(data), batch_size, seed))
        return UniformTransitions(data, batch_size, seed)

    summary = train_offline(BC, BCConfig(top_percent=10, **SMALL), env_id=datasets["pendulum-mix10"], seed=4, steps=3,
                            evals=0, eval_episodes=0, checkpoints=0, progress=False, sampler=sampler)
    assert made == [(40_000, 256, 4)] and summary["steps"] == 3


@pytest.mark.slow
@pytest.mark.xdist_group("pendulum-data")
@pytest.mark.parametrize("name", ["bc", pytest.param("td3_bc", marks=pytest.mark.xfail(
    strict=True, reason="measured in CI: TD3+BC -1129 vs random -1118 after 3k steps on pendulum-mix10")),
    "iql", "cql"])
def test_each_algorithm_beats_bc_on_random_data_and_a_random_policy(datasets, name):
    """3k steps, 2 x 64, seed 0 on pendulum-mix10, against the better of a random policy and BC trained on
    pendulum-random (same budget). Margins fixed before the first run from earlier measurements: +100
    for TD3+BC and IQL; for BC and CQL only "better" (BC on mix10 was -1072 vs random -1118 at 3k steps,
    CQL -1097 at 5k: with CORL's policy lr 3e-5 it moves slowly). TD3+BC missed its margin and random
    itself (-1129 vs -1118): it is kept as a strict xfail, so that the day it learns here the test says so."""
    algo_cls, cfg = {"bc": (BC, BCConfig(**SMALL)), "td3_bc": (TD3BC, TD3BCConfig(**SMALL)),
                     "iql": (IQL, IQLConfig(**SMALL)), "cql": (CQL, CQLConfig(**SMALL))}[name]
    random_return = evaluate_policy(RandomAgent(make_env("Pendulum-v1").action_space, 0), "Pendulum-v1", 10,
                                    seed=10_000)["return"]
    bc_on_random = train_offline(BC, BCConfig(**SMALL), env_id=datasets["pendulum-random"], seed=0, steps=3000,
                                 evals=1, progress=False)["eval"]["eval/return"]
    trained = train_offline(algo_cls, cfg, env_id=datasets["pendulum-mix10"], seed=0, steps=3000, evals=1,
                            progress=False)["eval"]["eval/return"]
    margin = 100 if name in ("td3_bc", "iql") else 0
    assert trained > max(random_return, bc_on_random) + margin, (name, trained, random_return, bc_on_random)
