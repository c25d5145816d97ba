"""Claim check: IRL's sensitivity to misspecification (Skalse and Abate, ICLR 2024).

Claim (the paper's theorems, measured here): an IRL learner that assumes the wrong temperature infers a
reward at STARC distance 0 from the truth, even in the worst case over what it cannot identify; one
that assumes a slightly wrong discount or slightly wrong dynamics can be far off, more so the larger
the wrong assumption and the larger the admissible potential; assuming MCE for Boltzmann data leaves
a moderate error. Fixed before the first run (the notes' scratch setup):
- each seed draws 10 random MDPs (12 states, 3 actions, Dirichlet(0.3) transitions, N(0, 1) rewards
  R(s, a, s'), gamma 0.9, uniform start); data: the exact MCE policy at alpha = 1 (Boltzmann beta = 1
  in `boltzmann_data`), so the error is the misspecification's alone;
- the learner (MCE inverse unless stated) assumes: the truth (`correct`); alpha' = 4 or 0.25;
  gamma' = 0.89, 0.85 or 0.5; tau' = 0.99 tau + 0.01 N or 0.9 tau + 0.1 N (N a random kernel);
- metric: STARC-VAL distance (uniform pi, L2) between the true reward and the worst of the canonical
  inverse and 400 random shaped members with ||Phi||_inf <= B max |E R|, B = 10 (and B = 1 in the
  `.B1` arms); mean over the 10 MDPs; direction higher = more error; 5 seeds;
- min_effect 0.001: a STARC distance below that is negligible; values below 1e-9 are reported as 0
  (float64 residuals). "alpha' x4 vs correct" claims no difference: its expected verdict is
  inconclusive with an effect of exactly 0.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir
from policylab.irl import MisspecConfig, misspecification_error
from policylab.tabular import random_mdp

MDPS = {"quick": 2, "full": 10}
POTENTIALS = {"quick": 50, "full": 400}
ARMS = {
    "correct": MisspecConfig(),
    "alpha_x4": MisspecConfig(learner_temperature=4.0),
    "alpha_x0.25": MisspecConfig(learner_temperature=0.25),
    "gamma_0.89": MisspecConfig(learner_gamma=0.89),
    "gamma_0.85": MisspecConfig(learner_gamma=0.85),
    "gamma_0.5": MisspecConfig(learner_gamma=0.5),
    "gamma_0.85.B1": MisspecConfig(learner_gamma=0.85, bound=1.0),
    "tau_1pct": MisspecConfig(dynamics_noise=0.01),
    "tau_10pct": MisspecConfig(dynamics_noise=0.1),
    "tau_10pct.B1": MisspecConfig(dynamics_noise=0.1, bound=1.0),
    "boltzmann_data": MisspecConfig(data_model="boltzmann"),
}


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    cfg = replace(ARMS[arm], potentials=POTENTIALS[budget])
    rows = [misspecification_error(random_mdp(12, 3, seed=1000 * seed + i), cfg, seed=1000 * seed + i)
            for i in range(MDPS[budget])]
    # float64 leaves residuals of ~1e-15 where the theory says 0; call anything below 1e-9 zero
    mean = {key: nil(float(np.mean([row[key] for row in rows]))) for key in rows[0]}
    return ArmResult(mean["starc_worst"], [], {"starc_canonical": mean["starc_canonical"],
                                               "regret_canonical": mean["regret_canonical"],
                                               "starc_worst_max": float(np.max([r["starc_worst"] for r in rows]))})


def nil(value: float) -> float:
    return 0.0 if abs(value) < 1e-9 else value


EXPERIMENTS.add("irl_misspec", Experiment(
    id="irl_misspec",
    claim="A misspecified temperature leaves the inferred reward at STARC distance 0; a slightly misspecified "
          "discount or dynamics does not, the error growing with the misspecification and with the admissible "
          "shaping; Boltzmann data read as MCE gives a moderate error.",
    arms={arm: to_dict(cfg) for arm, cfg in ARMS.items()},
    comparisons=(
        Comparison("gamma_0.85", "correct", "gamma' 0.85 vs correct"),
        Comparison("gamma_0.5", "gamma_0.85", "gamma' 0.5 vs 0.85 (grows with the error)"),
        Comparison("gamma_0.85", "gamma_0.85.B1", "gamma' 0.85: B 10 vs 1 (grows with the shaping)"),
        Comparison("tau_10pct", "correct", "tau' 10% noise vs correct"),
        Comparison("tau_10pct", "tau_1pct", "tau' 10% vs 1% noise (grows with the error)"),
        Comparison("tau_10pct", "tau_10pct.B1", "tau' 10%: B 10 vs 1 (grows with the shaping)"),
        Comparison("gamma_0.89", "alpha_x4", "gamma' 0.89 vs alpha' x4 (discount worse than temperature)"),
        Comparison("alpha_x4", "correct", "alpha' x4 vs correct (claimed: no difference)"),
        Comparison("boltzmann_data", "correct", "Boltzmann data, MCE learner vs correct (moderate)"),
    ),
    metric="STARC-VAL distance between the true and the inferred reward, worst over the canonical inverse and 400 "
           "random potentials with ||Phi||_inf <= B max|E R| (B = 10 unless .B1), mean over 10 random MDPs",
    metric_label="worst-case STARC distance", direction="higher", min_effect=0.001,
    seeds={"quick": (0,), "full": (0, 1, 2, 3, 4)},
    run_arm=run_arm,
    curve_x="",
    budgets_note={"quick": "2 MDPs, 50 potentials", "full": "10 MDPs of 12 states per seed, 400 potentials"},
    paper="Quantifying the Sensitivity of IRL to Misspecification (2024)",
    pillar="irl",
    fidelity="faithful",
    caveats=("A wrong temperature leaves the distance at exactly 0, so 'alpha' x4 vs correct' is inconclusive at "
             "effect 0, which is the claimed outcome. tau' with 10% noise at B = 1 gives {tau_10pct.B1}, the same "
             "as tau' with 1% at B = 10 ({tau_1pct}): the residual is linear in the noise weight times ||Phi||. A "
             "worst case over random potentials is a lower bound on the supremum, which is unbounded in ||Phi||."),
))
