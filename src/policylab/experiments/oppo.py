"""Claim check: offline preference-guided policy optimization (OPPO, Kang et al., ICML 2023, arXiv 2305.16217).

Claim (the paper's, in our words): learning a context-conditioned policy by hindsight information matching and
an optimal context z* from segment preferences, in one process and without a reward model, beats the two-step
pipeline of a reward learned from the same preferences followed by offline RL (its PT+IQL baseline), and beats
behaviour cloning. Scripted preferences as in the paper's scripted-teacher experiments; a CPU-sized check of the
direction, not of the paper's numbers (D4RL locomotion, transformers, 100k steps).
Fixed before the first run:
- dataset `pendulum-mix10` (200 episodes of 200 steps, 10% noisy SAC expert, the rest uniform random; the notes'
  suggested dataset for this check, and the one `rl_vlm_f` uses); true rewards are hidden from every arm but
  `iql_true`, and reach the others only through the teacher's labels;
- the preference budget, the same for `oppo` and `bt_iql`: 2,000 pairs of K = 10-step windows, starts uniform over
  transitions (`segment_preferences` with the run's seed, so both arms get the very same pairs and labels), answered
  by a noiseless scripted teacher (`ScriptedTeacher`, as the paper's) on each window's true reward summed over the
  foresee = 40 steps from its start, cut at the episode's end (the code's 200 of 1,000-step episodes, the same
  fifth of Pendulum's 200 steps); exact ties dropped;
- `oppo`: `OPPOConfig` with the code's d_z = 8, margin 1, alpha = beta = 0.1, grad clip 0.25, z* ~ N(0, 4 I) with
  AdamW 1e-3, weight decay 1e-4, batch 64 pairs (+ 2 x 64 unlabelled windows for L_HIM); ours: an MLP encoder and
  an MLP policy pi(a | s, z), both 2 x 64, AdamW 3e-4 without warm-up (BC's and IQL's step size here; the code's
  1e-4 comes with a 10k-step warm-up over a 100k-step run), 10k gradient steps; evaluated with pi(s, z*);
- `bt_iql` (the paper's PT+IQL-style baseline): a Bradley-Terry reward r_hat(s, a) fitted on the same pairs, a
  window scored by the sum of its K per-step rewards (PEBBLE's / PT's MLP-reward form), ensemble 3 x (3 x 64) tanh,
  Adam 3e-4, batch 128, 2k steps (`rl_vlm_f`'s defaults), the dataset relabelled r_t = r_hat(s_t, a_t) standardized,
  then IQL (CORL defaults, 2 x 64, 10k gradient steps);
- `bc`: BC 2 x 64, 10k steps; `iql_true`: IQL 2 x 64 on the true rewards, 10k steps (context, not compared);
- metric: final normalized score, 100 (R - R_random) / (R_expert - R_random), mean of 10 evaluation episodes after
  the last step (4 evaluations per run for the curves); comparisons paired over seeds 0, 1, 2: oppo vs bt_iql
  (primary; higher) and oppo vs bc (higher); no minimum effect;
- reported, not compared: ||z*||, z*'s mean distance to the encodings of the top- and bottom-decile windows by
  foresee return (the notes' diagnostic; expected top < bottom), the action change when encodings are shuffled
  between windows (0 would mean the policy ignores z), the share of answered pairs; for bt_iql the reward's
  train accuracy on the pairs and its Spearman correlation with the true per-step reward.
Pilots (disclosed): one timing run on seed 100 only, before this file was written: 1k OPPO steps without any
evaluation (7.8 s, 2 shared cores) and one bt_iql reward fit (25 s for 2k steps; it printed the fit's train
accuracy 0.88 and Spearman 0.68, not a score). No score of any arm was seen before the first full run.

Follow-up `oppo_zinit`, designed after the `oppo` result (OPPO below both baselines), to test one explanation; the
`oppo` verdict stands whatever it shows. The diagnostics put z* at norm about 5 while L_norm keeps the encodings at
about 1: the official init N(0, 4 I) in d_z = 8 starts z* at norm about 5.7, and from far away a triplet's hinge
max(0, d+ - d- + 1) is already zero for any pair whose encodings differ along z*'s direction by more than the
margin (d+ - d- tends to the projection of z- - z+ on that direction), so nothing pulls z* in and pi is queried
with a context it never saw in training. Fixed before its run: the same pairs, networks, steps and seeds as
`oppo`; the only change is `oppo.z1`, z* ~ N(0, I / d_z); comparisons oppo.z1 vs oppo and oppo.z1 vs bt_iql
(higher), both paired over seeds 0, 1, 2. Disclosed: before this design the helper who built OPPO evaluated the
final `oppo` checkpoints with other contexts (z* rescaled to norm 1: 20, -8, 9; the mean top-decile encoding:
31, 3, 17, against bt_iql's 52, 94, 28), so the direction of the first comparison was expected; that exploration
was not used to choose anything but this one change.
"""

