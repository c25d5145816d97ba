"""Claim check: "Inverse RL Meets LLM Post-Training" (Sun & van der Schaar 2025, arXiv 2507.13158) — a
Bradley-Terry reward model learned from preferences gets better, as judged by the gold reward, as its
preference data grows (the issue's claim for the survey's toolkit).

Written before any run. Policy: the tiny-mix base on the five-task mix. Preference data per seed:
1000 distinct train-split prompts (seed-dependent), 8 responses each at T = 1, up to 4 pairs of distinct
responses per prompt labelled by the gold reward (`GoldReward`, argmax labels as in Coste et al.'s
setup, no label noise), shuffled; arm `pairs_N` fits a Bradley-Terry MLP head on the base model's frozen
features to the first N pairs, with the same optimization budget (1500 Adam steps of 64 pairs) at every
N. Test: 200 fixed test-split prompts x 8 samples (the same for every arm and seed), their pairs labelled
the same way. Metric: held-out pair accuracy against the gold order (pairs with a gold difference only).
Claims: accuracy higher at 1600 and at 400 pairs than at 100; secondary comparisons on the within-prompt
Spearman correlation with gold and on the gold value of best-of-8 selection by the reward model, at
1600 vs 100 pairs. The `demonstrations` arm (reward from 1600 demonstrations: a discriminator between the
tasks' answers and the base model's samples) is reported without a claim. Seeds: full 0-4, quick 0.
"""

from __future__ import annotations

from policylab.core.config import to_dict
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir
from policylab.lm.preference import GoldReward, RewardFitConfig, label_pairs, sample_responses, train_samples
from policylab.lm.preference.irl_llm import evaluate_reward, reward_from_demonstrations, reward_from_preferences
from policylab.lm.pretrain import load_policy
from policylab.lm.tasks import distinct_problems, get_task
from policylab.lm.trainer import TEST_SET_SEED

TASK = "mix"
SAMPLES_PER_PROMPT = 8
PAIRS_PER_PROMPT = 4
FIT = RewardFitConfig(steps=1500, lr=1e-3, hidden=(64,))
BUDGETS = {"quick": {"base_model": "tiny-gcd", "task": "gcd", "prompts": 100, "test_prompts": 40,
                     "sizes": {"pairs_100": 100, "pairs_400": 200, "pairs_1600": 300}, "fit_steps": 100},
           "full": {"base_model": "tiny-mix", "task": TASK, "prompts": 1000, "test_prompts": 200,
                    "sizes": {"pairs_100": 100, "pairs_400": 400, "pairs_1600": 1600}, "fit_steps": FIT.steps}}
ARMS = ("pairs_100", "pairs_400", "pairs_1600", "demonstrations")


def run_arm(arm: str, seed: int, budget: str, run: RunDir) -> ArmResult:
    b = BUDGETS[budget]
    policy, tokenizer = load_policy(b["base_model"], progress=False)
    task = get_task(b["task"])
    gold = GoldReward(task)
    fit = RewardFitConfig(steps=b["fit_steps"], lr=FIT.lr, hidden=FIT.hidden)
    test_problems = distinct_problems(task, b["test_prompts"], "test", seed=TEST_SET_SEED)
    test_samples = sample_responses(policy, tokenizer, test_problems, SAMPLES_PER_PROMPT, 12, seed=TEST_SET_SEED)
    test_pairs = label_pairs(test_samples, gold, PAIRS_PER_PROMPT, seed=TEST_SET_SEED, temperature=0.0)
    samples = train_samples(policy, tokenizer, task, b["prompts"], seed, SAMPLES_PER_PROMPT)
    problems = samples.problems
    pool = label_pairs(samples, gold, PAIRS_PER_PROMPT, seed=seed, temperature=0.0).shuffled(seed)
    if arm == "demonstrations":
        size = b["sizes"]["pairs_1600"]
        demos = problems[:size] if len(problems) >= size else [problems[i % len(problems)] for i in range(size)]
        model = reward_from_demonstrations(policy, tokenizer, demos, [p.answer for p in demos], samples, fit, seed)
        used = size
    else:
        used = min(b["sizes"][arm], len(pool))
        model = reward_from_preferences(policy, tokenizer, pool.subset(range(used)), fit, seed)
    result = evaluate_reward(model, gold, test_pairs, test_samples)
    extra = {k: v for k, v in result.items() if k != "pair_accuracy"}
    extra.update(pairs_used=float(used), pool_pairs=float(len(pool)), test_pairs=float(len(test_pairs)),
                 label_agreement_train=float((pool.gold_margin[:used] > 0).float().mean()))
    return ArmResult(result["pair_accuracy"], [], extra)


EXPERIMENTS.add("irl_llm", Experiment(
    id="irl_llm",
    claim="A Bradley-Terry reward model learned from preferences orders held-out responses more like the gold "
          "reward, and picks better best-of-n answers, as its preference data grows (the survey's reward-model "
          "toolkit, checked against a synthetic gold reward).",
    arms={arm: {"base_model": "tiny-mix", "task": TASK, "pairs": BUDGETS["full"]["sizes"].get(arm, 1600),
                "source": "demonstrations vs policy samples" if arm == "demonstrations" else "gold-labelled pairs",
                "fit": to_dict(FIT)} for arm in ARMS},
    comparisons=(Comparison("pairs_1600", "pairs_100", "1600 vs 100 pairs"),
                 Comparison("pairs_400", "pairs_100", "400 vs 100 pairs"),
                 Comparison("pairs_1600", "pairs_100", "within-prompt Spearman with gold, 1600 vs 100 pairs",
                            metric="spearman_within", metric_label="within-prompt Spearman"),
                 Comparison("pairs_1600", "pairs_100", "gold of best-of-8 by the reward model, 1600 vs 100 pairs",
                            metric="best_of_8_gold", metric_label="best-of-8 gold")),
    metric="held-out pair accuracy against the gold order (200 test prompts x 8 samples of the tiny-mix base, "
           "pairs with a gold difference)",
    metric_label="held-out pair accuracy",
    direction="higher",
    seeds={"quick": (0,), "full": (0, 1, 2, 3, 4)},
    run_arm=run_arm,
    budgets_note={"quick": "tiny-gcd base on gcd, 100 prompts, 100-300 pairs, 100 fit steps (smoke run)",
                  "full": "tiny-mix base on the mix, 1000 prompts x 8 samples -> up to 4000 pairs; 100 / 400 / 1600 "
                          "pairs, 1500 Adam steps each; 200 test prompts x 8 samples"},
    paper="Inverse RL Meets LLM Post-Training: Basics, Advances, Opportunities (survey, 2025)",
    pillar="lm",
    fidelity="faithful",
    caveats=("A survey, so this checks its reward-model toolkit rather than one method: Bradley-Terry heads on frozen "
             "tiny-mix features, gold-labelled pairs of the base's own samples, a synthetic gold reward, and the same "
             "optimization budget at every data size. Best-of-8 gold with 1600 pairs is {pairs_1600/best_of_8_gold} "
             "against a random pick's {pairs_1600/best_of_1_gold}. Without a claim, the reward from 1600 "
             "demonstrations (a discriminator against base samples) reaches pair accuracy {demonstrations} and "
             "best-of-8 gold {demonstrations/best_of_8_gold}."),
))
