"""The Policy Cliff tools on hand-computed cases: soft and hard optima, the TV bound, the bonus, the LM distance."""

import math
import random

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm.policy import CausalPolicy, StepOutput, TinyGPT, TinyGPTConfig
from policylab.lm.policy_cliff import (
    FORMATS,
    FormatBonusConfig,
    format_bonus,
    format_probability,
    hard_policy,
    max_tv,
    next_token_tv,
    perturbed_pair_tv,
    policy_distance,
    soft_policy,
    soft_value_iteration,
    tied_bandit,
    tied_token_mdp,
    tv_bound,
    tv_distance,
)
from policylab.lm.rollout import RolloutBatch
from policylab.lm.tasks import CharTokenizer, Problem, get_task

TOK = CharTokenizer()


# -- exact tools: bandit ------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.05, 0.3, 2.0])
def test_soft_bandit_policy_is_the_softmax_of_rewards(alpha):
    rewards = [1.0, 1.0, 0.6, 0.0]
    weights = [math.exp(r / alpha) for r in rewards]
    expected = [w / sum(weights) for w in weights]
    assert np.allclose(soft_policy(rewards, alpha), expected, rtol=1e-12)


def test_hard_policy_splits_ties_uniformly_and_is_the_zero_temperature_policy():
    assert np.array_equal(hard_policy([1.0, 1.0, 0.6, 0.0]), [0.5, 0.5, 0.0, 0.0])
    assert np.array_equal(hard_policy([[2.0, 1.0, 2.0], [0.0, 3.0, 1.0]]), [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    assert np.array_equal(soft_policy([1.0, 1.0, 0.6, 0.0], 0.0), [0.5, 0.5, 0.0, 0.0])
    assert np.allclose(soft_policy([1.0, 1.001, 0.6, 0.0], 1e-5), [0.0, 1.0, 0.0, 0.0])


def test_tv_distance_per_state_and_its_max():
    p = [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
    q = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]
    assert np.allclose(tv_distance(p, q), [0.5, 0.0]) and max_tv(p, q) == pytest.approx(0.5)


@pytest.mark.parametrize("eps", [0.001, 0.01, 0.1, 1.0])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 1.0])
def test_soft_bandit_pair_matches_its_closed_form_and_stays_under_the_bound(eps, alpha):
    # +eps on action 0 vs on action 1: both softmaxes share Z, and only the two tied actions differ,
    # by (e^{(1+eps)/a} - e^{1/a}) / Z each
    z = math.exp((1 + eps) / alpha) + math.exp(1 / alpha) + math.exp(0.6 / alpha) + 1.0
    expected = (math.exp((1 + eps) / alpha) - math.exp(1 / alpha)) / z
    tv, bound = perturbed_pair_tv("bandit", eps, alpha)
    assert tv == pytest.approx(expected, rel=1e-9)
    assert bound == pytest.approx(eps / (2 * alpha))
    assert tv <= bound


@pytest.mark.parametrize("eps", [0.001, 0.01, 0.1, 1.0])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 1.0])
def test_soft_token_mdp_pair_stays_under_the_horizon_scaled_bound(eps, alpha):
    tv, bound = perturbed_pair_tv("token_mdp", eps, alpha)
    assert bound == pytest.approx(2 * eps / (2 * alpha))  # H = 2
    assert 0 < tv <= bound


@pytest.mark.parametrize("kind", ["bandit", "token_mdp"])
def test_hard_optimum_jumps_to_tv_one_for_any_eps(kind):
    assert perturbed_pair_tv(kind, 0.0, 0.0)[0] == 0.0
    for eps in (1e-9, 1e-3, 0.1):
        assert perturbed_pair_tv(kind, eps, 0.0)[0] == 1.0
    # while the soft pair shrinks with eps (Lipschitz): at eps = 1e-6, alpha = 0.1 it is below 1e-5
    assert perturbed_pair_tv(kind, 1e-6, 0.1)[0] < 1e-5


def test_prop_2_5_uniform_selection_moves_by_half_from_a_two_way_tie():
    assert tv_distance(hard_policy(tied_bandit(0.0, 0)), hard_policy(tied_bandit(1e-6, 1))) == pytest.approx(0.5)


def test_bound_formula():
    assert tv_bound(0.1, 0.5) == pytest.approx(0.1)
    assert tv_bound(0.1, 0.5, gamma=0.9) == pytest.approx(1.0)
    assert tv_bound(0.1, 0.5, horizon=3) == pytest.approx(0.3)
    assert tv_bound(0.1, 0.0) == math.inf


# -- exact tools: finite-horizon soft value iteration --------------------------------------------

