"""The online Python API, driven as a user would: their own env classes, predict, save / load, resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import policylab
from policylab.core.errors import ConfigError
from policylab.envs.evaluate import episode_returns
from policylab.rl import PPO as PPOAlgorithm
from policylab.rl import SAC as SACAlgorithm
from policylab.rl import PPOConfig, SACConfig, train_online

sys.path.insert(0, str(Path(__file__).parent))
from envs import DictObs, GoLeft, Reach  # noqa: E402


def params(algo) -> dict[str, torch.Tensor]:
    """Every tensor of an algorithm's state, flattened by path."""
    from policylab.core.trainer import state_leaves

    return {k: v for k, v in state_leaves(algo.state_dict()) if isinstance(v, torch.Tensor)}


def assert_same_state(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        assert torch.equal(pa[key], pb[key]), key


def test_the_api_is_the_training_path_bitwise():
    """PPO(env, seed, **fields).learn(n) == train_online(...) (the CLI's and the experiments' path)."""
    fields = dict(num_envs=2, rollout_steps=32, epochs=2, minibatch_size=32)
    agent = policylab.PPO("CartPole-v1", seed=3, **fields).learn(640)
    ref = train_online(PPOAlgorithm, PPOConfig(**fields), env_id="CartPole-v1", seed=3, steps=640, eval_episodes=0,
                       progress=False)
    assert_same_state(agent.algo, ref["algorithm"])
    sac_fields = dict(learning_starts=64, batch_size=32, hidden=(16, 16))
    sac = policylab.SAC("Pendulum-v1", seed=1, **sac_fields).learn(160)
    ref = train_online(SACAlgorithm, SACConfig(**sac_fields), env_id="Pendulum-v1", seed=1, steps=160,
                       eval_episodes=0, progress=False)
    assert_same_state(sac.algo, ref["algorithm"])


def test_an_unpicklable_env_instance_trains_checkpoints_and_resumes(tmp_path, capfd):
    env = GoLeft()
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(env)
    agent = policylab.DQN(env, seed=0, learning_starts=20, hidden=(16,))
    agent.learn(200, run_dir=tmp_path / "run", checkpoints=4)
    assert len(list((tmp_path / "run" / "checkpoints").glob("*.pt"))) == 2  # keep-last 2 of 4 + final
    assert "cannot be pickled" in capfd.readouterr().err
    assert agent.num_timesteps == 200
    # the same call again: the run is complete and says so, nothing is trained twice
    before = params(agent.algo)
    again = policylab.DQN(GoLeft(), seed=0, learning_starts=20, hidden=(16,)).learn(200, run_dir=tmp_path / "run")
    assert "already complete" in capfd.readouterr().err
    assert all(torch.equal(before[k], v) for k, v in params(again.algo).items())
    # fresh=True starts over: a new run that ends in the same weights (same seed, same env)
    fresh = policylab.DQN(GoLeft(), seed=0, learning_starts=20, hidden=(16,)).learn(200, run_dir=tmp_path / "run",
                                                                                   fresh=True)
    assert "already complete" not in capfd.readouterr().err
    assert all(torch.equal(before[k], v) for k, v in params(fresh.algo).items())


def test_dqn_learns_a_user_env_against_a_random_baseline():
    """Margin fixed before the run: a random policy scores 5 of 10 in expectation; learning must reach 9."""
    agent = policylab.DQN(GoLeft(), seed=0, learning_starts=100, hidden=(32,), eps_decay_updates=300,
                          target_every=50, lr=1e-3)
    random_return = episode_returns(RandomAgent(), GoLeft, episodes=20).mean()
    agent.learn(1500)
    learned = episode_returns(agent.algo, GoLeft, episodes=5).mean()
    assert random_return < 7 and learned >= 9, (random_return, learned)


class RandomAgent:
    def __init__(self):
        self.rng = np.random.default_rng(0)

    def act(self, obs, deterministic=True):
        return self.rng.integers(0, 2, len(obs))


def test_predict_takes_one_observation_or_a_batch():
    agent = policylab.SAC(Reach, seed=0, learning_starts=10, hidden=(8,))
    one = agent.predict(np.zeros(2))
    assert one.shape == (1,) and -2 <= one[0] <= 2
    batch = agent.predict(np.zeros((5, 2)))
    assert batch.shape == (5, 1)
    assert np.allclose(batch[0], one)
    assert agent.predict([0.0, 0.0]).shape == (1,)  # lists work too
    with pytest.raises(ConfigError, match=r"obs has shape \(3,\): expected one observation of shape \(2,\) or a "
                                          r"batch of shape \(n, 2\)"):
        agent.predict(np.zeros(3))
    with pytest.raises(ConfigError, match="obs has shape"):
        agent.predict(np.zeros((4, 3)))
    discrete = policylab.PPO(GoLeft(), seed=0, num_envs=1)  # an instance that cannot be copied: one env
    assert discrete.predict(np.zeros(2)).shape == () and discrete.predict(np.zeros((3, 2))).shape == (3,)


SAVED_PROGRAM = """
import sys, numpy as np, policylab
agent = policylab.{cls}.load(sys.argv[1])
print(repr(agent.predict(np.array([0.5, 0.2], np.float32)).tolist()))
print(repr(agent.predict(np.array([[0.5, 0.2], [-0.5, 0.4]], np.float32)).tolist()))
"""


@pytest.mark.parametrize("cls, env", [("PPO", GoLeft), ("TD3", Reach), ("SAC", Reach)])
def test_a_saved_agent_loads_and_acts_in_a_process_that_has_no_env(tmp_path, cls, env):
    """The loading process never imports the test's env module nor registers anything."""
    agent = getattr(policylab, cls)(env, seed=0, **({} if cls == "PPO" else {"learning_starts": 10,
                                                                               "hidden": (8,)}))
    agent.learn(64 if cls != "PPO" else 2048)
    path = agent.save(tmp_path / "agent.pt")
    proc = subprocess.run([sys.executable, "-c", SAVED_PROGRAM.format(cls=cls), str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, batch = (eval(line) for line in proc.stdout.strip().splitlines())
    assert one == agent.predict(np.array([0.5, 0.2], np.float32)).tolist()
    assert batch == agent.predict(np.array([[0.5, 0.2], [-0.5, 0.4]], np.float32)).tolist()
    with pytest.raises(ConfigError, match="loaded without an environment; call set_env"):
        getattr(policylab, cls).load(path).learn(100)
    with pytest.raises(Exception, match="written by algorithm"):
        (policylab.DQN if cls != "DQN" else policylab.PPO).load(path)


def test_a_loaded_agent_learns_on_after_set_env(tmp_path):
    agent = policylab.DQN(GoLeft(), seed=0, learning_starts=20, hidden=(8,)).learn(100)
    loaded = policylab.DQN.load(agent.save(tmp_path / "dqn.pt"), env=GoLeft())
    loaded.learn(100)
    assert loaded.num_timesteps == 100
    with pytest.raises(ConfigError, match=r"env: its action space Box\(-2.0, 2.0, \(1,\), float32\) is not the "
                                          r"agent's Discrete\(2\)"):
        loaded.set_env(Reach())


def test_factories_and_sync_vector_envs():
    agent = policylab.PPO(lambda: GoLeft(), seed=0, num_envs=3, rollout_steps=16).learn(480)
    assert agent.num_timesteps == 480
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    agent = policylab.PPO(vec, seed=0, rollout_steps=16)
    assert agent.cfg.num_envs == 2
    agent.learn(320)
    assert agent.num_timesteps == 320
    with pytest.raises(ConfigError, match="num_envs = 3 does not fit the given vector env of 2 envs"):
        policylab.PPO(vec, num_envs=3)
    with pytest.raises(ConfigError, match="returned int, not a gymnasium.Env"):
        policylab.PPO(lambda: 3)
    with pytest.raises(ConfigError, match="must be an environment id, a gymnasium.Env, a factory"):
        policylab.PPO(3.5)


def test_learn_twice_continues_and_a_callback_can_stop_it():
    agent = policylab.SAC(Reach(), seed=0, learning_starts=10, hidden=(8,), batch_size=8)
    agent.learn(50)
    buffer_before = agent.source.buffer.capacity
    agent.learn(100)
    assert agent.num_timesteps == 150 and agent.source.buffer.capacity > buffer_before
    assert agent.source.buffer.size == 150
    events = []

    def stop_after_two_logs(event, step, trainer):
        events.append((event, step))
        return False if sum(e == "log" for e, _ in events) >= 2 else None

    agent = policylab.PPO(GoLeft(), seed=0, rollout_steps=8, num_envs=1).learn(800, stop_after_two_logs)
    assert agent.last_summary["stopped_by"] == "callback"
    assert agent.last_summary["steps"] == 2  # log_every is 1 update here
    assert events[-1][0] == "end"


def test_bad_envs_and_configs_get_one_line():
    with pytest.raises(ConfigError, match="instance cannot be copied into a second environment.*pass a factory"):
        policylab.PPO(GoLeft(), num_envs=2)
    with pytest.raises(ConfigError, match=r"observation space Dict\(.*\) is not supported \(key 'b'\)"):
        policylab.PPO(DictObs, num_envs=1)  # a Dict of a Box and a Graph space
    with pytest.raises(ConfigError, match=r"PPOConfig.lr = -1.0 is not allowed"):
        policylab.PPO("CartPole-v1", lr=-1.0)
    with pytest.raises(Exception, match="unknown environment 'CartPol-v1'"):
        policylab.PPO("CartPol-v1")
    with pytest.raises(ConfigError, match="steps = 0 is not allowed"):
        policylab.PPO("CartPole-v1").learn(0)
    with pytest.raises(ConfigError, match="seed"):
        policylab.PPO("CartPole-v1", seed=-1)
