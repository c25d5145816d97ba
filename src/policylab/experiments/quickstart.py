"""The showcase: PPO on CartPole-v1 and SAC on Pendulum-v1, each against a random policy; GRPO
raising a tiny language model's held-out accuracy on gcd over its pretrained base (no RL); BAPO
against fixed-clip GRPO when rollouts are stale (4 batches old, each used for 2 epochs); and IQL
against behaviour cloning on pendulum-mix5 (5% expert episodes), a dataset built here, and the same
BC drawing its batches by trajectory return (traj_weight's RW sampler).

Hyperparameters follow the RL Baselines3 Zoo's tuned settings for these two tasks (the same
ones `benchmarks/online_throughput.py` gives Stable-Baselines3), so the numbers are comparable.
"""

from __future__ import annotations

from policylab.catalog import build_dataset
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir, read_metrics
from policylab.envs.evaluate import RandomAgent, evaluate_policy
from policylab.envs.factory import make_env
from policylab.lm import BAPOConfig, GRPOConfig, train_rlvr
from policylab.lm.evaluate import evaluate_lm
from policylab.lm.pretrain import load_policy
from policylab.lm.tasks import distinct_problems, get_task
from policylab.lm.trainer import TEST_SET_SEED, accuracy_curve
from policylab.offline import BC, IQL, BCConfig, IQLConfig, train_offline
from policylab.rl.ppo import PPO, PPOConfig
from policylab.rl.sac import SAC, SACConfig
from policylab.rl.train import eval_curve, train_online

CARTPOLE_PPO = PPOConfig(num_envs=8, rollout_steps=32, minibatch_size=256, epochs=20, gamma=0.98,
                         gae_lambda=0.8, lr=1e-3, anneal_lr=True, clip_coef=0.2, anneal_clip=True, ent_coef=0.0)
PENDULUM_SAC = SACConfig(lr=1e-3, learning_starts=1000, hidden=(64, 64))
GCD_GRPO = GRPOConfig(base_model="tiny-gcd")
STALE = {"staleness": 4, "epochs": 2}  # rollouts from the policy 4 batches old, each batch used twice
GCD_STALE = {"grpo-stale": GRPOConfig(base_model="tiny-gcd", **STALE),
             "bapo-stale": BAPOConfig(base_model="tiny-gcd", **STALE)}
OFFLINE = {"iql": (IQL, IQLConfig(hidden=(64, 64))), "bc": (BC, BCConfig(hidden=(64, 64))),
           "bc-rw": (BC, BCConfig(hidden=(64, 64), sampler="rw"))}
STEPS = {"quick": {"CartPole-v1": 10_000, "Pendulum-v1": 2_000, "gcd": 20, "pendulum-mix5": 500},
         "full": {"CartPole-v1": 100_000, "Pendulum-v1": 15_000, "gcd": 150, "pendulum-mix5": 5_000}}
EVAL_EPISODES = 10
UNITS = {"gcd": "updates", "pendulum-mix5": "gradient steps"}

ARMS = {
    "ppo": {"algo": "ppo", "env": "CartPole-v1", "config": CARTPOLE_PPO},
    "random-cartpole": {"algo": "random", "env": "CartPole-v1"},
    "sac": {"algo": "sac", "env": "Pendulum-v1", "config": PENDULUM_SAC},
    "random-pendulum": {"algo": "random", "env": "Pendulum-v1"},
    "grpo": {"algo": "grpo", "env": "gcd", "config": GCD_GRPO},
    "base-lm": {"algo": "base", "env": "gcd", "config": GCD_GRPO},
    "bapo-stale": {"algo": "bapo", "env": "gcd", "config": GCD_STALE["bapo-stale"]},
    "grpo-stale": {"algo": "grpo", "env": "gcd", "config": GCD_STALE["grpo-stale"]},
    "iql": {"algo": "iql", "env": "pendulum-mix5", "config": OFFLINE["iql"][1]},
    "bc": {"algo": "bc", "env": "pendulum-mix5", "config": OFFLINE["bc"][1]},
    "bc-rw": {"algo": "bc", "env": "pendulum-mix5", "config": OFFLINE["bc-rw"][1]},
}


