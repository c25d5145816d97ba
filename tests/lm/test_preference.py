"""The shared preference parts (policylab.lm.preference): the gold reward by hand, Bradley-Terry labels and
loss, the unbiased best-of-n estimator against brute force, ensembles' objectives, the reward models'
fitting and evaluation, KL estimates, and RL against a reward model through the RLVR engine."""

import itertools
import math
import random

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm.policy import TinyGPT, TinyGPTConfig
from policylab.lm.preference import (
    EmbeddingRewardModel,
    GoldReward,
    PreferencePairs,
    RewardEnsemble,
    RewardFitConfig,
    Samples,
    TransformerRewardModel,
    VerifierReward,
    best_of_n_curve,
    best_of_n_value,
    best_of_n_weights,
    bradley_terry_label,
    bradley_terry_loss,
    gold_correlation,
    kl_best_of_n,
    label_pairs,
    pair_accuracy,
    sample_responses,
)
from policylab.lm.preference.reward_model import score_l2_penalty
from policylab.lm.pretrain import load_base, pretrain
from policylab.lm.tasks import CharTokenizer, Problem, get_task

GCD = Problem("gcd", "gcd(12,18)=", "6")


def test_gold_reward_by_hand():
    gold = GoldReward(get_task("gcd"))  # weights 1 / 0.5 / 0.2 / 0.05, cap 10; gcd's dense scale is 20
    assert gold.value(GCD, "6") == pytest.approx(1 + 0.5 + 0.2)
    assert gold.value(GCD, "16") == pytest.approx(0.5 * (1 - 10 / 20) + 0.2 - 0.05)  # near miss, one char long
    assert gold.value(GCD, "abc") == pytest.approx(-0.05 * 2)  # unreadable: only the length term
    assert gold.value(GCD, "6", truncated=True) == pytest.approx(-0.05 * 10)  # no final answer
    assert gold.value(GCD, "1" * 40) == pytest.approx(-0.05 * 10)  # the length term is capped
    assert torch.allclose(gold.score([GCD, GCD], ["6", "16"]), torch.tensor([1.7, 0.4]))


def test_bradley_terry_labels_and_loss():
    rng = random.Random(0)
    assert bradley_terry_label(0.3, 0.0, rng) and not bradley_terry_label(-0.3, 0.0, rng)
    draws = [bradley_terry_label(0.2, 0.1, rng) for _ in range(20_000)]
    assert np.mean(draws) == pytest.approx(1 / (1 + math.exp(-2.0)), abs=0.01)
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    expected = (math.log(1 + math.exp(-1.0)) + math.log(2.0)) / 2
    assert float(bradley_terry_loss(chosen, rejected)) == pytest.approx(expected)
    per_pair = bradley_terry_loss(chosen, rejected, reduction="none")
    assert torch.allclose(per_pair, torch.tensor([math.log(1 + math.exp(-1.0)), math.log(2.0)]))
    with pytest.raises(ConfigError, match="reduction = 'sum'"):
        bradley_terry_loss(chosen, rejected, reduction="sum")


def test_label_pairs_noise_and_distinct_responses():
    gold = GoldReward(get_task("gcd"))
    problems = [Problem("gcd", f"gcd({a},12)=", str(math.gcd(a, 12))) for a in range(1, 41)]
    responses = [[str(v) for v in (1, 2, 3, 4, 6, 12)] for _ in problems]
    samples = Samples(problems, responses, [[False] * 6 for _ in problems])
    clean = label_pairs(samples, gold, pairs_per_prompt=15, seed=0, temperature=0.0)
    assert len(clean) == 40 * 15 and all(c != r for c, r in zip(clean.chosen, clean.rejected))
    assert bool((clean.gold_margin >= 0).all()) and not clean.flipped.any()
    noisy = label_pairs(samples, gold, pairs_per_prompt=15, seed=0, temperature=0.0, noise=0.25)
    assert noisy.flipped.float().mean().item() == pytest.approx(0.25, abs=0.04)
    decided = noisy.gold_margin != 0
    assert torch.equal((noisy.gold_margin[decided] < 0), noisy.flipped[decided])  # a flip reverses the gold order
    shuffled = clean.shuffled(seed=3)
    assert sorted(zip(shuffled.chosen, shuffled.rejected)) == sorted(zip(clean.chosen, clean.rejected))
    assert shuffled.chosen != clean.chosen and shuffled.chosen == clean.shuffled(seed=3).chosen
    same = Samples([GCD], [["6", "6", "6"]], [[False] * 3])
    assert len(label_pairs(same, gold, 4, seed=0)) == 0  # all-equal responses give no pair
    with pytest.raises(ConfigError, match="noise = 0.7"):
        label_pairs(samples, gold, 1, seed=0, noise=0.7)


