"""Observation histories (policylab.offline.obs_history and its parts): the partial-observability wrapper and
dataset transform, history windows at episode boundaries, the bisimulation loss by hand, gradient routing,
beta = 0 as plain history-IQL, and a learning check where only a history reveals the hidden dimension."""

import copy

import numpy as np
import pytest
import torch

from policylab.core.actor_critic import q_values
from policylab.core.errors import ConfigError
from policylab.data.format import OfflineData
from policylab.data.history import HistoryWindows, history_table, history_windows
from policylab.data.partial import partially_observed
from policylab.envs.factory import make_env
from policylab.envs.partial import PartialObservation, PartialSpec, register_partial
from policylab.offline.history import HistoryTracker
from policylab.offline.iql import expectile_loss
from policylab.offline.obs_history import ObsHistory, ObsHistoryConfig, bisimulation_loss
from policylab.offline.train import Prepared


def test_wrapper_hides_exactly_the_chosen_dims():
    full, part = make_env("Pendulum-v1"), PartialObservation(make_env("Pendulum-v1"), PartialSpec("Pendulum-v1", (2,)))
    o_full, _ = full.reset(seed=3)
    o_part, _ = part.reset(seed=3)
    assert part.observation_space.shape == (2,) and np.array_equal(o_part, o_full[[0, 1]])
    a = np.array([1.5], np.float32)
    assert np.array_equal(part.step(a)[0], full.step(a)[0][[0, 1]])
    env_id = register_partial(PartialSpec("Pendulum-v1", (0, 2)))
    assert env_id == "Pendulum-v1[hide=0.2]" and make_env(env_id).observation_space.shape == (1,)
    with pytest.raises(ConfigError, match="hide_dims"):
        PartialObservation(make_env("Pendulum-v1"), PartialSpec("Pendulum-v1", (3,)))