def test_two_step_soft_value_iteration_by_hand():
    a, eps = 0.5, 0.2
    mdp = tied_token_mdp(eps, "xy")
    q, pi = soft_value_iteration(mdp.rewards, mdp.transitions, mdp.horizon, a)
    # step 1 (after the first token): Q_1 = R; rows: after x -> [xx, xy, xz] = [0.5, 1 + eps, 0]
    assert np.allclose(q[1, 1], [0.5, 1 + eps, 0.0]) and np.allclose(q[1, 2], [1.0, 0.5, 0.0])
    v_x = a * math.log(math.exp(0.5 / a) + math.exp((1 + eps) / a) + 1.0)
    v_y = a * math.log(math.exp(1.0 / a) + math.exp(0.5 / a) + 1.0)
    v_z = a * math.log(3.0)
    assert np.allclose(q[0, 0], [v_x, v_y, v_z])
    z = sum(math.exp(v / a) for v in (v_x, v_y, v_z))
    assert np.allclose(pi[0, 0], [math.exp(v / a) / z for v in (v_x, v_y, v_z)])
    weights = [math.exp(0.5 / a), math.exp((1 + eps) / a), 1.0]
    assert np.allclose(pi[1, 1], [w / sum(weights) for w in weights])


def test_hard_value_iteration_keeps_the_tie_and_kl_uses_the_reference():
    mdp = tied_token_mdp(0.0)
    q, pi = soft_value_iteration(mdp.rewards, mdp.transitions, mdp.horizon, 0.0)
    assert np.allclose(q[0, 0], [1.0, 1.0, 0.0]) and np.allclose(pi[0, 0], [0.5, 0.5, 0.0])
    # KL to a reference on the bandit: pi proportional to ref * exp(R / beta)
    ref, beta, rewards = np.array([0.4, 0.3, 0.2, 0.1]), 0.25, np.array([1.0, 1.0, 0.6, 0.0])
    weights = ref * np.exp(rewards / beta)
    assert np.allclose(soft_policy(rewards, beta, ref), weights / weights.sum())
    # the backup becomes beta log E_ref[exp(Q / beta)]
    q, _ = soft_value_iteration(mdp.rewards, mdp.transitions, 2, beta, np.array([0.5, 0.3, 0.2]))
    v_z = beta * math.log(0.5 + 0.3 + 0.2)
    assert q[0, 0, 2] == pytest.approx(v_z)


@pytest.mark.parametrize("kind", ["bandit", "token_mdp"])
def test_kl_regularized_pair_stays_under_the_bound(kind):
    ref = np.array([0.4, 0.3, 0.2, 0.1]) if kind == "bandit" else np.array([0.5, 0.3, 0.2])
    for eps in (0.01, 0.1, 0.5):
        for beta in (0.05, 0.1, 1.0):
            tv, bound = perturbed_pair_tv(kind, eps, beta, ref)
            assert 0 < tv <= bound


def test_bad_mdp_inputs_are_refused():
    mdp = tied_token_mdp()
    with pytest.raises(ConfigError):
        soft_value_iteration(mdp.rewards, mdp.transitions[:, :, :3], 2, 0.1)
    with pytest.raises(ConfigError):
        tied_token_mdp(0.1, "xx")
    with pytest.raises(ConfigError):
        soft_policy([1.0, 0.0], -1.0)


# -- the LM perturbation ------------------------------------------------------------------------

def test_formats_are_exclusive_and_all_score_as_correct():
    assert FORMATS["plain"].matches("6") and FORMATS["plain"].matches("12")
    assert not FORMATS["plain"].matches("06") and not FORMATS["plain"].matches(" 6")
    assert FORMATS["lead_space"].matches(" 6") and not FORMATS["lead_space"].matches("  6")
    assert FORMATS["lead_zero"].matches("06") and FORMATS["trail_space"].matches("6 ")
    gcd = get_task("gcd")
    problem = Problem("gcd", "gcd(12,18)=", "6")
    for fmt in FORMATS.values():  # the tie the perturbation breaks
        assert gcd.score(problem, fmt.render("6")).exact == 1.0


