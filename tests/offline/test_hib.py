"""HIB (policylab.offline.hib) and its parts: the KL and InfoNCE estimators by hand, privileged values carried per
episode and kept out of the deployable policy, config errors, gradient routing, the robust evaluator's history
hooks, and a short learning check on a tiny randomized-dynamics dataset built here."""

import math

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.core.registry import DATASETS
from policylab.data import load_dataset, save_dataset
from policylab.data.collect import collect_episodes, cut_episode
from policylab.data.format import DatasetError
from policylab.data.privileged import (
    privileged_metadata,
    privileged_values,
    split_privileged,
    with_privileged_observations,
)
from policylab.envs.factory import make_env
from policylab.envs.robust import ParamBox, evaluate_grid, privileged_randomized_env_id, randomized_env_id
from policylab.offline.hib import (
    HIB,
    HIBConfig,
    info_nce,
    kl_to_standard_normal,
    linear_probe_r2,
    privileged_diagnostics,
    train_hib,
)
from policylab.offline.train import Prepared

BOX = ParamBox(("m", "l"), (0.5, 0.5), (2.0, 1.5))
SMALL = dict(hidden=(32, 32), batch_size=64, history_length=4, encoder_hidden=16, latent_dim=4)


def tiny_episodes(episodes=6, length=30, seed=0):
    env_id = privileged_randomized_env_id("Pendulum-v1", BOX)
    rng = np.random.default_rng(seed)
    raw = collect_episodes(env_id, lambda o: rng.uniform(-2, 2, (len(o), 1)).astype(np.float32), episodes, seed=seed)
    return [cut_episode(ep, length) for ep in raw]


def tiny_data(tmp_path, episodes=6, length=30, seed=0):
    stripped, values = split_privileged(tiny_episodes(episodes, length, seed), 2)
    meta = {"ref_min_score": -1500.0, "ref_max_score": 0.0, "name": "tiny-dr",
            **privileged_metadata("Pendulum-v1", BOX, values)}
    return load_dataset(save_dataset(tmp_path / "tiny-dr", stripped, meta)), values


# -- the estimators by hand ----------------------------------------------------------------------------

def test_kl_to_standard_normal_by_hand():
    zero = torch.zeros(3, 2)
    assert float(kl_to_standard_normal(zero, zero)) == 0.0
    mu = torch.tensor([[1.0, 2.0]])
    assert float(kl_to_standard_normal(mu, torch.zeros(1, 2))) == pytest.approx(2.5)  # (1 + 4) / 2
    log_std = torch.tensor([[1.0]])
    assert float(kl_to_standard_normal(torch.zeros(1, 1), log_std)) == pytest.approx(0.5 * (math.e**2 - 3))
    rows = torch.tensor([[1.0, 2.0], [0.0, 0.0]])  # the batch mean of 2.5 and 0
    assert float(kl_to_standard_normal(rows, torch.zeros(2, 2))) == pytest.approx(1.25)


def test_info_nce_by_hand():
    one = torch.tensor([[0.3, -1.0]])
    assert float(info_nce(one, torch.tensor([[5.0, 2.0]]), 0.1)) == pytest.approx(0.0)  # B = 1: log 1
    same = torch.ones(4, 3)
    assert float(info_nce(same, same, 0.1)) == pytest.approx(math.log(4))  # identical embeddings: log B
    eye = torch.eye(2)
    assert float(info_nce(eye, eye, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)))
    assert float(info_nce(eye, eye, 0.5)) == pytest.approx(math.log(1 + math.exp(-2)))
    assert float(info_nce(3 * eye, 0.1 * eye, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)))  # cosine: scale-free
    assert float(info_nce(eye, eye.flip(0), 1.0)) == pytest.approx(math.log(1 + math.exp(1)))  # keys swapped


def test_info_nce_drops_pairs_that_share_e_from_the_denominators():
    z = torch.ones(3, 2)
    share = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    expected = (2 * math.log(2) + math.log(3)) / 3  # rows 0, 1 lose one negative each
    assert float(info_nce(z, z, 0.1, share)) == pytest.approx(expected)
    assert float(info_nce(z, z, 0.1, torch.ones(3, 3, dtype=torch.bool))) == pytest.approx(0.0)


