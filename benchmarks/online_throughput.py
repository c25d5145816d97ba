"""PPO on CartPole-v1 and SAC on Pendulum-v1: policylab against Stable-Baselines3, side by side.

Both libraries get the RL Baselines3 Zoo's hyperparameters and network sizes for these tasks,
one torch thread, the same environment-step budget, and the same evaluation (20 deterministic
episodes on held-out seeds, with policylab's evaluator for both). Runs alternate between the
libraries seed by seed, so that both see the same machine state. The figure of merit is the
ratio of environment steps per second (policylab / SB3) and the final returns.

    python benchmarks/online_throughput.py [--seeds 3] [--sac-seeds 2] [--out results]
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from policylab.core.atomic import atomic_write
from policylab.core.report import git_commit, write_benchmark
from policylab.core.seeding import set_threads
from policylab.envs.evaluate import evaluate_policy
from policylab.rl import PPO, SAC, PPOConfig, SACConfig, train_online

EVAL_EPISODES, EVAL_SEED = 20, 50_000
TASKS = {
    # RL Baselines3 Zoo, hyperparams/ppo.yml (CartPole-v1) and sac.yml (Pendulum-v1)
    "ppo-CartPole-v1": {"env": "CartPole-v1", "steps": 100_000},
    "sac-Pendulum-v1": {"env": "Pendulum-v1", "steps": 20_000},
}
POLICYLAB = {
    "ppo-CartPole-v1": (PPO, PPOConfig(num_envs=8, rollout_steps=32, minibatch_size=256, epochs=20, gamma=0.98,
                                       gae_lambda=0.8, lr=1e-3, anneal_lr=True, clip_coef=0.2, anneal_clip=True,
                                       ent_coef=0.0, hidden=(64, 64), activation="tanh")),
    "sac-Pendulum-v1": (SAC, SACConfig(lr=1e-3, learning_starts=100, batch_size=256, buffer_size=1_000_000,
                                       tau=0.005, gamma=0.99, hidden=(256, 256))),
}


class SB3Actor:
    def __init__(self, model):
        self.model = model

    def act(self, obs, deterministic=True):
        return self.model.predict(obs, deterministic=deterministic)[0]


def run_sb3(task: str, seed: int) -> tuple[float, int, SB3Actor]:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.env_util import make_vec_env

    spec = TASKS[task]
    if task.startswith("ppo"):
        model = SB3PPO("MlpPolicy", make_vec_env(spec["env"], n_envs=8, seed=seed), n_steps=32, batch_size=256,
                       gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                       learning_rate=lambda progress: progress * 1e-3, clip_range=lambda progress: progress * 0.2,
                       seed=seed, device="cpu", verbose=0)
    else:
        model = SB3SAC("MlpPolicy", spec["env"], learning_rate=1e-3, seed=seed, device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=spec["steps"])
    return time.perf_counter() - start, int(model.num_timesteps), SB3Actor(model)


def run_policylab(task: str, seed: int):
    algo_cls, cfg = POLICYLAB[task]
    start = time.perf_counter()
    summary = train_online(algo_cls, cfg, env_id=TASKS[task]["env"], seed=seed, steps=TASKS[task]["steps"],
                           eval_episodes=0, progress=False)
    return time.perf_counter() - start, int(summary["env_steps"]), summary["algorithm"]


def measure(task: str, seeds: list[int]) -> list[dict]:
    rows = []
    for seed in seeds:
        for lib, runner in (("policylab", run_policylab), ("stable-baselines3", run_sb3)):
            wall, steps, agent = runner(task, seed)
            ret = evaluate_policy(agent, TASKS[task]["env"], EVAL_EPISODES, EVAL_SEED)["return"]
            rows.append({"task": task, "library": lib, "seed": seed, "wall_s": wall, "env_steps": steps,
                         "steps_per_s": steps / wall, "return": ret})
            print(f"{task:18s} {lib:18s} seed {seed}: {steps / wall:8.1f} steps/s, return {ret:8.1f}", flush=True)
    return rows


def summarize(rows: list[dict]) -> dict:
    out = {}
    for task in TASKS:
        mine = [r for r in rows if r["task"] == task and r["library"] == "policylab"]
        peer = [r for r in rows if r["task"] == task and r["library"] == "stable-baselines3"]
        if not mine:
            continue
        ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(mine, peer)]  # paired by seed
        out[task] = {
            "speed_ratio_per_seed": ratios, "speed_ratio_median": float(np.median(ratios)),
            "return_policylab": float(np.mean([r["return"] for r in mine])),
            "return_sb3": float(np.mean([r["return"] for r in peer])),
            "target": ">= 1.5x SB3 steps/s with equal or better return",
            "speed_target_met": bool(np.median(ratios) >= 1.5),
        }
    return out


def render(result: dict) -> str:
    lines = ["# Online throughput: policylab vs Stable-Baselines3", "",
             f"Same hyperparameters and network sizes (RL Baselines3 Zoo), 1 torch thread, {result['machine']}.",
             "Ratios are policylab / SB3, paired by seed, measured in the same run.", "",
             "| task | env steps | speed ratio (median) | per seed | return policylab | return SB3 | 1.5x met |",
             "|---|---|---|---|---|---|---|"]
    for task, s in result["summary"].items():
        per_seed = ", ".join(f"{r:.2f}" for r in s["speed_ratio_per_seed"])
        met = "yes" if s["speed_target_met"] else "no"
        lines.append(f"| {task} | {TASKS[task]['steps']:,} | **{s['speed_ratio_median']:.2f}x** | {per_seed} "
                     f"| {s['return_policylab']:.1f} | {s['return_sb3']:.1f} | {met} |")
    lines += ["", f"Commit `{result['git_commit']}`. Reproduce: `{result['command']}`", "",
              "![throughput](online_throughput.png)"]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result["summary"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for lib, offset in (("policylab", -0.2), ("stable-baselines3", 0.2)):
        speeds = [np.mean([r["steps_per_s"] for r in result["runs"] if r["task"] == t and r["library"] == lib])
                  for t in tasks]
        returns = [np.mean([r["return"] for r in result["runs"] if r["task"] == t and r["library"] == lib])
                   for t in tasks]
        axes[0].bar(np.arange(len(tasks)) + offset, speeds, width=0.4, label=lib)
        axes[1].bar(np.arange(len(tasks)) + offset, returns, width=0.4, label=lib)
    for ax, title in zip(axes, ("environment steps per second", "final evaluation return")):
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds for PPO on CartPole")
    parser.add_argument("--sac-seeds", type=int, default=2, help="seeds for SAC on Pendulum (the slow one)")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    set_threads(1)
    start = time.perf_counter()
    rows = measure("ppo-CartPole-v1", list(range(args.seeds))) + measure("sac-Pendulum-v1", list(range(args.sac_seeds)))
    import stable_baselines3

    result = {
        "benchmark": "online_throughput", "runs": rows, "summary": summarize(rows),
        "versions": {"policylab": __import__("policylab").__version__, "torch": torch.__version__,
                     "stable_baselines3": stable_baselines3.__version__, "python": platform.python_version()},
        "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
        "git_commit": git_commit(), "command": shlex.join(["python", *sys.argv]),
        "wall_time_s": time.perf_counter() - start,
    }
    write_benchmark(args.out, "online_throughput", result, render(result), plot)
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
