"""The showcase: PPO on CartPole-v1 and SAC on Pendulum-v1, each against a random policy.

Hyperparameters follow the RL Baselines3 Zoo's tuned settings for these two tasks (the same
ones `benchmarks/online_throughput.py` gives Stable-Baselines3), so the numbers are comparable.
"""

from __future__ import annotations

from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir, read_metrics
from policylab.envs.factory import make_env
from policylab.rl.evaluate import RandomAgent, evaluate_policy
from policylab.rl.ppo import PPO, PPOConfig
from policylab.rl.sac import SAC, SACConfig
from policylab.rl.train import eval_curve, train_online

CARTPOLE_PPO = PPOConfig(num_envs=8, rollout_steps=32, minibatch_size=256, epochs=20, gamma=0.98,
                         gae_lambda=0.8, lr=1e-3, anneal_lr=True, clip_coef=0.2, anneal_clip=True, ent_coef=0.0)
PENDULUM_SAC = SACConfig(lr=1e-3, learning_starts=1000, hidden=(64, 64))
STEPS = {"quick": {"CartPole-v1": 10_000, "Pendulum-v1": 2_000},
         "full": {"CartPole-v1": 100_000, "Pendulum-v1": 15_000}}
EVAL_EPISODES = 10

ARMS = {
    "ppo": {"algo": "ppo", "env": "CartPole-v1", "config": CARTPOLE_PPO},
    "random-cartpole": {"algo": "random", "env": "CartPole-v1"},
    "sac": {"algo": "sac", "env": "Pendulum-v1", "config": PENDULUM_SAC},
    "random-pendulum": {"algo": "random", "env": "Pendulum-v1"},
}


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    spec = ARMS[arm]
    env_id = spec["env"]
    eval_seed = 10_000 + 100 * seed
    if spec["algo"] == "random":
        agent = RandomAgent(make_env(env_id).action_space, seed)
        return ArmResult(evaluate_policy(agent, env_id, EVAL_EPISODES, seed=eval_seed)["return"])
    algo_cls = PPO if spec["algo"] == "ppo" else SAC
    summary = train_online(algo_cls, spec["config"], env_id=env_id, seed=seed, steps=STEPS[budget][env_id],
                           run=run, eval_episodes=EVAL_EPISODES, evals=10, progress=False)
    return ArmResult(summary["eval"]["eval/return"], eval_curve(read_metrics(run.metrics_path)))


EXPERIMENTS.add("quickstart", Experiment(
    id="quickstart",
    claim="PPO solves CartPole-v1 and SAC learns Pendulum-v1 within small step budgets, "
          "each far above a uniformly random policy.",
    arms={name: {k: (v.__dict__ if k == "config" else v) for k, v in spec.items()} for name, spec in ARMS.items()},
    comparisons=(Comparison("ppo", "random-cartpole", "PPO vs random (CartPole-v1)"),
                 Comparison("sac", "random-pendulum", "SAC vs random (Pendulum-v1)")),
    metric=f"mean return over {EVAL_EPISODES} deterministic evaluation episodes on held-out env seeds",
    metric_label="evaluation return", direction="higher",
    seeds={"quick": (0, 1), "full": (0, 1, 2)},
    run_arm=run_arm,
    budgets_note={b: ", ".join(f"{env} {n:,} env steps" for env, n in s.items()) for b, s in STEPS.items()},
    kind="showcase",
))
