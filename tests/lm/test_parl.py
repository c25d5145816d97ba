"""PARL's math on hand-sized cases: the closed-form lower level, the implicit derivative against the Hessian
formula, the hypergradient against finite differences, the sampled estimate, the pair sampler, edge cases."""

import math
import random

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm.policy import TinyGPT, TinyGPTConfig
from policylab.lm.preference import GoldReward, bradley_terry_label, sample_responses
from policylab.lm.preference.parl import (
    CandidateSetPARL,
    FeatureReward,
    PARLConfig,
    QueriedPairs,
    TabularReward,
    boltzmann_log_jacobian,
    boltzmann_policy,
    candidate_pool,
    check_tables,
    distinct_pair_log_prob,
    expected_upper_objective,
    gap_closed,
    hypergradient,
    log_distinct_mass,
    log_first_marginal,
    preference_probability,
    sampled_upper_objective,
)
from policylab.lm.tasks import CharTokenizer, get_task

DOUBLE = torch.float64


def random_tables(prompts=3, candidates=4, seed=0):
    """Reward, log pi_ref, gold and mask with one padded slot (prompt 1) and a one-candidate prompt (prompt 2)."""
    generator = torch.Generator().manual_seed(seed)
    reward = torch.randn(prompts, candidates, generator=generator, dtype=DOUBLE)
    log_ref = torch.log_softmax(torch.randn(prompts, candidates, generator=generator, dtype=DOUBLE), -1)
    gold = torch.randn(prompts, candidates, generator=generator, dtype=DOUBLE)
    mask = torch.ones(prompts, candidates, dtype=torch.bool)
    mask[1, -1] = False
    mask[2, 1:] = False
    log_ref = torch.log_softmax(log_ref.masked_fill(~mask, -math.inf), -1)
    return reward, log_ref, gold, mask


# -- lower level -------------------------------------------------------------------------------

def test_boltzmann_policy_by_hand_on_three_responses():
    ref, reward, beta = [0.5, 0.3, 0.2], [1.0, 0.0, -1.0], 0.5
    weights = [p * math.exp(r / beta) for p, r in zip(ref, reward)]
    expected = [w / sum(weights) for w in weights]
    log_pi = boltzmann_policy(torch.tensor([reward], dtype=DOUBLE), torch.tensor([ref], dtype=DOUBLE).log(), beta,
                              torch.ones(1, 3, dtype=torch.bool))
    assert log_pi.exp()[0].tolist() == pytest.approx(expected, rel=1e-12)


def test_padding_gets_no_mass_and_a_single_candidate_gets_all_of_it():
    reward, log_ref, _, mask = random_tables()
    pi = boltzmann_policy(reward, log_ref, 0.7, mask).exp()
    assert pi[1, -1] == 0 and pi[2].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert torch.allclose(pi.sum(-1), torch.ones(3, dtype=DOUBLE))


def test_implicit_derivative_equals_the_hessian_formula():
    """(P4): -[d2V/dz2]^+ d2V/dz dr at the optimum, mapped to log-probabilities, is (delta - pi) / beta."""
    beta, log_ref = 0.6, torch.tensor([0.5, 0.3, 0.2], dtype=DOUBLE).log()
    reward = torch.tensor([0.4, -0.2, 1.1], dtype=DOUBLE)

    def value(z, r):  # V(r, pi_z) = E_pi[r] - beta KL(pi || pi_ref), pi = softmax(z)
        log_pi = torch.log_softmax(z, -1)
        return (log_pi.exp() * (r - beta * (log_pi - log_ref))).sum()

    z_star = log_ref + reward / beta
    hessian = torch.autograd.functional.hessian(value, (z_star, reward))
    dz_dr = -torch.linalg.pinv(hessian[0][0]) @ hessian[0][1]
    pi = torch.softmax(z_star, -1)
    dlogpi_dr = (torch.eye(3, dtype=DOUBLE) - pi[None, :].expand(3, 3)) @ dz_dr  # Jacobian of log-softmax
    closed_form = boltzmann_log_jacobian(torch.log(pi)[None], beta)[0]
    assert torch.allclose(dlogpi_dr, closed_form, atol=1e-10)
    # and it is the derivative of the closed form itself
    autograd = torch.autograd.functional.jacobian(
        lambda r: boltzmann_policy(r[None], log_ref[None], beta, torch.ones(1, 3, dtype=torch.bool))[0], reward)
    assert torch.allclose(autograd, closed_form, atol=1e-12)