def test_linear_probe_r2_is_one_for_a_linear_code_and_not_above_zero_for_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen)
    y = x @ torch.tensor([[1.0, 0.0], [2.0, -1.0], [0.0, 0.5]]) + 3.0
    assert linear_probe_r2(x[:20], y[:20], x[20:], y[20:]) == pytest.approx(1.0, abs=1e-4)
    noise = torch.randn(40, 3, generator=gen)
    assert linear_probe_r2(noise[:20], y[:20], noise[20:], y[20:]) < 0.2


# -- config --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field", [({"kl_weight": 0.1, "stochastic": False}, "kl_weight"),
                                            ({"temperature": 0.0}, "temperature"),
                                            ({"history_length": 0}, "history_length"),
                                            ({"latent_dim": 0}, "latent_dim"),
                                            ({"nce_weight": -1.0}, "nce_weight"),
                                            ({"embed_hidden": (0,)}, "embed_hidden"),
                                            ({"sampler": "rw"}, "sampler")])
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        HIBConfig(**changes)


# -- privileged values in the data ---------------------------------------------------------------------

def test_dataset_carries_e_per_episode_as_drawn(tmp_path):
    data, values = tiny_data(tmp_path, episodes=4, length=10)
    env = make_env(randomized_env_id("Pendulum-v1", BOX))
    drawn = np.array([[env.reset(seed=i)[1]["params"][n] for n in ("m", "l")] for i in range(4)])
    assert np.allclose(values, drawn) and len(np.unique(values[:, 0])) == 4
    assert data.observations.shape[1] == 3  # e is not an observation column
    e = privileged_values(data)
    per_transition = torch.as_tensor(drawn, dtype=torch.float32).repeat_interleave(10, 0)
    assert e.shape == (40, 2) and torch.allclose(e, per_transition, atol=1e-5)
    oracle = with_privileged_observations(data)
    assert oracle.observations.shape[1] == 5 and torch.equal(oracle.observations[:, 3:], e)
    assert make_env(oracle.metadata["env_id"]).observation_space.shape == (5,)
    with pytest.raises(DatasetError, match="one row per episode"):
        privileged_values(data.select_episodes(torch.tensor([True, False, True, True])))


def test_split_privileged_refuses_columns_that_change_within_an_episode():
    episodes = tiny_episodes(episodes=1, length=5)
    with pytest.raises(DatasetError, match="change within the episode"):
        split_privileged(episodes, 3)  # the angular velocity is not a per-episode constant


def test_recipe_is_registered():
    assert DATASETS.get("pendulum-dr-teacher").env_id == randomized_env_id("Pendulum-v1", BOX)


# -- e never reaches the deployable policy -------------------------------------------------------------