def test_best_of_n_estimator_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    proxy, values = torch.rand(3, 7, generator=g), torch.randn(3, 7, generator=g)
    for n in (1, 3, 7):
        assert float(best_of_n_weights(n, 7).sum()) == pytest.approx(1.0)
        brute = torch.tensor([np.mean([float(values[p, max(s, key=lambda i: proxy[p, i])])
                                       for s in itertools.combinations(range(7), n)]) for p in range(3)],
                             dtype=torch.float32)
        assert torch.allclose(best_of_n_value(proxy, values, n).float(), brute, atol=1e-6)
    assert torch.allclose(best_of_n_value(proxy, values, 1).float(), values.mean(-1), atol=1e-6)
    assert kl_best_of_n(1) == 0.0 and kl_best_of_n(4) == pytest.approx(math.log(4) - 0.75)
    assert float(best_of_n_weights(5000, 10_000).sum()) == pytest.approx(1.0)  # large pools stay finite
    with pytest.raises(ConfigError, match="n = 9"):
        best_of_n_weights(9, 7)


class Fixed:
    """A stub reward model: a fixed score per response text."""

    def __init__(self, table):
        self.table = table

    def score(self, problems, responses):
        return torch.tensor([float(self.table[r]) for r in responses])


def test_ensemble_objectives_by_hand():
    a, b = Fixed({"x": 1.0, "y": 0.0}), Fixed({"x": -1.0, "y": 0.5})
    problems, responses = [GCD, GCD], ["x", "y"]
    assert torch.allclose(RewardEnsemble([a, b], "mean").score(problems, responses), torch.tensor([0.0, 0.25]))
    assert torch.allclose(RewardEnsemble([a, b], "wco").score(problems, responses), torch.tensor([-1.0, 0.0]))
    # population variance of (1, -1) is 1 and of (0, 0.5) is 0.0625; unbiased doubles them (k = 2)
    uwo = RewardEnsemble([a, b], "uwo", uwo_weight=0.5)
    assert torch.allclose(uwo.score(problems, responses), torch.tensor([-0.5, 0.25 - 0.03125]))
    unbiased = RewardEnsemble([a, b], "uwo", uwo_weight=0.5, unbiased_variance=True)
    assert torch.allclose(unbiased.score(problems, responses), torch.tensor([-1.0, 0.25 - 0.0625]))
    with pytest.raises(ConfigError, match="objective = 'max'.*mean, wco, uwo"):
        RewardEnsemble([a], "max")


def test_pair_accuracy_and_correlations():
    pairs = PreferencePairs([GCD] * 3, ["6", "3", "2"], ["16", "6", "1"], torch.tensor([1.3, -0.3, 0.0]),
                            torch.tensor([False, True, False]))
    truth = Fixed({"6": 1.7, "16": 0.4, "3": 1.4, "2": 1.3, "1": 1.2})
    assert pair_accuracy(truth, pairs) == 1.0  # the undecided third pair is left out
    assert pair_accuracy(Fixed({k: -v for k, v in truth.table.items()}), pairs) == 0.0
    scores, gold = torch.tensor([1.0, 2.0, 3.0, 10.0, 0.0]), torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0])
    within = gold_correlation(scores, gold, groups=[0, 0, 0, 1, 1])
    assert within["spearman_within"] == pytest.approx(0.0)  # +1 in the first prompt, -1 in the second
    assert gold_correlation(scores[:3], gold[:3])["pearson"] == pytest.approx(1.0)


def length_pairs(n: int, seed: int) -> PreferencePairs:
    """Short answers preferred to long ones: a reward any working head must learn."""
    rng = random.Random(seed)
    problems, chosen, rejected = [], [], []
    for _ in range(n):
        a = rng.randint(1, 60)
        problems.append(Problem("gcd", f"gcd({a},6)=", str(math.gcd(a, 6))))
        chosen.append(str(rng.randint(1, 9)))
        rejected.append(str(rng.randint(1, 9)) * rng.randint(4, 8))
    return PreferencePairs(problems, chosen, rejected, torch.ones(n), torch.zeros(n, dtype=torch.bool))