# -- upper level -------------------------------------------------------------------------------

def test_distinct_pair_distribution_sums_to_one_even_for_a_sharp_policy():
    log_pi = torch.log(torch.tensor([[0.5, 0.3, 0.2], [1 - 2e-20, 1e-20, 1e-20]], dtype=DOUBLE))
    for row in range(2):
        a, b = zip(*[(i, j) for i in range(3) for j in range(3) if i != j])
        q = distinct_pair_log_prob(log_pi, torch.full((6,), row), torch.tensor(a), torch.tensor(b)).exp()
        assert float(q.sum()) == pytest.approx(1.0, rel=1e-9)
    assert log_distinct_mass(log_pi)[1].exp() == pytest.approx(4e-20, rel=1e-9)  # 1 - S where 1 - S underflows
    assert log_first_marginal(log_pi).exp()[1].tolist() == pytest.approx([0.5, 0.25, 0.25], rel=1e-9)


def test_upper_objective_by_hand_with_two_candidates():
    """Two candidates: each ordered pair has q = 1/2, so G = p log sigmoid(d) + (1 - p) log sigmoid(-d)."""
    reward = torch.tensor([[0.9, -0.3]], dtype=DOUBLE)
    gold = torch.tensor([[1.0, 0.2]], dtype=DOUBLE)
    log_ref = torch.tensor([[0.7, 0.3]], dtype=DOUBLE).log()
    p = 1 / (1 + math.exp(-0.8 / 0.5))
    d = 1.2
    expected = p * math.log(1 / (1 + math.exp(-d))) + (1 - p) * math.log(1 / (1 + math.exp(d)))
    got = expected_upper_objective(reward, log_ref, 0.4, gold, 0.5, torch.ones(1, 2, dtype=torch.bool))
    assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", [0.3, 1.0])
@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_hypergradient_matches_central_finite_differences(beta, temperature):
    reward, log_ref, gold, mask = random_tables(seed=3)
    direct, implicit = hypergradient(reward, log_ref, beta, gold, temperature, mask)
    eps = 1e-6
    numeric = torch.zeros_like(reward)
    for i in range(reward.shape[0]):
        for j in range(reward.shape[1]):
            step = torch.zeros_like(reward)
            step[i, j] = eps
            upper = expected_upper_objective(reward + step, log_ref, beta, gold, temperature, mask)
            lower = expected_upper_objective(reward - step, log_ref, beta, gold, temperature, mask)
            numeric[i, j] = (upper - lower) / (2 * eps)
    assert torch.allclose(direct + implicit, numeric, atol=1e-8)
    # the implicit term matters here: the direct term alone is not the gradient
    assert implicit.abs().max() > 1e-3 and not torch.allclose(direct, numeric, atol=1e-4)
    # padding and the one-candidate prompt get nothing
    assert direct[1, -1] == implicit[1, -1] == 0 and (direct[2] == 0).all() and (implicit[2] == 0).all()


def test_all_equal_gold_gives_no_hypergradient_at_equal_rewards_and_pulls_rewards_together_otherwise():
    _, log_ref, _, mask = random_tables()
    gold = torch.full_like(log_ref, 0.3)
    direct, implicit = hypergradient(torch.zeros_like(log_ref), log_ref, 0.5, gold, 0.5, mask)
    assert direct.abs().max() < 1e-15 and implicit.abs().max() < 1e-15
    reward = torch.tensor([[2.0, 0.0, 0.0, -2.0]] * 3, dtype=DOUBLE)
    direct, _ = hypergradient(reward, log_ref, 0.5, gold, 0.5, mask)
    assert direct[0, 0] < 0 < direct[0, 3]  # coin-flip labels: ascending the likelihood shrinks the spread


