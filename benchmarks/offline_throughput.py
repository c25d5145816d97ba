"""TD3+BC, IQL and CQL offline (pendulum-mix5 by default): update throughput and scores, policylab vs d3rlpy.

Both libraries get the same networks (cfg.hidden = two ReLU layers of 256 for actor, twin critics
and IQL's value), batch 256, the hyper-parameters below, one torch thread, CPU, and the same data:
policylab's `Prepared` dataset (standardized states, actions in [-1, 1]) is handed to d3rlpy as an
MDPDataset, so neither library pays for a preprocessing the other skips.

Throughput: each library's own update call, `algo.update(batch)`, timed over `--updates` gradient
steps after a warm-up, on fresh learners. For d3rlpy that is `QLearningAlgoBase.update` on a
`TransitionMiniBatch`, the call its `fit` makes once per step (numpy -> torch conversion, critic,
actor and target steps, metrics as floats); for policylab it is the method's `update` on the
`UniformTransitions` batch dict. Batches are drawn before the clock starts from each library's own
sampler (a pool, cycled), so no data loading is timed on either side. A second figure, "with
sampling", times a quarter as many sampler + update steps, as each training loop runs them
(`UniformTransitions.sample()` against `ReplayBuffer.sample_transition_batch(256)`, which is what
d3rlpy's `fit` samples with). Libraries alternate within each repeat (policylab first on even
repeats, d3rlpy first on odd); ratios are policylab / d3rlpy, paired by repeat.

Roofline: one thread's float32 matmul FLOP/s on 256-wide layers ([256 x 256] @ [256 x 256] and a
batch-256 nn.Linear(256, 256), the faster of the two), against the FLOPs of one update (forward +
backward, counted with torch.utils.flop_counter.FlopCounterMode over two updates, since TD3+BC
steps its actor every other update) times updates/s.

Scores: `--score-steps` gradient steps per library and seed (policylab: `train_offline`; d3rlpy:
`fit` with logging off), then 10 deterministic episodes on the same seeds with policylab's
evaluator; d3rlpy's `predict` is wrapped with the same state standardization and action rescaling.
Normalized with the dataset's reference returns; "last" scores (after the final step).

Hyper-parameters (policylab config -> d3rlpy config):
  TD3+BC  lr -> actor/critic lr; alpha; policy_noise, noise_clip -> target_smoothing_sigma, _clip;
          policy_delay -> update_actor_interval; tau
  IQL     lr -> actor/critic lr; expectile; beta -> weight_temp; max_weight; tau; rewards x 1000 /
          (max - min episode return) -> ReturnBasedRewardScaler(multiplier=1000) with our returns
  CQL     lr -> critic lr; policy_lr -> actor and temperature lr; fixed alpha_c (alpha_learning_rate 0);
          conservative_weight = alpha_c (both Bellman terms are a full MSE per critic, CORL's form);
          num_sampled_actions -> n_action_samples; tau
Not matched (each library's own design): d3rlpy's episodes hold no final next observation, so it
drops the last transition of every time-limited episode (39,800 of 40,000 here); d3rlpy's IQL
steps Q and V with one Adam on the summed loss; d3rlpy's CQL backs up Q at the policy's mean
action at s' (ours samples a' ~ pi) and tunes exp(log alpha) (ours log alpha); Adam is each
library's default (d3rlpy: torch's per-tensor loop; policylab: the fused kernel).

    python benchmarks/offline_throughput.py [--updates 2000] [--repeats 3] [--score-steps 5000]
        [--score-seeds 2] [--algos td3_bc iql cql] [--quick] [--out results]

CQL's update costs ~15x TD3+BC's (its penalty evaluates both critics on 3 x 10 actions per state),
so CQL takes most of the run: at the defaults about an hour on one quiet core, the rest minutes.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from policylab.catalog import build_dataset
from policylab.core.atomic import atomic_write
from policylab.core.report import git_commit, write_benchmark
from policylab.core.seeding import seed_everything, set_threads
from policylab.data import OfflineData, UniformTransitions, load_dataset
from policylab.envs.evaluate import evaluate_policy
from policylab.offline import CQL, IQL, TD3BC, CQLConfig, IQLConfig, TD3BCConfig, train_offline
from policylab.offline.train import Prepared

DATASET = "pendulum-mix5"
EVAL_EPISODES, EVAL_SEED = 10, 50_000
POOL = 64  # pre-drawn batches per learner, cycled through the timed updates
ALGOS = {"td3_bc": (TD3BC, TD3BCConfig()), "iql": (IQL, IQLConfig()), "cql": (CQL, CQLConfig())}
TARGETS = {"speed": 2.0, "roofline": 0.60}
LIBS = ("policylab", "d3rlpy")


# -- d3rlpy, configured like policylab ------------------------------------------------------------

def d3rlpy_dataset(prepared: Prepared):
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    d = prepared.data
    ends = np.zeros(len(d), dtype=np.float32)
    ends[d.episode_starts[1:].numpy() - 1] = 1.0
    terminals = d.terminals.numpy().astype(np.float32)
    return MDPDataset(d.observations.numpy(), d.actions.numpy(), d.rewards.numpy().astype(np.float32),
                      terminals, timeouts=ends * (1.0 - terminals), action_space=ActionSpace.CONTINUOUS,
                      action_size=d.actions.shape[1])


def d3rlpy_config(name: str, prepared: Prepared):
    from d3rlpy.algos import CQLConfig as D3CQL
    from d3rlpy.algos import IQLConfig as D3IQL
    from d3rlpy.algos import TD3PlusBCConfig
    from d3rlpy.models import VectorEncoderFactory
    from d3rlpy.preprocessing import ReturnBasedRewardScaler

    cfg = ALGOS[name][1]
    encoder = VectorEncoderFactory(hidden_units=list(cfg.hidden), activation="relu")
    common = dict(batch_size=cfg.batch_size, gamma=cfg.gamma, tau=cfg.tau, actor_encoder_factory=encoder,
                  critic_encoder_factory=encoder, compile_graph=False)
    if name == "td3_bc":
        return TD3PlusBCConfig(**common, actor_learning_rate=cfg.lr, critic_learning_rate=cfg.lr, alpha=cfg.alpha,
                               target_smoothing_sigma=cfg.policy_noise, target_smoothing_clip=cfg.noise_clip,
                               update_actor_interval=cfg.policy_delay)
    if name == "iql":
        returns = prepared.raw.episode_returns()
        scaler = ReturnBasedRewardScaler(return_max=float(returns.max()), return_min=float(returns.min()),
                                         multiplier=1000.0) if cfg.normalize_rewards else None
        return D3IQL(**common, value_encoder_factory=encoder, actor_learning_rate=cfg.lr, critic_learning_rate=cfg.lr,
                     expectile=cfg.expectile, weight_temp=cfg.beta, max_weight=cfg.max_weight, reward_scaler=scaler)
    return D3CQL(**common, actor_learning_rate=cfg.policy_lr, critic_learning_rate=cfg.lr,
                 temp_learning_rate=cfg.policy_lr, alpha_learning_rate=0.0, initial_alpha=1.0,
                 conservative_weight=cfg.cql_alpha, n_action_samples=cfg.num_sampled_actions)


class D3rlpyPolicy:
    """d3rlpy's greedy action through the same maps as policylab's EnvPolicy."""

    def __init__(self, algo, prepared: Prepared):
        self.algo, self.prepared = algo, prepared

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        states = self.prepared.normalize(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        return self.prepared.scaler.to_env(self.algo.predict(states))


# -- learners: (update, sample) per library ---------------------------------------------------------

def make_learner(lib: str, name: str, prepared: Prepared, d3_data, seed: int):
    """A fresh learner as (update(batch), sample() -> batch)."""
    cfg = ALGOS[name][1]
    if lib == "policylab":
        seed_everything(seed)
        algo = ALGOS[name][0](prepared, cfg)
        return algo.update, UniformTransitions(prepared.data, cfg.batch_size, seed).sample
    algo = d3rlpy_algo(name, prepared, d3_data, seed)
    return algo.update, lambda: d3_data.sample_transition_batch(cfg.batch_size)


def d3rlpy_algo(name: str, prepared: Prepared, d3_data, seed: int, build: bool = True):
    import d3rlpy

    d3rlpy.seed(seed)
    algo = d3rlpy_config(name, prepared).create(device="cpu:0")
    if build:  # `fit` builds it otherwise
        algo.build_with_dataset(d3_data)
    return algo


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def throughput(lib: str, name: str, prepared: Prepared, d3_data, seed: int, updates: int, warmup: int) -> dict:
    update, sample = make_learner(lib, name, prepared, d3_data, seed)
    pool = [sample() for _ in range(min(POOL, updates))]
    for i in range(warmup):
        update(pool[i % len(pool)])
    updates_per_s = rate(lambda i: update(pool[i % len(pool)]), updates)
    steps_per_s = rate(lambda i: update(sample()), max(updates // 4, 1))
    return {"updates_per_s": updates_per_s, "steps_per_s": steps_per_s}


def flops_per_update(lib: str, name: str, prepared: Prepared, d3_data, n: int = 2) -> float:
    update, sample = make_learner(lib, name, prepared, d3_data, seed=0)
    batches = [sample() for _ in range(n)]
    with FlopCounterMode(display=False) as counter:
        for batch in batches:
            update(batch)
    return counter.get_total_flops() / n


def matmul_flops(reps: int, width: int = 256) -> dict[str, float]:
    """Best-of-5 single-thread float32 FLOP/s of [w x w] @ [w x w] and of a batch-w nn.Linear(w, w)."""
    a, b, out = torch.randn(width, width), torch.randn(width, width), torch.empty(width, width)
    layer, x = torch.nn.Linear(width, width), torch.randn(width, width)
    flops = 2 * width ** 3
    kernels = {"mm_256x256x256": lambda: torch.mm(a, b, out=out), "linear_b256_256x256": lambda: layer(x)}
    result = {}
    with torch.no_grad():
        for label, kernel in kernels.items():
            for _ in range(reps // 10 + 1):
                kernel()
            result[label] = max(flops * rate(lambda _, k=kernel: k(), reps) for _ in range(5))
    return result


def measure_throughput(names: list[str], prepared: Prepared, d3_data, updates: int, repeats: int,
                       warmup: int) -> list[dict]:
    rows = []
    for name in names:
        for rep in range(repeats):
            for lib in (LIBS if rep % 2 == 0 else LIBS[::-1]):
                r = throughput(lib, name, prepared, d3_data, rep, updates, warmup)
                rows.append({"algorithm": name, "library": lib, "repeat": rep, "updates": updates, **r})
                print(f"{name:7s} {lib:9s} repeat {rep}: {r['updates_per_s']:8.1f} updates/s, "
                      f"{r['steps_per_s']:8.1f} steps/s (with sampling)", flush=True)
    return rows


# -- final scores -----------------------------------------------------------------------------------

def train_and_score(lib: str, name: str, data: OfflineData, prepared: Prepared, d3_data, steps: int,
                    seed: int) -> dict:
    start = time.perf_counter()
    if lib == "policylab":
        cls, cfg = ALGOS[name]
        summary = train_offline(cls, cfg, env_id=data, seed=seed, steps=steps, evals=0, eval_episodes=0,
                                checkpoints=0, progress=False)
        policy = summary["policy"]
    else:
        from d3rlpy.logging import NoopAdapterFactory

        algo = d3rlpy_algo(name, prepared, d3_data, seed, build=False)
        algo.fit(d3_data, n_steps=steps, n_steps_per_epoch=steps, logger_adapter=NoopAdapterFactory(),
                 show_progress=False, save_interval=steps + 1)
        policy = D3rlpyPolicy(algo, prepared)
    wall = time.perf_counter() - start
    ret = evaluate_policy(policy, data.metadata["env_id"], EVAL_EPISODES, EVAL_SEED)["return"]
    return {"algorithm": name, "library": lib, "seed": seed, "steps": steps, "train_s": wall, "return": ret,
            "normalized_score": float(data.normalized_score(ret))}


def measure_scores(names: list[str], data: OfflineData, prepared: Prepared, d3_data, steps: int,
                   seeds: int) -> list[dict]:
    rows = []
    for name in names:
        for seed in range(seeds):
            for lib in (LIBS if seed % 2 == 0 else LIBS[::-1]):
                r = train_and_score(lib, name, data, prepared, d3_data, steps, seed)
                rows.append(r)
                print(f"{name:7s} {lib:9s} seed {seed}: normalized score {r['normalized_score']:6.1f} "
                      f"after {steps} steps ({r['train_s']:.0f} s)", flush=True)
    return rows


# -- summary and report -----------------------------------------------------------------------------

def summarize(names: list[str], speed: list[dict], scores: list[dict], flops: dict, roofline: float) -> dict:
    out = {}
    for name in names:
        def of(rows, lib, key, name=name):
            return [r[key] for r in rows if r["algorithm"] == name and r["library"] == lib]

        mine, peer = of(speed, "policylab", "updates_per_s"), of(speed, "d3rlpy", "updates_per_s")
        ratios = [a / b for a, b in zip(mine, peer)]
        step_ratios = [a / b for a, b in zip(of(speed, "policylab", "steps_per_s"), of(speed, "d3rlpy", "steps_per_s"))]
        fraction = {lib: flops[name][lib] * float(np.median(of(speed, lib, "updates_per_s"))) / roofline
                    for lib in LIBS}
        score = {lib: float(np.mean(of(scores, lib, "normalized_score"))) for lib in LIBS}
        out[name] = {
            "updates_per_s": {lib: float(np.median(of(speed, lib, "updates_per_s"))) for lib in LIBS},
            "speed_ratio_per_repeat": ratios, "speed_ratio_median": float(np.median(ratios)),
            "speed_ratio_range": [min(ratios), max(ratios)],
            "step_ratio_per_repeat": step_ratios, "step_ratio_median": float(np.median(step_ratios)),
            "flops_per_update": flops[name], "roofline_fraction": fraction,
            "normalized_score": score, "normalized_score_per_seed": {lib: of(scores, lib, "normalized_score")
                                                                     for lib in LIBS},
            "speed_target_met": bool(np.median(ratios) >= TARGETS["speed"]),
            "roofline_target_met": bool(fraction["policylab"] >= TARGETS["roofline"]),
            "score_target_met": bool(score["policylab"] >= score["d3rlpy"]),
        }
    return out


def render(result: dict) -> str:
    yes = {True: "yes", False: "no"}
    s, mm = result["summary"], result["matmul_flops"]
    lines = [f"# Offline throughput: policylab vs d3rlpy {result['versions']['d3rlpy']}", "",
             f"Dataset `{result['dataset']}`, batch 256, hidden (256, 256), 1 torch thread, CPU, {result['machine']}.",
             f"Targets: policylab >= {TARGETS['speed']:g}x d3rlpy updates/s, >= {TARGETS['roofline']:.0%} of the "
             "single-thread matmul roofline, final normalized scores >= d3rlpy's at the same step budget.", "",
             f"## Updates per second ({result['updates']} timed updates after {result['warmup']} warm-up, "
             f"{result['repeats']} repeats, libraries alternated; 'with sampling': {max(result['updates'] // 4, 1)} "
             "steps of each library's own sampler + update)", "",
             "| algorithm | policylab | d3rlpy | ratio (median) | per repeat | with sampling (median) | 2x met |",
             "|---|---|---|---|---|---|---|"]
    for name, r in s.items():
        per = ", ".join(f"{x:.2f}" for x in r["speed_ratio_per_repeat"])
        lines.append(f"| {name} | {r['updates_per_s']['policylab']:.0f} | {r['updates_per_s']['d3rlpy']:.0f} "
                     f"| **{r['speed_ratio_median']:.2f}x** | {per} | {r['step_ratio_median']:.2f}x "
                     f"| {yes[r['speed_target_met']]} |")
    lines += ["", "## Fraction of the matmul roofline", "",
              f"Single-thread float32: [256x256]@[256x256] {mm['mm_256x256x256'] / 1e9:.1f} GFLOP/s, "
              f"batch-256 Linear(256, 256) {mm['linear_b256_256x256'] / 1e9:.1f} GFLOP/s; roofline = "
              f"{result['roofline_flops'] / 1e9:.1f} GFLOP/s. FLOPs are forward + backward matmuls "
              "(FlopCounterMode) per update.", "",
              "| algorithm | MFLOP/update policylab | MFLOP/update d3rlpy | policylab | d3rlpy | 60% met |",
              "|---|---|---|---|---|---|"]
    for name, r in s.items():
        f, fr = r["flops_per_update"], r["roofline_fraction"]
        lines.append(f"| {name} | {f['policylab'] / 1e6:.1f} | {f['d3rlpy'] / 1e6:.1f} | **{fr['policylab']:.1%}** "
                     f"| {fr['d3rlpy']:.1%} | {yes[r['roofline_target_met']]} |")
    lines += ["", f"## Final normalized score after {result['score_steps']:,} gradient steps "
              f"({result['score_seeds']} seed(s), {EVAL_EPISODES} episodes each, same evaluator and seeds)", "",
              "| algorithm | policylab | d3rlpy | per seed policylab | per seed d3rlpy | >= met |",
              "|---|---|---|---|---|---|"]
    for name, r in s.items():
        sc, per = r["normalized_score"], r["normalized_score_per_seed"]
        lines.append(f"| {name} | {sc['policylab']:.1f} | {sc['d3rlpy']:.1f} "
                     f"| {', '.join(f'{x:.1f}' for x in per['policylab'])} "
                     f"| {', '.join(f'{x:.1f}' for x in per['d3rlpy'])} | {yes[r['score_target_met']]} |")
    lines += ["", "How each side is timed, the hyper-parameter map and what could not be matched: the docstring "
              "of `benchmarks/offline_throughput.py`.", "",
              f"Commit `{result['git_commit']}`. Reproduce: `{result['command']}`", "",
              f"![throughput]({result['name']}.png)"]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["summary"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for lib, offset in (("policylab", -0.2), ("d3rlpy", 0.2)):
        speeds = [[r["updates_per_s"] for r in result["runs"] if r["algorithm"] == n and r["library"] == lib]
                  for n in names]
        centre = np.array([np.median(v) for v in speeds])
        spread = np.array([[c - min(v) for c, v in zip(centre, speeds)], [max(v) - c for c, v in zip(centre, speeds)]])
        axes[0].bar(np.arange(len(names)) + offset, centre, width=0.4, yerr=spread, capsize=3, label=lib)
        scores = [result["summary"][n]["normalized_score"][lib] for n in names]
        axes[1].bar(np.arange(len(names)) + offset, scores, width=0.4, label=lib)
    for ax, title in zip(axes, ("updates per second (median, min-max; log scale)",
                                f"normalized score after {result['score_steps']:,} steps")):
        ax.set_xticks(range(len(names)), names)
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")  # CQL's update is ~15x the others'
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=None, help="timed updates per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per algorithm and library (default 3)")
    parser.add_argument("--score-steps", type=int, default=None, help="gradient steps before scoring (default 5000)")
    parser.add_argument("--score-seeds", type=int, default=None, help="seeds for the scores (default 2)")
    parser.add_argument("--algos", nargs="+", choices=list(ALGOS), default=list(ALGOS))
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--quick", action="store_true", help="tiny numbers to check that the script runs")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    quick = args.quick

    def pick(value, full, small):
        return value if value is not None else (small if quick else full)

    updates, repeats = pick(args.updates, 2000, 20), pick(args.repeats, 3, 2)
    score_steps, score_seeds = pick(args.score_steps, 5000, 100), pick(args.score_seeds, 2, 1)
    warmup = 5 if quick else 200
    import d3rlpy
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # d3rlpy's info logs
    set_threads(1)
    start = time.perf_counter()
    data = load_dataset(build_dataset(args.dataset))
    prepared = Prepared(data, True)
    d3_data = d3rlpy_dataset(prepared)
    names = args.algos
    mm = matmul_flops(200 if quick else 2000)
    roofline = max(mm.values())
    flops = {n: {lib: flops_per_update(lib, n, prepared, d3_data) for lib in LIBS} for n in names}
    speed = measure_throughput(names, prepared, d3_data, updates, repeats, warmup)
    scores = measure_scores(names, data, prepared, d3_data, score_steps, score_seeds)
    name = "offline_throughput.quick" if quick else "offline_throughput"
    result = {
        "benchmark": "offline_throughput", "name": name, "dataset": args.dataset, "quick": quick,
        "updates": updates, "warmup": warmup, "repeats": repeats, "score_steps": score_steps,
        "score_seeds": score_seeds, "runs": speed, "score_runs": scores, "matmul_flops": mm,
        "roofline_flops": roofline, "summary": summarize(names, speed, scores, flops, roofline),
        "targets": {"speed_ratio": TARGETS["speed"], "roofline_fraction": TARGETS["roofline"],
                    "score": "policylab normalized score >= d3rlpy's"},
        "versions": {"policylab": __import__("policylab").__version__, "torch": torch.__version__,
                     "d3rlpy": d3rlpy.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
        "git_commit": git_commit(), "command": shlex.join(["python", *sys.argv]),
        "wall_time_s": time.perf_counter() - start,
    }
    write_benchmark(args.out, name, result, render(result), plot)
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