@pytest.fixture(scope="module")
def trunk():
    torch.manual_seed(0)
    return TinyGPT(TinyGPTConfig(vocab_size=CharTokenizer().vocab_size, block_size=32, n_layer=1, n_head=2,
                                 d_model=32))


def test_embedding_reward_model_learns_a_preference_and_normalizes(trunk):
    tok = CharTokenizer()
    train, test = length_pairs(300, seed=0), length_pairs(200, seed=1)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    untrained = EmbeddingRewardModel(trunk, tok, seed=0)
    baseline = pair_accuracy(untrained, test)
    model = EmbeddingRewardModel(trunk, tok, seed=0)
    losses = model.fit(train, RewardFitConfig(epochs=30), seed=0)
    assert losses[-1] < losses[0]
    assert pair_accuracy(model, test) > max(0.9, baseline + 0.2)
    scores = torch.cat([model.score(train.problems, train.chosen), model.score(train.problems, train.rejected)])
    assert float(scores.mean()) == pytest.approx(0.0, abs=1e-4) and float(scores.std()) == pytest.approx(1.0, 1e-3)
    assert all(torch.equal(v, trunk.state_dict()[k]) for k, v in before.items())  # the base is untouched


def test_score_l2_penalty_is_coste_et_al_s_half_sum_of_squares():
    chosen, rejected = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])
    # Open-Assistant's RMLoss (Coste et al.'s trainer): beta * 0.5 * (pos^2 + neg^2), averaged over pairs
    assert float(score_l2_penalty(chosen, rejected, 0.1)) == pytest.approx(0.1 * 0.5 * (10 + 4) / 2)
    scores = torch.cat([chosen, rejected])  # = beta times the mean square over all 2N scores
    assert float(score_l2_penalty(chosen, rejected, 0.1)) == pytest.approx(0.1 * float((scores ** 2).mean()))


def test_reward_fit_default_keeps_the_penalty_it_was_always_fit_with():
    """2e-3 in the beta/2 form is the 0.001 (r_w^2 + r_l^2) the claim checks ran with, to the bit."""
    generator = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(64, generator=generator), torch.randn(64, generator=generator)
    default = RewardFitConfig().score_l2
    assert default == 2e-3
    assert torch.equal(score_l2_penalty(chosen, rejected, default), 1e-3 * (chosen ** 2 + rejected ** 2).mean())


def test_reward_model_fit_adds_the_half_sum_of_squares_penalty(trunk):
    """Identical chosen and rejected features: Bradley-Terry is log 2 and the rest of the loss is the L2."""
    tok = CharTokenizer()
    pairs = length_pairs(16, seed=3)
    model = EmbeddingRewardModel(trunk, tok, seed=0)
    features = model.all_features(pairs.problems, pairs.chosen)
    with torch.no_grad():
        raw = model.raw(features)
    losses = model.fit(pairs, RewardFitConfig(steps=1, batch_size=16, score_l2=0.5), seed=0,
                       features=(features, features))
    # 0.5 * 0.5 * mean(r^2 + r^2) = 0.5 * mean(r^2)
    assert losses[0] == pytest.approx(math.log(2) + 0.5 * float((raw ** 2).mean()), rel=1e-5)