def enumerate_pairs(mask):
    rows = [(x, a, b) for x in range(mask.shape[0]) for a in range(mask.shape[1]) for b in range(mask.shape[1])
            if a != b and mask[x, a] and mask[x, b]]
    return [torch.tensor(c) for c in zip(*rows)]


def test_sampled_estimate_over_every_pair_is_the_exact_objective_and_hypergradient():
    """Every ordered pair once, drawn 'uniformly' (behaviour 1 / #pairs), labelled with P(a > b) by repeating each
    pair as chosen with weight p and rejected with weight 1 - p: the estimate (P6) is G and its gradient is
    direct + implicit; detaching the weights leaves the direct term."""
    generator = torch.Generator().manual_seed(5)
    reward = torch.randn(2, 4, generator=generator, dtype=DOUBLE)
    log_ref = torch.log_softmax(torch.randn(2, 4, generator=generator, dtype=DOUBLE), -1)
    gold = torch.randn(2, 4, generator=generator, dtype=DOUBLE)
    mask = torch.ones(2, 4, dtype=torch.bool)
    beta, temperature = 0.8, 0.0  # argmax labels: each pair's label is certain, so one copy per pair is exact
    prompt, a, b = enumerate_pairs(mask)
    first_wins = gold[prompt, a] > gold[prompt, b]
    pairs = QueriedPairs(prompt, torch.where(first_wins, a, b), torch.where(first_wins, b, a))
    behaviour = torch.full((len(prompt),), -math.log(12), dtype=DOUBLE)
    direct, implicit = hypergradient(reward, log_ref, beta, gold, temperature, mask)
    for implicit_on, expected in ((True, direct + implicit), (False, direct)):
        table = reward.clone().requires_grad_()
        log_pi = boltzmann_policy(table, log_ref, beta, mask)
        estimate = sampled_upper_objective(table, log_pi, pairs, behaviour, "importance", implicit_on)
        (grad,) = torch.autograd.grad(estimate, table)
        assert float(estimate.detach()) == pytest.approx(float(expected_upper_objective(reward, log_ref, beta, gold,
                                                                               temperature, mask)), rel=1e-12)
        assert torch.allclose(grad, expected, atol=1e-12)


def test_unweighted_estimate_is_the_plain_bradley_terry_log_likelihood():
    reward = torch.tensor([[1.0, 0.0, -0.5]], dtype=DOUBLE)
    pairs = QueriedPairs(torch.tensor([0, 0]), torch.tensor([0, 2]), torch.tensor([1, 1]))
    log_pi = torch.log_softmax(reward, -1)
    value = sampled_upper_objective(reward, log_pi, pairs, torch.zeros(2, dtype=DOUBLE), "none", False)
    expected = (math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(0.5)))) / 2
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_preference_probability_is_the_labellers_frequency():
    rng = random.Random(0)
    for margin, temperature in ((0.3, 0.5), (-1.0, 1.0), (0.0, 0.0), (0.2, 0.0)):
        draws = sum(bradley_terry_label(margin, temperature, rng) for _ in range(20_000)) / 20_000
        expected = float(preference_probability(torch.tensor(margin, dtype=DOUBLE), temperature))
        assert draws == pytest.approx(expected, abs=0.015)


# -- the loop ----------------------------------------------------------------------------------

def small_bandit(seed=0, prompts=6, candidates=8):
    generator = torch.Generator().manual_seed(seed)
    gold = torch.randn(prompts, candidates, generator=generator, dtype=DOUBLE)
    log_ref = torch.log_softmax(torch.randn(prompts, candidates, generator=generator, dtype=DOUBLE), -1)
    return log_ref, torch.ones(prompts, candidates, dtype=torch.bool), gold


