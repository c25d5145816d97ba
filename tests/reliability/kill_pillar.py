"""Run by test_kill_pillars.py in a subprocess: IQL (offline) or GRPO (language model) training, SIGKILLed
right after the checkpoint at a given step.

    python kill_pillar.py ALGO ROOT KILL_AT      (ALGO iql or grpo; KILL_AT -1: never)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

from policylab.core.run import RunDir
from policylab.core.seeding import set_threads


def tiny_pendulum(folder: Path) -> Path:
    """20 random-action Pendulum episodes of 50 steps, built once from a fixed seed."""
    import gymnasium

    from policylab.data import Episode, save_dataset

    target = folder / "tiny-pendulum"
    if target.with_suffix(".parquet").exists():
        return target
    env, rng, episodes = gymnasium.make("Pendulum-v1", max_episode_steps=50), np.random.default_rng(0), []
    for i in range(20):
        obs, _ = env.reset(seed=i)
        o, a, r = [obs], [], []
        for _ in range(50):
            action = rng.uniform(-2, 2, 1).astype(np.float32)
            obs, reward, term, trunc, _ = env.step(action)
            o.append(obs), a.append(action), r.append(reward)
            if term or trunc:
                break
        T = len(a)
        episodes.append(Episode(np.array(o, np.float32), np.array(a, np.float32), np.array(r, np.float32),
                                np.zeros(T, bool), np.eye(T, dtype=bool)[-1]))
    return save_dataset(target, episodes, {"env_id": "Pendulum-v1", "ref_min_score": -1500.0,
                                           "ref_max_score": -150.0}).with_suffix("")


def main(algo: str, root: str, kill_at: int) -> None:
    set_threads(1)

    def kill_after_checkpoint(event, step, trainer):
        if event == "checkpoint" and step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    run = RunDir(root, algo, "main", 0)
    if algo == "iql":
        from policylab.offline import IQL, IQLConfig, train_offline

        data = tiny_pendulum(Path(root))
        train_offline(IQL, IQLConfig(hidden=(32, 32)), env_id=data, seed=0, steps=300, run=run, evals=3,
                      eval_episodes=2, checkpoints=6, progress=False, callbacks=(kill_after_checkpoint,))
    else:
        from policylab.lm import GRPOConfig
        from policylab.lm.trainer import train_rlvr

        cfg = GRPOConfig(base_model="tiny-gcd", prompts_per_step=4, group_size=4, lr=1e-3, eval_prompts=20,
                         eval_ks=(1,))
        train_rlvr(cfg, env_id="gcd", seed=0, steps=8, run=run, evals=2, checkpoints=4, progress=False,
                   callbacks=(kill_after_checkpoint,))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