def run_offline_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    """Evaluation return in Pendulum-v1 after training on pendulum-mix5 (built here when missing)."""
    algo_cls, cfg = OFFLINE[arm]
    summary = train_offline(algo_cls, cfg, env_id=build_dataset("pendulum-mix5"), seed=seed,
                            steps=STEPS[budget]["pendulum-mix5"], run=run, evals=5, eval_episodes=EVAL_EPISODES,
                            progress=False)
    records = read_metrics(run.metrics_path)
    curve = [(r["gradient_steps"], r["eval/return"]) for r in records if "eval/return" in r]
    return ArmResult(summary["eval"]["eval/return"], curve)


def run_lm_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    """Held-out greedy accuracy on gcd: after GRPO, or of the pretrained base itself (no RL)."""
    cfg = ARMS[arm]["config"]
    if arm == "base-lm":
        policy, tokenizer = load_policy(cfg.base_model, progress=False)
        task = get_task("gcd")
        test = distinct_problems(task, cfg.eval_prompts, "test", seed=TEST_SET_SEED)
        return ArmResult(evaluate_lm(policy, tokenizer, task, test, cfg.max_new_tokens, ks=())["greedy_acc"])
    summary = train_rlvr(cfg, env_id="gcd", seed=seed, steps=STEPS[budget]["gcd"], run=run, evals=5,
                         progress=False, name=ARMS[arm]["algo"])
    curve = accuracy_curve(summary, read_metrics(run.metrics_path))
    return ArmResult(summary["eval"]["eval/greedy_acc"], curve)


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    spec = ARMS[arm]
    if spec["env"] == "gcd":
        return run_lm_arm(arm, seed, budget, run)
    if spec["env"] == "pendulum-mix5":
        return run_offline_arm(arm, seed, budget, run)
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
          "each far above a uniformly random policy; GRPO raises a tiny pretrained language model's "
          "held-out accuracy on gcd above its base, and with stale rollouts BAPO's adaptive clipping does "
          "better than GRPO's fixed clip; IQL learns a better Pendulum policy than behaviour "
          "cloning from a dataset of 95% random episodes, and return-weighted trajectory sampling lifts BC there.",
    arms={name: {k: (v.__dict__ if k == "config" else v) for k, v in spec.items()} for name, spec in ARMS.items()},
    comparisons=(Comparison("ppo", "random-cartpole", "PPO vs random (CartPole-v1)"),
                 Comparison("sac", "random-pendulum", "SAC vs random (Pendulum-v1)"),
                 Comparison("grpo", "base-lm", "GRPO vs base model (gcd)", metric_label="held-out greedy accuracy",
                            curve_x="sampled responses"),
                 Comparison("bapo-stale", "grpo-stale", "BAPO vs GRPO, stale rollouts (gcd)",
                            metric_label="held-out greedy accuracy", curve_x="sampled responses"),
                 Comparison("iql", "bc", "IQL vs BC (pendulum-mix5)", curve_x="gradient steps"),
                 Comparison("bc-rw", "bc", "BC with return-weighted trajectories vs BC (pendulum-mix5)",
                            curve_x="gradient steps")),
    metric=f"mean return over {EVAL_EPISODES} deterministic evaluation episodes on held-out env seeds "
           "(online and offline RL arms); greedy exact-match accuracy on 200 held-out gcd questions (language-model "
           "arms)",
    metric_label="evaluation return", direction="higher",
    seeds={"quick": (0, 1), "full": (0, 1, 2)},
    run_arm=run_arm,
    budgets_note={b: ", ".join(f"{env} {n:,} {UNITS.get(env, 'env steps')}" for env, n in s.items())
                  for b, s in STEPS.items()},
    kind="showcase",
))