from __future__ import annotations

from policylab.catalog import build_dataset
from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir
from policylab.experiments.offline_common import offline_arm_result
from policylab.offline import BC, IQL, BCConfig, IQLConfig, train_offline
from policylab.offline.oppo import OPPOConfig, preference_reward_relabel, train_oppo
from policylab.offline.rl_vlm_f import RLVLMFConfig
from policylab.offline.train import open_data

DATASET = "pendulum-mix10"
WIDTH = (64, 64)
OPPO_CFG = OPPOConfig(segment_length=10, foresee=40, num_pairs=2000, hidden=WIDTH, encoder_hidden=WIDTH, lr=3e-4,
                      encoder_lr=3e-4)
LEARNER = IQLConfig(hidden=WIDTH)
REWARD = RLVLMFConfig(reward_hidden=(64, 64, 64), ensemble=3, reward_lr=3e-4, reward_batch_size=128,
                      reward_steps=2000)
STEPS = {"quick": 200, "full": 10_000}
REWARD_STEPS = {"quick": 100, "full": REWARD.reward_steps}
EVALS = {"quick": 1, "full": 4}
ZSTAR_IN_REGION = OPPO_CFG.replace(zstar_init_std=OPPO_CFG.context_dim ** -0.5)
"""The follow-up's variant: z* ~ N(0, I / d_z), so E||z*||^2 = 1, where L_norm keeps the encodings."""
OPPO_ARMS = {"oppo": OPPO_CFG, "oppo.z1": ZSTAR_IN_REGION}
ARMS = ("oppo", "bt_iql", "bc", "iql_true")
OPPO_EXTRAS = ("zstar_norm", "zstar_dist_top", "zstar_dist_bottom", "z_shuffle_action_change",
               "pairs_used_fraction")


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    data = open_data(build_dataset(DATASET))
    common = dict(seed=seed, steps=STEPS[budget], run=run, evals=EVALS[budget], eval_episodes=10, progress=False)
    if arm in OPPO_ARMS:
        summary = train_oppo(OPPO_ARMS[arm], env_id=data, **common)
        return offline_arm_result(summary, run, {k: summary["oppo"][k] for k in OPPO_EXTRAS})
    extra: dict[str, float] = {}
    if arm == "bt_iql":
        data, info = preference_reward_relabel(data, OPPO_CFG, seed,
                                               REWARD.replace(reward_steps=REWARD_STEPS[budget]))
        extra = {k: info[k] for k in ("reward_train_accuracy", "reward_spearman", "pairs_used_fraction")}
    algo, cfg = (BC, BCConfig(hidden=WIDTH)) if arm == "bc" else (IQL, LEARNER)
    summary = train_offline(algo, cfg, env_id=data, **common)
    return offline_arm_result(summary, run, extra)


ARM_SPECS = {
    **{arm: {"dataset": DATASET, **to_dict(cfg)} for arm, cfg in OPPO_ARMS.items()},
    "bt_iql": {"dataset": DATASET, "pairs": "the oppo arm's (same seed, K, foresee, teacher)",
               "reward": {k: v for k, v in to_dict(REWARD).items()
                          if k in ("reward_hidden", "ensemble", "reward_lr", "reward_batch_size", "reward_steps")},
               "learner": "iql", **to_dict(LEARNER)},
    "bc": {"dataset": DATASET, "learner": "bc", "hidden": list(WIDTH)},
    "iql_true": {"dataset": DATASET, "learner": "iql", "reward": "true", **to_dict(LEARNER)},
}