def batch_of(texts, truncated, rewards):
    n = len(texts)
    return RolloutBatch(torch.zeros(n, 3, dtype=torch.long), torch.ones(n, 3, dtype=torch.long), 2, torch.ones(n, 1),
                        torch.zeros(n, 1), torch.tensor(truncated), 2, torch.tensor(rewards), torch.tensor(rewards),
                        torch.zeros(n), [Problem("gcd", "gcd(12,18)=", "6")] * (n // 2), texts)


def test_format_bonus_adds_eps_to_responses_in_format_a_only():
    batch = batch_of(["6", " 6", "7", " 6"], [False, False, False, True], [1.0, 1.0, 0.0, 0.0])
    spaced = format_bonus(batch, FormatBonusConfig(bonus=0.1, bonus_format="lead_space", shaping=("format_bonus",)))
    assert torch.allclose(spaced.rewards, torch.tensor([1.0, 1.1, 0.0, 0.0]))
    plain = format_bonus(batch, FormatBonusConfig(bonus=0.25, bonus_format="plain", shaping=("format_bonus",)))
    assert torch.allclose(plain.rewards, torch.tensor([1.25, 1.0, 0.25, 0.0]))
    assert torch.equal(plain.exact, batch.exact) and torch.equal(batch.rewards, torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_format_bonus_needs_its_config():
    from policylab.lm.baselines import GRPOConfig

    with pytest.raises(ConfigError, match="FormatBonusConfig"):
        format_bonus(batch_of(["6", "6"], [False, False], [1.0, 1.0]), GRPOConfig())
    with pytest.raises(ConfigError, match="format_bonus"):
        FormatBonusConfig(bonus=0.1)
    with pytest.raises(ConfigError):
        FormatBonusConfig(bonus_format="roman", shaping=("format_bonus",))


# -- the LM distance ----------------------------------------------------------------------------

class TablePolicy(CausalPolicy):
    """Next-token distribution decided by the current token alone: '=' -> first, anything else -> rest."""

    max_length = 64

    def __init__(self, first: dict[str, float], rest: dict[str, float]):
        super().__init__()
        self.vocab_size = TOK.vocab_size
        table = torch.full((TOK.vocab_size, TOK.vocab_size), float("-inf"))
        table[:] = self._row(rest)
        table[TOK.encode("=")[0]] = self._row(first)
        self.table = table

    @staticmethod
    def _row(probs):
        row = torch.full((TOK.vocab_size,), float("-inf"))
        for token, p in probs.items():
            row[TOK.eos_id if token == "<eos>" else TOK.encode(token)[0]] = math.log(p)
        return row

    def step(self, input_ids, attention_mask, position_ids, cache=None, last_only=False, want_hidden=False):
        logits = self.table[input_ids]
        return StepOutput(logits[:, -1:] if last_only else logits, None, None)


def test_distance_of_a_hand_made_pair_with_known_tv():
    a = TablePolicy({" ": 0.5, "6": 0.5}, {"<eos>": 0.6, "6": 0.4})
    b = TablePolicy({" ": 0.2, "6": 0.8}, {"<eos>": 0.5, "6": 0.5})
    problems = [Problem("gcd", "gcd(12,18)=", "6"), Problem("gcd", "gcd(7,14)=", "7")]
    # first state (after '='): TV 0.3; every later state: TV 0.1 (mass 0.1 moves between EOS and '6';
    # for "7" the row is the same, since only the current token decides)
    tv, mask = next_token_tv(a, b, TOK, ["gcd(12,18)="], [" 6"])
    assert torch.allclose(tv[mask > 0], torch.tensor([0.3, 0.1, 0.1]))
    d = policy_distance(a, b, TOK, problems)
    # per problem: plain path 2 states (0.3, 0.1), lead-space path 3 states (0.3, 0.1, 0.1)
    assert d["tv_max"] == pytest.approx(0.3) and d["tv_first"] == pytest.approx(0.3)
    assert d["tv_mean"] == pytest.approx((0.3 + 0.1 + 0.3 + 0.1 + 0.1) / 5)
    # exact answer probabilities: "6<eos>" = 0.5 * 0.6 under a; " 6<eos>" = 0.2 * 0.5 * 0.5 under b
    assert format_probability(a, TOK, problems[:1], "plain").item() == pytest.approx(0.3)
    assert format_probability(b, TOK, problems[:1], "lead_space").item() == pytest.approx(0.05)


def test_distance_is_zero_between_identical_policies_and_positive_between_different_ones():
    torch.manual_seed(0)
    cfg = TinyGPTConfig(vocab_size=TOK.vocab_size, block_size=32, n_layer=1, n_head=2, d_model=16)
    first, second = TinyGPT(cfg), TinyGPT(cfg)
    problems = get_task("gcd").sample(5, "test", random.Random(0))
    same = policy_distance(first, first, TOK, problems)
    assert same == {"tv_max": 0.0, "tv_first": 0.0, "tv_mean": 0.0}
    assert policy_distance(first, second, TOK, problems)["tv_max"] > 0


def test_the_two_format_base_writes_both_formats(base_models):
    from policylab.lm.pretrain import load_policy

    policy, tokenizer = load_policy("tiny-tied-gcd", progress=False)
    problems = get_task("gcd").sample(40, "test", random.Random(0))
    plain, spaced = (format_probability(policy, tokenizer, problems, f) for f in ("plain", "lead_space"))
    share = float((plain / (plain + spaced)).mean())
    assert 0.2 < share < 0.8  # a tie the bonus can break either way
    assert float((plain + spaced).mean()) > 0.2