class Exploding(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("g(e) was called outside the training losses")


def test_privileged_values_never_reach_the_policy(tmp_path):
    data, _ = tiny_data(tmp_path)
    algo = HIB(Prepared(data, True), HIBConfig(**SMALL))
    assert algo.iql.actor.mean_net[0][0].in_features == 3 + 4  # (o_t, z_t): no column for e
    algo.embed = Exploding()
    policy_obs = torch.randn(6, 3)
    algo.policy_reset(6)
    assert algo.policy_action(policy_obs).shape == (6, 1)
    with pytest.raises(ConfigError, match="columns"):
        algo.policy_action(torch.randn(6, 5))  # observations with e appended are refused
    with pytest.raises(ConfigError, match="privileged values belong in the metadata"):
        HIB(Prepared(with_privileged_observations(data), True), HIBConfig(**SMALL))


def test_gradients_reach_the_encoder_from_rl_alone_and_g_only_from_infonce(tmp_path):
    data, _ = tiny_data(tmp_path)
    prepared = Prepared(data, True)
    for cfg, g_moves in ((HIBConfig(**SMALL, stochastic=False, kl_weight=0.0, nce_weight=0.0), False),
                         (HIBConfig(**SMALL), True)):
        torch.manual_seed(0)
        algo = HIB(prepared, cfg)
        enc, g = ([p.clone() for p in m.parameters()] for m in (algo.encoder, algo.embed))
        algo.update(algo.make_sampler(prepared.data, 0).sample())
        assert any(not torch.equal(a, b) for a, b in zip(enc, algo.encoder.parameters()))
        assert any(not torch.equal(a, b) for a, b in zip(g, algo.embed.parameters())) == g_moves


def test_iql_regressions_see_a_detached_code_and_the_encoder_steps_on_the_policy_loss(tmp_path):
    data, _ = tiny_data(tmp_path)
    prepared = Prepared(data, True)
    algo = HIB(prepared, HIBConfig(**SMALL, stochastic=False, kl_weight=0.0, nce_weight=0.0))
    batch = algo.make_sampler(prepared.data, 0).sample()
    seen = []
    algo.iql.update = lambda b: seen.append(b["observations"].requires_grad) or {}
    torch.manual_seed(1)
    before = [p.clone() for p in algo.encoder.parameters()]
    algo.update(batch)
    assert seen == [False]  # value, critic and IQL's own actor step: no gradient to the encoder
    step = [a - p for a, p in zip(before, algo.encoder.parameters())]
    # with no IB terms the encoder's first Adam step is -lr * sign(d L_pi / d phi) (where that gradient is not ~0)
    algo2 = HIB(prepared, HIBConfig(**SMALL, stochastic=False, kl_weight=0.0, nce_weight=0.0))
    algo2.encoder.load_state_dict(dict(zip(algo.encoder.state_dict(), before)))
    algo2.iql.load_state_dict(algo.iql.state_dict())
    z, _, _ = algo2.encode(batch["histories"])
    grads = torch.autograd.grad(algo2.policy_loss(torch.cat([batch["observations"], z], 1), batch["actions"]),
                                list(algo2.encoder.parameters()))
    for s, g in zip(step, grads):
        live = g.abs() > 1e-6
        assert live.any() and torch.equal(s[live].sign(), g[live].sign())


def test_grid_evaluation_gives_history_policies_their_hooks_and_oracles_their_e():
    class Recorder:
        def __init__(self):
            self.resets, self.observed, self.widths = [], 0, set()

        def reset(self, n):
            self.resets.append(n)

        def observe(self, indices, rewards, dones):
            self.observed += 1

        def act(self, obs, deterministic=True):
            self.widths.add(obs.shape[1])
            return np.zeros((len(obs), 1), np.float32)

    agent = Recorder()
    evaluate_grid(agent, "Pendulum-v1", ("m", "l"), np.array([[1.0, 1.0], [2.5, 0.7]]), 2, seed=0)
    assert agent.resets == [4] and agent.observed == 200 and agent.widths == {3}
    evaluate_grid(agent, "Pendulum-v1", ("m", "l"), np.array([[2.5, 0.7]]), 1, seed=0, observe_params=True)
    assert agent.widths == {3, 5}


# -- a short learning check ----------------------------------------------------------------------------

def test_hib_learns_a_code_of_e_on_a_tiny_dataset(tmp_path):
    """Random-action episodes with (m, l) redrawn per episode: after 600 steps the InfoNCE bound log B - L_NCE on
    one transition per episode (distinct e) is clearly above its chance level 0 (0.48 to 0.89 nats over seeds
    0-3 when written; a broken or sign-flipped L_NCE stays at or below 0)."""
    data, _ = tiny_data(tmp_path, episodes=24, length=60, seed=1)
    cfg = HIBConfig(**SMALL, lr=3e-3)
    summary = train_hib(cfg, env_id=data, seed=0, steps=600, evals=1, eval_episodes=1, checkpoints=0, progress=False)
    assert summary["diagnostics"] == privileged_diagnostics(summary["algorithm"], summary["policy"].prepared.data)
    assert summary["diagnostics"]["nce_bound"] > 0.25, summary["diagnostics"]
    assert np.isfinite(summary["eval"]["eval/return"])