EXPERIMENTS.add("oppo", Experiment(
    id="oppo",
    claim="OPPO (a z-conditioned policy by hindsight information matching plus an optimal context z* from segment "
          "preferences, no reward model) beats a Bradley-Terry reward from the same 2,000 preference pairs followed "
          "by IQL, and beats BC, on pendulum-mix10.",
    arms={arm: ARM_SPECS[arm] for arm in ARMS},
    comparisons=(Comparison("oppo", "bt_iql", "OPPO vs BT reward + IQL (same pairs)", curve_x="gradient steps"),
                 Comparison("oppo", "bc", "OPPO vs BC", curve_x="gradient steps")),
    metric=f"normalized score after 10k gradient steps on {DATASET}, mean of 10 evaluation episodes",
    metric_label="normalized score", direction="higher",
    seeds={"quick": (0,), "full": (0, 1, 2)},
    run_arm=run_arm,
    curve_x="gradient steps",
    budgets_note={"quick": "200 learner steps, a 100-step reward fit (smoke run)",
                  "full": "2,000 labelled window pairs; OPPO 10k steps; BT reward 2k steps then IQL 10k steps; BC "
                          "and IQL on true rewards 10k steps; width 64"},
    paper="Beyond Reward: Offline Preference-guided Policy Optimization (2023)",
    pillar="offline",
    fidelity="scaled down",
    fidelity_note="MLP encoder and policy instead of the official BERT encoder and Decision-Transformer decoder, 10k "
                  "instead of 100k steps, no warm-up; losses, weights and z* init follow the official code",
    caveats=("z* points the right way (mean distance {oppo/zstar_dist_top} to the top-decile windows' encodings vs "
             "{oppo/zstar_dist_bottom} to the bottom decile) but sits far outside the encodings (norm "
             "{oppo/zstar_norm}, while the norm loss keeps encodings near 1), and the policy does use z (shuffling "
             "encodings moves actions by {oppo/z_shuffle_action_change}). The follow-up oppo_zinit tests one "
             "explanation, the official N(0, 4I) init of z* far outside the encodings."),
))


EXPERIMENTS.add("oppo_zinit", Experiment(
    id="oppo_zinit",
    claim="Follow-up, designed after the `oppo` result (not the paper's claim): OPPO with z* initialized inside the "
          "region of the segment encodings (N(0, I/8), norm about 1) scores higher than with the official N(0, 4I) "
          "init (norm about 5.7); and, so initialized, OPPO beats BT reward + IQL on the same pairs.",
    arms={arm: ARM_SPECS[arm] for arm in ("oppo", "oppo.z1", "bt_iql")},
    comparisons=(Comparison("oppo.z1", "oppo", "z* initialized in the encodings' region vs the official init",
                            curve_x="gradient steps"),
                 Comparison("oppo.z1", "bt_iql", "OPPO (z* in region) vs BT reward + IQL (same pairs)",
                            curve_x="gradient steps")),
    metric=f"normalized score after 10k gradient steps on {DATASET}, mean of 10 evaluation episodes",
    metric_label="normalized score", direction="higher",
    seeds={"quick": (0,), "full": (0, 1, 2)},
    run_arm=run_arm,
    curve_x="gradient steps",
    budgets_note={"quick": "200 learner steps, a 100-step reward fit (smoke run)",
                  "full": "as `oppo`: 2,000 labelled window pairs; OPPO 10k steps; BT reward 2k steps then IQL 10k"},
    paper="Beyond Reward: Offline Preference-guided Policy Optimization (2023)",
    pillar="offline",
    method="oppo",
    fidelity="scaled down",
    fidelity_note="as `oppo` (MLP encoder and policy instead of BERT and the DT decoder, 10k instead of 100k steps), "
                  "with z* initialized at N(0, I/8) instead of the official N(0, 4I)",
    caveats=("Designed after the oppo result to test one explanation; the oppo verdict stands whatever this shows. "
             "Started at norm about 1, z* drifted out to norm {oppo.z1/zstar_norm} anyway. Before this design the "
             "helper who built OPPO had evaluated the final oppo checkpoints with other contexts, so the direction of "
             "the first comparison was expected (disclosed in the module)."),
))