def test_query_draws_distinct_pairs_with_the_probabilities_of_q():
    log_ref, mask, gold = small_bandit(prompts=2, candidates=3)
    mask[1, 1:] = False  # a one-candidate prompt is never asked about
    log_ref = torch.log_softmax(log_ref.masked_fill(~mask, -math.inf), -1)
    reward = TabularReward(2, 3)
    reward.nu.data[0] = torch.tensor([1.0, 0.0, -0.5], dtype=DOUBLE)
    algo = CandidateSetPARL(reward, log_ref, mask, gold, PARLConfig(queries_per_round=30_000), seed=1)
    pairs = algo.query()
    assert (pairs.prompt == 0).all() and (pairs.chosen != pairs.rejected).all()
    log_pi = algo.policy().detach()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        seen = float((((pairs.chosen == a) & (pairs.rejected == b)) | ((pairs.chosen == b) & (pairs.rejected == a)))
                     .float().mean())
        q = 2 * float(distinct_pair_log_prob(log_pi, torch.tensor([0]), torch.tensor([a]), torch.tensor([b])).exp())
        assert seen == pytest.approx(q, abs=0.01)


def test_labels_follow_the_gold_at_zero_temperature_and_the_reference_source_ignores_the_reward():
    log_ref, mask, gold = small_bandit()
    cfg = PARLConfig(label_temperature=0.0, source="reference", weighting="none", implicit=False,
                     queries_per_round=200)
    reward = TabularReward(*gold.shape)
    reward.nu.data.normal_()
    algo = CandidateSetPARL(reward, log_ref, mask, gold, cfg)
    pairs = algo.query()
    assert (gold[pairs.prompt, pairs.chosen] > gold[pairs.prompt, pairs.rejected]).all()
    assert torch.allclose(algo.collection_log_pi[0], torch.log_softmax(log_ref, -1))


@pytest.mark.parametrize("estimator", [dict(weighting="none", implicit=False),
                                       dict(weighting="importance", implicit=False),
                                       dict(weighting="importance", implicit=True)])
def test_the_loop_learns_a_small_bandit_and_repeats_itself(estimator):
    log_ref, mask, gold = small_bandit(seed=2)
    cfg = PARLConfig(queries_per_round=16, updates_per_round=20, lr=0.1, label_temperature=0.1, **estimator)

    def run():
        algo = CandidateSetPARL(TabularReward(*gold.shape), log_ref, mask, gold, cfg, seed=4)
        for _ in range(8):
            metrics = algo.update(algo.query())
        return gap_closed(algo.policy().detach(), log_ref, gold, mask), metrics

    first, metrics = run()
    assert first > 0.3 and metrics["pairs"] == 128 and 1 <= metrics["effective_sample_size"] <= 128
    assert run()[0] == first


def test_the_score_l2_is_half_the_sum_of_squares_per_queried_pair():
    """The L2 term's gradient is beta r / N on each queried reward (beta/2 (r_w^2 + r_l^2) averaged over N pairs),
    the convention the reward models share (`score_l2_penalty`)."""
    log_ref, mask, gold = small_bandit(seed=1, prompts=3, candidates=4)

    def one_sgd_step(score_l2):
        reward = TabularReward(*gold.shape)
        reward.nu.data = torch.randn(gold.shape, generator=torch.Generator().manual_seed(5), dtype=DOUBLE)
        cfg = PARLConfig(queries_per_round=8, updates_per_round=1, score_l2=score_l2)
        algo = CandidateSetPARL(reward, log_ref, mask, gold, cfg, seed=3)
        algo.optimizer = torch.optim.SGD(reward.parameters(), lr=1.0)  # the step is minus the gradient
        pairs = algo.query()
        start = reward.nu.detach().clone()
        algo.update(pairs)
        return pairs, start, reward.nu.detach() - start

    pairs, start, with_l2 = one_sgd_step(0.3)
    _, _, without = one_sgd_step(0.0)
    expected = torch.zeros_like(start)
    for slot in (pairs.chosen, pairs.rejected):
        expected.index_put_((pairs.prompt, slot), 0.3 * start[pairs.prompt, slot] / len(pairs), accumulate=True)
    torch.testing.assert_close(without - with_l2, expected)


