"""Run by test_kill_resume.py in a subprocess: train, and SIGKILL itself after one checkpoint."""

import os
import signal
import sys

from policylab.core.run import RunDir
from policylab.core.seeding import set_threads
from policylab.rl import PPO, SAC, PPOConfig, SACConfig, train_online

SETUPS = {
    "ppo": (PPO, PPOConfig(num_envs=4, rollout_steps=32, minibatch_size=64, epochs=2), "CartPole-v1", 128 * 8),
    "sac": (SAC, SACConfig(learning_starts=100, batch_size=64, hidden=(32, 32)), "Pendulum-v1", 500),
}

if __name__ == "__main__":
    algo, root, name, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    set_threads(1)
    algo_cls, cfg, env_id, steps = SETUPS[algo]

    def kill_after_checkpoint(event, step, trainer):
        if event == "checkpoint" and step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train_online(algo_cls, cfg, env_id=env_id, seed=3, steps=steps, run=RunDir(root, name, "main", 3),
                 eval_episodes=2, evals=2, checkpoints=2, progress=False, callbacks=(kill_after_checkpoint,))