def test_transformer_reward_model_fine_tunes_its_own_copy(trunk):
    tok = CharTokenizer()
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    model = TransformerRewardModel(trunk, tok, seed=0)
    losses = model.fit(length_pairs(128, seed=0), RewardFitConfig(epochs=4, lr=3e-3), seed=0)
    assert losses[-1] < losses[0]
    assert pair_accuracy(model, length_pairs(100, seed=1)) > 0.8
    assert all(torch.equal(v, trunk.state_dict()[k]) for k, v in before.items())
    assert not all(torch.equal(v, model.trunk.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ConfigError, match="at least one preference pair"):
        model.fit(length_pairs(0, seed=0))


def test_samples_log_ratio_is_the_kl_estimate(base_models):
    policy, tok, _ = load_base(pretrain("tiny-gcd"))
    problems = [Problem("gcd", f"gcd({a},{b})=", str(math.gcd(a, b))) for a, b in ((12, 18), (7, 21), (9, 4))]
    same = sample_responses(policy, tok, problems, 4, 8, seed=0, reference=policy)
    assert same.kl() == pytest.approx(0.0, abs=1e-5)
    other = TinyGPT(policy.cfg)
    samples = sample_responses(policy, tok, problems, 4, 8, seed=0, reference=other)
    assert samples.responses == same.responses  # the same seed draws the same responses
    assert samples.kl() > 1.0  # a random network is far from the trained one
    with pytest.raises(ConfigError, match="no KL"):
        sample_responses(policy, tok, problems, 1, 8).kl()


def test_rlvr_against_a_reward_model_uses_its_scores(base_models):
    from policylab.lm.baselines import GRPOConfig
    from policylab.lm.rollout import RolloutSource

    policy, tok, _ = load_base(pretrain("tiny-gcd"))
    brevity = type("Brevity", (), {"score": lambda self, problems, responses: -torch.tensor(
        [float(len(r)) for r in responses])})()
    source = RolloutSource(get_task("gcd"), tok, GRPOConfig(prompts_per_step=4, group_size=4), 0, brevity)
    batch = source.next_batch(type("Algo", (), {"policy": policy})())
    assert torch.equal(batch.rewards, -torch.tensor([float(len(t)) for t in batch.texts]))
    assert torch.equal(batch.exact, VerifierReward(get_task("gcd")).score(
        [p for p in batch.problems for _ in range(4)], batch.texts) * (~batch.truncated).float())
    assert "rollout/proxy_reward" in source.metrics()


def test_reward_from_demonstrations_scores_demonstrations_above_samples(trunk):
    from policylab.lm.preference.irl_llm import evaluate_reward, reward_from_demonstrations

    tok = CharTokenizer()
    train, test = length_pairs(200, seed=0), length_pairs(100, seed=1)
    policy_samples = Samples(train.problems, [[r] for r in train.rejected], [[False]] * len(train))
    model = reward_from_demonstrations(trunk, tok, train.problems, train.chosen, policy_samples,
                                       RewardFitConfig(epochs=30), seed=0)
    assert pair_accuracy(model, test) > 0.9  # demonstrations (short) over samples (long) on new prompts
    test_samples = Samples(test.problems[:50], [[c, r] for c, r in zip(test.chosen[:50], test.rejected[:50])],
                           [[False, False]] * 50)
    result = evaluate_reward(model, GoldReward(get_task("gcd")), test, test_samples, best_of=(1, 2))
    assert result["best_of_2_gold"] > result["best_of_1_gold"]  # picking the short answer pays under gold
    assert set(result) >= {"pair_accuracy", "pearson", "spearman", "spearman_within"}
    with pytest.raises(ConfigError, match="demonstrations and policy samples"):
        reward_from_demonstrations(trunk, tok, [], [], policy_samples)


def test_ensemble_members_share_one_frozen_trunk_and_score_as_individuals(trunk):
    from policylab.lm.preference import train_members

    tok = CharTokenizer()
    pairs, test = length_pairs(120, seed=0), length_pairs(40, seed=1)
    members = train_members(trunk, tok, pairs, k=3, cfg=RewardFitConfig(epochs=5), seed=1)
    assert all(m.trunk is members[0].trunk for m in members) and members[0].trunk is not trunk
    ensemble = RewardEnsemble(members, "wco")
    shared = ensemble.member_scores(test.problems, test.chosen)
    alone = torch.stack([m.score(test.problems, test.chosen) for m in members])
    assert torch.allclose(shared, alone, atol=1e-5)
    assert not torch.allclose(alone[0], alone[1])  # seeds differ, so members differ
    pool = Samples(test.problems[:10], [[c, r] for c, r in zip(test.chosen[:10], test.rejected[:10])],
                   [[False, False]] * 10)
    curve = best_of_n_curve(ensemble, GoldReward(get_task("gcd")), pool, [1, 2])
    assert [c["kl"] for c in curve] == [0.0, kl_best_of_n(2)] and curve[1]["proxy"] >= curve[0]["proxy"]


def test_rlvr_refuses_a_reward_model_without_score():
    from policylab.lm.baselines import GRPOConfig
    from policylab.lm.trainer import train_rlvr

    with pytest.raises(ConfigError, match=r"reward_model = object is not allowed: it needs a score"):
        train_rlvr(GRPOConfig(base_model="tiny-gcd"), env_id="gcd", steps=1, reward_model=object())