# -- language-model candidate pools --------------------------------------------------------------

def test_candidate_pool_folds_samples_into_distinct_candidates_with_their_frequencies():
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    policy = TinyGPT(TinyGPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=16))
    task = get_task("gcd")
    problems = task.sample(3, "train", random.Random(0))
    gold = GoldReward(task)
    pool = candidate_pool(policy, tokenizer, problems, n=6, gold=gold, max_new_tokens=3, seed=0)
    samples = sample_responses(policy, tokenizer, problems, 6, 3, seed=0)  # the same draws
    assert torch.allclose(pool.log_ref.exp().sum(-1), torch.ones(3, dtype=DOUBLE))
    for i, (problem, responses) in enumerate(zip(problems, pool.responses)):
        assert int(pool.mask[i].sum()) == len(responses) == len(set(samples.responses[i]))
        for j, response in enumerate(responses):
            share = samples.responses[i].count(response) / 6
            cut = samples.truncated[i][samples.responses[i].index(response)]
            assert float(pool.log_ref[i, j].exp()) == pytest.approx(share, rel=1e-12)
            assert float(pool.gold[i, j]) == pytest.approx(gold.value(problem, response, cut), rel=1e-12)
    features = torch.randn(3, pool.mask.shape[1], 5)
    reward = FeatureReward(torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)), features)
    assert reward().shape == pool.mask.shape and (reward() == 0).all()  # starts at pi_ref


# -- errors a user can act on --------------------------------------------------------------------

def test_config_errors_name_the_field_the_value_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"PARLConfig.beta = 0.0 is not allowed: must be > 0"):
        PARLConfig(beta=0.0)
    with pytest.raises(ConfigError, match=r"PARLConfig.source = 'both' is not allowed: must be one of 'policy'"):
        PARLConfig(source="both")
    with pytest.raises(ConfigError, match=r"implicit = True is not allowed with weighting = 'none'"):
        PARLConfig(weighting="none")
    with pytest.raises(ConfigError, match=r"label_temperature = -1.0 is not allowed: must be >= 0"):
        PARLConfig(label_temperature=-1.0)


def test_table_errors():
    reward, log_ref, gold, mask = random_tables()
    with pytest.raises(ConfigError, match=r"gold has shape \(3, 3\); must match log_ref \(3, 4\)"):
        check_tables(log_ref, mask, gold=gold[:, :3])
    empty = mask.clone()
    empty[0] = False
    with pytest.raises(ConfigError, match=r"prompts \[0\] have no candidate"):
        check_tables(log_ref, empty)
    broken = log_ref.clone()
    broken[0, 0] = -math.inf
    with pytest.raises(ConfigError, match="log_ref must be finite on every candidate"):
        check_tables(broken, mask)
    with pytest.raises(ConfigError, match="beta = -1 is not allowed"):
        boltzmann_policy(reward, log_ref, -1, mask)
    single = mask.clone()
    single[:, 1:] = False
    with pytest.raises(ConfigError, match="no prompt has two candidates"):
        CandidateSetPARL(TabularReward(3, 4), log_ref, single, gold)
    with pytest.raises(ConfigError, match="no prompt has two candidates"):
        expected_upper_objective(reward, log_ref, 1.0, gold, 0.5, single)
    with pytest.raises(ConfigError, match="no gap to close"):
        gap_closed(log_ref, log_ref, torch.zeros_like(gold), mask)
    with pytest.raises(ConfigError, match="label temperature = -0.1 is not allowed"):
        preference_probability(torch.zeros(1), -0.1)
