"""Dict and image observations (multi-input encoder, CNN) and the running observation normalizer."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import policylab
from policylab.core.errors import ConfigError
from policylab.envs.encoders import ObservationEncoder, ObservationNormalizer, flatten_batch
from policylab.envs.evaluate import episode_returns

sys.path.insert(0, str(Path(__file__).parent))
from envs import BrightReach, BrightSide, MatchMode, Scaled  # noqa: E402


class Random:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def act(self, obs, deterministic=True):
        return self.rng.integers(0, 2, len(obs))


def test_flattening_follows_gymnasium_and_checks_shapes():
    space = MatchMode.observation_space
    one = {"noise": np.array([0.1, 0.2, 0.3], np.float32), "mode": 1}
    row, single = flatten_batch(space, one)
    assert single and np.array_equal(row[0], gym.spaces.flatten(space, one).astype(np.float32))
    rows, single = flatten_batch(space, {"noise": np.zeros((4, 3)), "mode": np.array([0, 1, 1, 0])})
    assert not single and rows.shape == (4, 5) and rows[:, 0].tolist() == [1, 0, 0, 1]  # one-hot mode first
    with pytest.raises(ConfigError, match="obs lacks the key 'noise'"):
        flatten_batch(space, {"mode": 1})
    with pytest.raises(ConfigError, match=r"obs\['noise'\] has shape \(2,\)"):
        flatten_batch(space, {"noise": np.zeros(2), "mode": 1})
    with pytest.raises(ConfigError, match="outside the Discrete"):
        flatten_batch(space, {"noise": np.zeros(3), "mode": 5})
    with pytest.raises(ConfigError, match=r"not supported \(key 'x'\)"):
        policylab.PPO(lambda: Unsupported(), num_envs=1)


class Unsupported(MatchMode):
    observation_space = gym.spaces.Dict({"x": gym.spaces.MultiBinary(3)})


def test_the_encoder_is_the_identity_without_images_and_a_cnn_with_them():
    vector = ObservationEncoder(MatchMode.observation_space)
    x = torch.randn(7, 5)
    assert not vector.has_images and vector.out_dim == 5 and torch.equal(vector(x), x)
    assert sum(p.numel() for p in vector.parameters()) == 0
    mixed = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),  # channels last
                             "speed": gym.spaces.Box(-1, 1, (2,), np.float32)})
    encoder = ObservationEncoder(mixed)
    assert encoder.has_images and encoder.out_dim == 2 + 256
    rows, _ = flatten_batch(mixed, {"image": np.zeros((4, 8, 8, 3)), "speed": np.ones((4, 2))})
    out = encoder(torch.as_tensor(rows))
    assert out.shape == (4, 258) and torch.equal(out[:, :2], torch.ones(4, 2))  # vector part passed through
    big = ObservationEncoder(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert big(torch.zeros(2, 4 * 84 * 84)).shape == (2, 256)  # the Nature CNN stack for Atari-sized frames


def test_the_normalizer_keeps_exact_running_statistics():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (1, 2, 2), np.uint8),
                             "v": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)})
    norm = ObservationNormalizer(space)
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 5.0, (n, 6)) for n in (4, 1, 9)]
    for b in batches:
        norm.observe(torch.as_tensor(b, dtype=torch.float32))
        before = norm.mean.clone()
        assert torch.equal(norm.mean, before)  # pending until commit
        norm.commit()
    rows = np.concatenate([b.astype(np.float32).astype(np.float64) for b in batches])
    assert np.allclose(norm.mean.numpy(), rows.mean(0)) and np.allclose(norm.var.numpy(), rows.var(0))
    x = torch.as_tensor(rows[:3], dtype=torch.float32)
    out = norm(x)
    expected = (rows[:3] - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-8)
    keep = norm.keep.numpy()
    assert keep.tolist() == [True, True, True, True, False, False]  # Dict keys sorted: image, then v
    image_dims = keep.nonzero()[0]
    vector_dims = (~keep).nonzero()[0]
    assert torch.equal(out[:, image_dims], x[:, image_dims])  # pixels are left to the encoder
    assert np.allclose(out[:, vector_dims].numpy(), expected[:, vector_dims], atol=1e-5)
    huge = norm(torch.full((1, 6), 1e9))
    assert huge[0, vector_dims].tolist() == [10.0, 10.0] and huge[0, image_dims].tolist() == [1e9] * 4  # clipped


def test_dqn_learns_from_dict_observations_against_random():
    """Margin fixed before the run: random scores 5 of 10; the mode is only in the Discrete part, so 8.5 needs it."""
    random_return = episode_returns(Random(), MatchMode, episodes=20).mean()
    agent = policylab.DQN(MatchMode, seed=0, learning_starts=200, hidden=(32,), eps_decay_updates=500,
                          target_every=50, lr=1e-3).learn(2500)
    learned = episode_returns(agent.algo, MatchMode, episodes=20).mean()
    assert random_return < 6.5 and learned >= 8.5, (random_return, learned)
    one = agent.predict({"noise": np.zeros(3), "mode": 1})
    assert one.shape == () and int(one) == 1


def test_ppo_learns_from_images_with_its_cnn_against_random():
    """Margin fixed before the run: random scores 5 of 10; PPO's CNN must find the bright pixel's half (>= 8).
    Each step is a contextual bandit (the next image does not depend on the action), so gamma = 0 gives PPO a
    clean advantage; the task is about the encoder, not about credit assignment."""
    random_return = episode_returns(Random(), BrightSide, episodes=20).mean()
    agent = policylab.PPO(BrightSide, seed=0, num_envs=4, rollout_steps=64, epochs=4, minibatch_size=64,
                          lr=1e-3, hidden=(64,), gamma=0.0).learn(12_000)
    assert any(k == "obs_encoder" for k in agent.algo.state_dict())
    learned = episode_returns(agent.algo, BrightSide, episodes=20).mean()
    assert random_return < 6.5 and learned >= 8, (random_return, learned)


def test_image_and_dict_agents_save_load_and_predict(tmp_path):
    images = policylab.DQN(BrightSide, seed=0, learning_starts=20, hidden=(8,)).learn(60)
    frames = BrightSide().observation_space.sample()[None].repeat(3, 0)
    loaded = policylab.DQN.load(images.save(tmp_path / "dqn.pt"))
    assert np.array_equal(loaded.predict(frames), images.predict(frames)) and images.predict(frames[0]).shape == ()
    dicts = policylab.PPO(MatchMode, seed=0, num_envs=1, rollout_steps=16, normalize_obs=True).learn(64)
    obs = {"noise": np.zeros((2, 3), np.float32), "mode": np.array([0, 1])}
    loaded = policylab.PPO.load(dicts.save(tmp_path / "ppo.pt"))
    assert loaded.observation_space == MatchMode.observation_space
    assert np.array_equal(loaded.predict(obs), dicts.predict(obs))


class Uniform:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def act(self, obs, deterministic=True):
        return self.rng.uniform(-1, 1, (len(obs), 1))


def test_sac_learns_from_images_with_the_critics_cnn_against_random():
    """Margin fixed before the run: uniform actions score about -7.3 over 10 steps; SAC must reach -2 (a mean
    squared error of 0.2 on the bright pixel's column). gamma = 0: each step is a contextual bandit. The
    settings were piloted on seed 0; the test runs seed 1."""
    random_return = episode_returns(Uniform(), BrightReach, episodes=20).mean()
    agent = policylab.SAC(BrightReach, seed=1, learning_starts=200, hidden=(64,), gamma=0.0, batch_size=64,
                          lr=1e-3).learn(3000)
    assert agent.source.buffer.data["obs"].dtype == torch.uint8  # pixels stored as bytes
    learned = episode_returns(agent.algo, BrightReach, episodes=20).mean()
    assert random_return < -5 and learned > -2, (random_return, learned)


@pytest.mark.parametrize("cls", ["SAC", "TD3"])
def test_off_policy_image_agents_train_their_encoder_through_the_critic_and_reload(tmp_path, cls):
    agent = getattr(policylab, cls)(BrightReach, seed=0, learning_starts=20, hidden=(8,), batch_size=16)
    before = {k: v.clone() for k, v in agent.algo.encoder.state_dict().items()}
    agent.learn(60)
    after = agent.algo.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the critic's loss moved the CNN
    frames = BrightReach().observation_space.sample()[None].repeat(4, 0)
    loaded = getattr(policylab, cls).load(agent.save(tmp_path / "agent.pt"))
    assert np.array_equal(loaded.predict(frames), agent.predict(frames)) and agent.predict(frames[0]).shape == (1,)


@pytest.mark.parametrize("cls", ["PPO", "SAC", "TD3", "DQN"])
def test_normalized_observations_are_saved_with_the_model(tmp_path, cls):
    env = Scaled if cls != "DQN" else MatchMode
    extra = {} if cls == "PPO" else {"learning_starts": 20, "hidden": (8,)}
    agent = getattr(policylab, cls)(env, seed=0, normalize_obs=True, num_envs=1, **extra).learn(128)
    normalizer = agent.algo.obs_in.normalizer
    assert normalizer.count > 0
    if cls != "DQN":
        assert normalizer.mean.abs().max() > 100  # learned the scale of observations in the thousands
    loaded = getattr(policylab, cls).load(agent.save(tmp_path / "agent.pt"))
    assert torch.equal(loaded.algo.obs_in.normalizer.mean, normalizer.mean)
    probe = [agent.observation_space.sample() for _ in range(4)]
    batch = {k: np.stack([p[k] for p in probe]) for k in probe[0]} if cls == "DQN" else np.stack(probe)
    assert np.allclose(loaded.predict(batch), agent.predict(batch))


def test_a_killed_run_with_normalized_observations_resumes_exactly(tmp_path):
    fields = dict(seed=0, normalize_obs=True, num_envs=2, rollout_steps=32, epochs=2)
    whole = policylab.PPO(Scaled, **fields).learn(1280, run_dir=tmp_path / "whole", checkpoints=4)

    def die_at_second_checkpoint(event, step, trainer):
        if event == "checkpoint" and step >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        policylab.PPO(Scaled, **fields).learn(1280, die_at_second_checkpoint, run_dir=tmp_path / "killed",
                                             checkpoints=4)
    resumed = policylab.PPO(Scaled, **fields).learn(1280, run_dir=tmp_path / "killed", checkpoints=4)
    a, b = whole.algo.state_dict(), resumed.algo.state_dict()
    assert torch.equal(a["obs_normalizer"]["mean"], b["obs_normalizer"]["mean"])
    for key, value in a["nets"].items():
        assert torch.equal(value, b["nets"][key]), key
