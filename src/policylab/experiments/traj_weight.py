"""Claim check: trajectory weighting on mixed datasets (Hong et al., ICLR 2023).

Claim (the paper's): on datasets of mostly poor trajectories with a few good ones, sampling
trajectories by return (RW) or by advantage over their start state's prediction (AW) lifts
BC, TD3+BC, IQL and CQL toward the best trajectories' return, and does no harm when the good
trajectories are already plentiful. Fixed before the first run:
- datasets: `pendulum-mix5` (10 noisy SAC-expert episodes among 200, the rest uniform random) and
  `pendulum-mix50` (half expert), both built here;
- samplers: uniform, rw and aw with the paper's alpha = 0.1; every learner at its paper's settings
  except width 2 x 64 and 3k gradient steps (CQL's 10-action penalty makes it 6x slower than the
  others and alone sets the budget), 2 evaluations of 10 episodes, 3 seeds;
- metric: final normalized score 100 (R - R_random) / (R_expert - R_random) (the dataset's stored
  references); direction higher;
- comparisons: rw vs uniform and aw vs uniform per learner on mix5 (the lift); the same on mix50,
  where "no harm" is the claim: a **not reproduced** there means weighting hurt, anything else
  (inconclusive or reproduced) means it did not.
Pendulum episodes all start from random angles, so AW differs from RW here (the notes' caveat).
Secondary: the raw return and the sampler's effective sample size in trajectories.
"""

from __future__ import annotations

from dataclasses import replace

from policylab.catalog import build_dataset
from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir
from policylab.experiments.offline_common import REBUILT_DATASETS, offline_arm_result
from policylab.offline import BC, CQL, IQL, TD3BC, BCConfig, CQLConfig, IQLConfig, TD3BCConfig, train_offline

WIDTH = {"hidden": (64, 64)}
LEARNERS = {"bc": (BC, BCConfig(**WIDTH)), "td3_bc": (TD3BC, TD3BCConfig(**WIDTH)), "iql": (IQL, IQLConfig(**WIDTH)),
            "cql": (CQL, CQLConfig(**WIDTH))}
SAMPLERS = ("uniform", "rw", "aw")
DATASETS = {"mix5": "pendulum-mix5", "mix50": "pendulum-mix50"}
STEPS = {"quick": 100, "full": 3000}
EVALS = {"quick": 1, "full": 2}
ARMS = {f"{learner}.{sampler}.{short}": (learner, sampler, short)
        for short in DATASETS for learner in LEARNERS for sampler in SAMPLERS}


def arm_config(arm: str):
    learner, sampler, _ = ARMS[arm]
    return replace(LEARNERS[learner][1], sampler=sampler)


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    learner, _, short = ARMS[arm]
    summary = train_offline(LEARNERS[learner][0], arm_config(arm), env_id=build_dataset(DATASETS[short]), seed=seed,
                            steps=STEPS[budget], run=run, evals=EVALS[budget], eval_episodes=10, progress=False)
    return offline_arm_result(summary, run, from_records=effective_sample_size)


def effective_sample_size(records: list[dict]) -> dict[str, float]:
    ess = [r["sampler/ess_trajectories"] for r in records if "sampler/ess_trajectories" in r]
    return {"ess_trajectories": float(ess[-1])} if ess else {}


def _comparisons() -> tuple[Comparison, ...]:
    return tuple(Comparison(f"{learner}.{sampler}.{short}", f"{learner}.uniform.{short}",
                            f"{learner} {sampler.upper()} vs uniform ({DATASETS[short]})", curve_x="gradient steps")
                 for short in DATASETS for learner in LEARNERS for sampler in ("rw", "aw"))


EXPERIMENTS.add("traj_weight", Experiment(
    id="traj_weight",
    claim="Return- and advantage-weighted trajectory sampling lifts BC, TD3+BC, IQL and CQL on a mostly random "
          "mixture (5% expert episodes) and does no harm on a half-expert one.",
    arms={arm: {"dataset": DATASETS[ARMS[arm][2]], "learner": ARMS[arm][0], **to_dict(arm_config(arm))}
          for arm in ARMS},
    comparisons=_comparisons(),
    metric="normalized score after training, 100 (R - R_random) / (R_expert - R_random), mean of 10 evaluation "
           "episodes in Pendulum-v1",
    metric_label="normalized score", direction="higher",
    seeds={"quick": (0,), "full": (0, 1, 2)},
    run_arm=run_arm,
    curve_x="gradient steps",
    budgets_note={"quick": "100 gradient steps (smoke run)",
                  "full": "3k gradient steps per learner, width 64, on pendulum-mix5 and pendulum-mix50"},
    paper="Harnessing Mixed Offline RL Datasets via Trajectory Weighting (2023)",
    pillar="offline",
    fidelity="faithful",
    caveats=("The samplers change only which transitions a batch draws, never a learner's loss, and are usable by "
             "every algorithm through `sampler=`; the quickstart's BC + RW arm on pendulum-mix5 uses the same one. "
             "Pendulum episodes all start from random angles, so AW (the return's advantage over a linear fit on the "
             "start state) differs from RW here. Each weighted arm reports the sampler's effective sample size in "
             "trajectories (`ess_trajectories`), since a small alpha can concentrate training on a few episodes. "
             + REBUILT_DATASETS),
))
