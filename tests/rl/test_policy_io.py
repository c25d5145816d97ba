"""Saved policies rebuild to the same actions; wrong or damaged files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from policylab.core.errors import CheckpointError
from policylab.rl import PPO, SAC, PPOConfig, SACConfig, load_policy, save_policy
from policylab.rl.train import build_online


@pytest.mark.parametrize("algo_cls,cfg,env_id", [
    (PPO, PPOConfig(num_envs=2, rollout_steps=16, hidden=(8,)), "Pendulum-v1"),  # continuous PPO too
    (PPO, PPOConfig(num_envs=2, rollout_steps=16, hidden=(8,)), "CartPole-v1"),
    (SAC, SACConfig(learning_starts=32, batch_size=16, hidden=(8,)), "Pendulum-v1"),
])
def test_saved_policy_acts_identically(tmp_path, algo_cls, cfg, env_id):
    algo, source, _ = build_online(algo_cls, cfg, env_id, 0, 64)
    for _ in range(3):
        algo.update(source.next_batch(algo))
    path = save_policy(algo, env_id, tmp_path / "policy.pt")
    loaded = load_policy(path)
    obs = np.stack([source.envs.obs[0]] * 5) + np.linspace(0, 0.1, 5)[:, None]
    assert type(loaded) is algo_cls and loaded.cfg == algo.cfg
    assert np.array_equal(loaded.act(obs), algo.act(obs))
    if algo_cls is PPO and env_id == "Pendulum-v1":
        assert np.all(np.abs(algo.act(obs * 100, deterministic=False)) <= 2.0)  # clipped to the Box


def test_wrong_algorithm_truncated_and_checkpoint_files_are_refused(tmp_path):
    algo, source, _ = build_online(SAC, SACConfig(learning_starts=32, batch_size=16, hidden=(8,)), "Pendulum-v1", 0, 64)
    path = save_policy(algo, "Pendulum-v1", tmp_path / "sac.pt")
    with pytest.raises(CheckpointError, match="written by algorithm 'sac', cannot load it into 'ppo'"):
        load_policy(path, "ppo")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or not a policylab checkpoint"):
        load_policy(path)
    from policylab.core.checkpoint import save_checkpoint

    training = save_checkpoint(tmp_path / "ckpts", 5, "sac", {"algo": algo.state_dict()})
    with pytest.raises(CheckpointError, match="training checkpoint, not a saved policy"):
        load_policy(training)