def test_wrapper_noise_is_seeded():
    def first(noise_seed, reset_seed):
        env = PartialObservation(make_env("Pendulum-v1"), PartialSpec("Pendulum-v1", (), 0.1, noise_seed))
        return env.reset(seed=reset_seed)[0], make_env("Pendulum-v1").reset(seed=reset_seed)[0]

    (a, clean), (b, _), (c, _) = first(0, 5), first(0, 5), first(1, 5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0 < np.abs(a - clean).max() < 1.0


def hand_data(obs_dim=3):
    """Two episodes of 3 and 2 transitions; observation k of episode e is 100 e + 10 k + dim, action 10 e + k."""
    eps = [(0, 3), (1, 2)]
    obs, nxt, act = [], [], []
    for e, T in eps:
        o = torch.tensor([[100.0 * e + 10 * k + d for d in range(obs_dim)] for k in range(T + 1)])
        obs.append(o[:-1]), nxt.append(o[1:]), act.append(torch.tensor([[10.0 * e + k] for k in range(T)]) / 100)
    n = 5
    terminals = torch.zeros(n)
    timeouts = torch.tensor([0, 0, 1, 0, 1.0])
    return OfflineData(torch.cat(obs), torch.cat(act), torch.arange(n, dtype=torch.float32), torch.cat(nxt),
                       terminals, timeouts, torch.tensor([0, 3, 5]),
                       {"env_id": "Pendulum-v1", "ref_min_score": 0.0, "ref_max_score": 1.0, "name": "hand",
                        "action_type": "continuous"})


def test_dataset_transform_matches_the_wrapper_and_keeps_noise_consistent():
    data = hand_data()
    hidden = partially_observed(data, hide=(2,))
    assert torch.equal(hidden.observations, data.observations[:, :2])
    assert hidden.metadata["env_id"] == "Pendulum-v1[hide=2]" and hidden.metadata["partial_observation"]["hide"] == [2]
    noisy = partially_observed(data, hide=(1,), noise_std=0.5, noise_seed=7)
    again = partially_observed(data, hide=(1,), noise_std=0.5, noise_seed=7)
    assert torch.equal(noisy.observations, again.observations)
    assert torch.equal(noisy.next_observations[[0, 1, 3]], noisy.observations[[1, 2, 4]])  # o_{t+1} is one vector
    assert (noisy.observations - data.observations[:, [0, 2]]).abs().max() > 0


def test_history_windows_are_zero_padded_and_never_cross_episodes():
    data = hand_data(obs_dim=1)
    table, row, first = history_table(data, previous_action=True)
    h = history_windows(table, row, first, 3)
    # episode 0, t = 2: (o_0, 0, 1), (o_1, a_0, 1), (o_2, a_1, 1)
    assert torch.allclose(h[2], torch.tensor([[0.0, 0.0, 1], [10, 0.0, 1], [20, 0.01, 1]]))
    # episode 1, t = 0: two zero rows, then (o_0 = 100, 0, 1): nothing of episode 0
    assert torch.allclose(h[3], torch.tensor([[0.0, 0, 0], [0, 0, 0], [100, 0, 1]]))
    # h_{t+1} of the last transition of episode 0 ends with its final observation and the last action
    nxt = history_windows(table, row + 1, first, 3)
    assert torch.allclose(nxt[2], torch.tensor([[10.0, 0.0, 1], [20, 0.01, 1], [30, 0.02, 1]]))
    assert torch.allclose(nxt[4], torch.tensor([[100.0, 0, 1], [110, 0.10, 1], [120, 0.11, 1]]))
    batch = HistoryWindows(data, 64, 3, seed=0).sample()
    episode_of_last = (batch["histories"][:, -1, 0] >= 100)
    assert ((batch["histories"][:, :, 0] < 100) | episode_of_last[:, None]).all()  # no episode-0 rows in episode 1
    assert ((batch["histories"][:, :, 0] >= 100) | (batch["histories"][:, :, 2] == 0) | ~episode_of_last[:, None]).all()


def test_tracker_rebuilds_the_training_windows():
    data = hand_data(obs_dim=1)
    table, row, first = history_table(data)
    tracker = HistoryTracker(3, 1, 1)
    tracker.reset(1)
    for t in range(3):
        window = tracker.push(data.observations[t:t + 1])
        assert torch.allclose(window[0], history_windows(table, row[t:t + 1], first[t:t + 1], 3)[0])
        tracker.record(data.actions[t:t + 1])
        tracker.observe(np.array([0]), np.array([False]))


def test_bisimulation_loss_by_hand():
    z, pairs, r = torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([1, 0]), torch.tensor([0.0, 1.0])
    nxt = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    # ||z_0 - z_1||_1 = 2 = |0 - 1| + 0.5 * 2: the representation already matches the metric
    assert bisimulation_loss(z, nxt, r, 0.5, pairs) == 0
    z2 = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert torch.isclose(bisimulation_loss(z2, nxt, r, 0.5, pairs), torch.tensor(1.0))  # (3 - 2)^2
    assert torch.isclose(bisimulation_loss(z2, nxt, r, 0.5, pairs, torch.tensor([1.0, 0.0])), torch.tensor(4.0))


def test_bisimulation_target_side_gets_no_gradient():
    z = torch.randn(6, 4, requires_grad=True)
    nxt = torch.randn(6, 4, requires_grad=True)
    bisimulation_loss(z, nxt, torch.randn(6), 0.9, torch.randperm(6)).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0 and nxt.grad is None


def prepared_hand(hide=(2,)):
    data = partially_observed(hand_data(), hide=hide)
    return Prepared(data, normalize=True)


def make_algo(prepared, beta, seed=0):
    torch.manual_seed(seed)
    cfg = ObsHistoryConfig(hidden=(16, 16), encoder_hidden=8, history_length=3, bisim_weight=beta, batch_size=8)
    algo = ObsHistory(prepared, cfg)
    algo.encoder_opt.step = lambda: None  # keep the encoder's gradients for inspection
    return algo


def encoder_grads(algo):
    return [p.grad.clone() for p in algo.encoder.parameters()]


def test_target_encoder_gets_no_gradient_and_tracks_the_encoder():
    prepared = prepared_hand()
    torch.manual_seed(0)
    algo = ObsHistory(prepared, ObsHistoryConfig(hidden=(16, 16), encoder_hidden=8, history_length=3, batch_size=8))
    target_before = [p.clone() for p in algo.encoder_target.parameters()]
    algo.update(algo.make_sampler(prepared.data, 0).sample())
    assert all(p.grad is None and not p.requires_grad for p in algo.encoder_target.parameters())
    for old, target, online in zip(target_before, algo.encoder_target.parameters(), algo.encoder.parameters(),
                                   strict=True):
        assert torch.allclose(target, 0.995 * old + 0.005 * online, atol=1e-6)
    assert any(not torch.equal(old, new) for old, new in zip(target_before, algo.encoder_target.parameters()))


def test_beta_zero_is_plain_history_iql_and_beta_adds_the_bisim_gradient():
    prepared = prepared_hand()
    batch = HistoryWindows(prepared.data, 8, 3, seed=1).sample()
    plain, with_bisim = make_algo(prepared, 0.0), make_algo(prepared, 0.5)
    reference = copy.deepcopy(plain)
    plain.update(batch)
    with_bisim.update(batch)
    # reference: all three IQL losses on z = phi(h) in one graph, at the pre-update parameters
    iql, cfg = reference.iql, reference.cfg
    z = reference.encoder(batch["histories"])
    with torch.no_grad():
        next_z = reference.encoder_target(batch["next_histories"])
        q_target = q_values(iql.critic_target, z, batch["actions"]).min(0).values
        next_v = iql.value(next_z).squeeze(-1)
    v = iql.value(z).squeeze(-1)
    target = batch["rewards"] * iql.reward_scale + cfg.gamma * (1 - batch["terminals"]) * next_v
    critic = (q_values(iql.critic, z, batch["actions"]) - target).pow(2).mean(1).sum()
    weights = torch.exp(cfg.beta * (q_target - v.detach())).clamp(max=cfg.max_weight)
    total = expectile_loss(q_target - v, cfg.expectile) + critic + iql.actor.weighted_nll(z, batch["actions"], weights)
    expected = torch.autograd.grad(total, list(reference.encoder.parameters()))
    for got, want in zip(encoder_grads(plain), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    # beta > 0 adds exactly beta * grad L_bisim (same pairs: the pair generators start equal)
    pairs = torch.randperm(8, generator=reference.pair_generator)
    bisim = reference.bisim(reference.encoder(batch["histories"]), batch["next_histories"], batch["rewards"],
                            batch["terminals"], pairs)
    extra = torch.autograd.grad(0.5 * bisim, list(reference.encoder.parameters()))
    for got, base, add in zip(encoder_grads(with_bisim), expected, extra, strict=True):
        assert torch.allclose(got, base + add, atol=1e-5, rtol=1e-4)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="hide_dims"):
        ObsHistoryConfig(hide_dims=(1, 1))
    with pytest.raises(ConfigError, match="history_length"):
        ObsHistoryConfig(history_length=0)
    with pytest.raises(ConfigError, match="sampler"):
        ObsHistoryConfig(sampler="rw")


def velocity_data(episodes=40, T=30, seed=0):
    """x_t a random walk, v_t = x_t - x_{t-1} (hidden); the behaviour action is 4 v_t: only a history shows it."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(episodes, T + 1, generator=g) * 0.2
    steps[:, 0] = 0
    x = steps.cumsum(1) + torch.randn(episodes, 1, generator=g)
    obs = torch.stack([x, steps], -1)  # (position, velocity)
    actions = (4 * steps[:, :-1, None]).clamp(-2, 2)
    n = episodes * T
    return OfflineData(obs[:, :-1].reshape(n, 2).contiguous(), actions.reshape(n, 1).contiguous(), torch.zeros(n),
                       obs[:, 1:].reshape(n, 2).contiguous(), torch.zeros(n),
                       torch.zeros(episodes, T).index_fill_(1, torch.tensor([T - 1]), 1.0).reshape(n),
                       torch.arange(0, n + 1, T), {"env_id": "Pendulum-v1", "ref_min_score": 0.0,
                                                    "ref_max_score": 1.0, "action_type": "continuous"})


def fitted_action_error(history_length):
    prepared = Prepared(partially_observed(velocity_data(), hide=(1,)), normalize=True)
    torch.manual_seed(0)
    cfg = ObsHistoryConfig(hidden=(32, 32), encoder_hidden=16, history_length=history_length,
                           previous_action=False, bisim_weight=0.0, batch_size=128, lr=3e-3, hide_dims=(1,))
    algo = ObsHistory(prepared, cfg)
    sampler = algo.make_sampler(prepared.data, 0)
    for _ in range(300):
        algo.update(sampler.sample())
    batch = HistoryWindows(prepared.data, 1024, history_length, seed=9, previous_action=False).sample()
    with torch.no_grad():
        predicted = algo.iql.actor(algo.encoder(batch["histories"]))
    return float((predicted - batch["actions"]).pow(2).mean())


def test_a_history_recovers_the_hidden_velocity():
    with_history, current_only = fitted_action_error(2), fitted_action_error(1)
    assert with_history < 0.5 * current_only, (with_history, current_only)
