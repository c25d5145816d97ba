"""The multi-turn protocol: environments, episode layout, behaviour log-probs, context limits, UFO's reward."""

from __future__ import annotations

import random

import pytest
import torch
from episodes import TOK, random_policy

from policylab.core.errors import ConfigError
from policylab.lm.generate import SamplingConfig
from policylab.lm.multiturn import (
    EPISODE_REWARDS,
    ContextLengthError,
    MultiTurnConfig,
    RetryEnv,
    SearchEnv,
    episode_batch,
    get_env,
    run_episodes,
)
from policylab.lm.multiturn.base import DemonstrationPretrainConfig, demonstration_batch, transcript_tokens
from policylab.lm.multiturn.ufo import UFOConfig, repeated_answer_share, ufo_return
from policylab.lm.policy import TinyGPT
from policylab.lm.tasks import Problem
from policylab.lm.trainer import RLVR


def policy_of(block_size: int = 96) -> TinyGPT:
    return random_policy(0, block_size, eos_bias=4.0)


def gcd_problem() -> Problem:
    return Problem("gcd", "gcd(12,18)=", "6")


# -- environments ---------------------------------------------------------------------------------

def test_retry_feedback_until_right_or_out_of_turns():
    env = RetryEnv("gcd", max_turns=3)
    p = gcd_problem()
    first = env.step(p, [], " 3 ")
    assert (first.done, first.correct, first.observation, first.key) == (False, False, "|try again|", "3")
    right = env.step(p, ["3"], "6")
    assert right.done and right.correct and right.observation == ""
    last = env.step(p, ["3", "4"], "5")
    assert last.done and not last.correct


def test_retry_answer_key_deletes_every_whitespace_as_the_official_reward_does():
    """UFO's distinct-answer count keys answers with all whitespace removed and case folded, so two list
    answers that differ only in where the spaces fall are one answer (a repeat)."""
    env = RetryEnv("number_sorting", max_turns=3)
    p = Problem("number_sorting", "sort 3 12=", "3 12")
    keys = [env.step(p, [], action).key for action in ("12 3", "1 23", " 1\t2  3 ", "123")]
    assert keys == ["123"] * 4
    assert env.step(p, [], "Ab C").key == "abc"
    assert repeated_answer_share([keys[:2]]).item() == 0.5


def test_search_reveals_digits_and_scores_the_final_answer():
    env = SearchEnv(length=3, max_turns=4)
    p = Problem("search", "code3:", "372")
    assert env.step(p, [], "?2").observation == "=7"
    invalid = env.step(p, [], "?9")
    assert invalid.observation == "=?" and invalid.info["invalid"] and invalid.key is None
    assert env.step(p, ["?1"], "!372").correct
    assert not env.step(p, ["?1"], "!370").correct
    out_of_turns = env.step(p, ["?1", "?2", "?3"], "?1")
    assert out_of_turns.done and not out_of_turns.correct and out_of_turns.observation == ""
    assert env.answer_action(p) == "!372"


def test_search_board_shows_every_digit_found_so_far():
    env = SearchEnv(length=4, max_turns=6, reveal="board")
    p = Problem("search", "code4:", "3721")
    assert env.step(p, [], "?2").observation == "=_7__"
    assert env.step(p, ["?2", "?9", "!1"], "?4").observation == "=_7_1"  # invalid actions reveal nothing
    assert env.step(p, ["?2", "?4"], "?2").observation == "=_7_1"  # a redundant query changes nothing
    rng = random.Random(3)
    for q in env.sample(30, "train", rng):
        found = set()
        for action, obs in env.demonstration(q, rng)[:-1]:
            found.add(int(action[1]))
            assert obs == "=" + "".join(q.answer[i - 1] if i in found else "_" for i in range(1, 5))
    with pytest.raises(ConfigError, match="reveal = 'all' is not allowed"):
        SearchEnv(reveal="all")


def test_search_split_is_by_code_and_disjoint():
    env = SearchEnv(length=3)
    rng = random.Random(0)
    train = {p.answer for p in env.sample(300, "train", rng)}
    test = {p.answer for p in env.sample(300, "test", rng)}
    assert train and test and not train & test


def test_demonstrations_follow_the_turn_rules():
    rng = random.Random(1)
    retry = RetryEnv("gcd", max_turns=4)
    for p in retry.sample(50, "train", rng):
        demo = retry.demonstration(p, rng)
        assert 1 <= len(demo) <= 4 and all(a != p.answer for a, _ in demo[:-1])
        assert demo[-1][1] == "" and all(o == retry.feedback for _, o in demo[:-1])
    search = SearchEnv(length=3, max_turns=5)
    for p in search.sample(50, "train", rng):
        demo = search.demonstration(p, rng)
        assert demo[-1][0].startswith("!") and len(demo) <= 5
        for action, obs in demo[:-1]:
            assert obs == f"={p.answer[int(action[1]) - 1]}"


def test_unknown_env_and_bad_options_name_what_is_allowed():
    with pytest.raises(KeyError, match="known: retry, search"):
        get_env("maze")
    with pytest.raises(ConfigError, match="allowed: task, max_turns"):
        get_env("retry", turns=3)
    with pytest.raises(ConfigError, match="max_turns = 0"):
        SearchEnv(max_turns=0)


# -- episodes ---------------------------------------------------------------------------------------

def play(env, n=6, block_size=96, max_new=4, policy="error", seed=0):
    problems = env.sample(n, "train", random.Random(seed))
    ep = run_episodes(policy_of(block_size), env, problems, TOK, SamplingConfig(max_new_tokens=max_new),
                      torch.Generator().manual_seed(seed), policy)
    return ep, episode_batch(ep, 1, env.max_turns, TOK, env)


def test_episode_layout_trains_only_agent_tokens():
    env = RetryEnv("gcd", max_turns=3)
    ep, batch = play(env)
    feedback = TOK.encode(env.feedback)
    for i in range(len(ep.problems)):
        row = batch.input_ids[i, batch.prompt_len:].tolist()
        mask = batch.response_mask[i].tolist()
        turns = len(ep.turns[i])
        assert int(batch.turns[i]) == turns
        start = 0
        for t in range(turns):
            end = int(batch.turn_end[i, t])
            agent = [j for j in range(start, end) if mask[j] == 1.0]
            assert agent and all(batch.turn_of_token[i, j] == t for j in agent)
            observed = [row[j] for j in range(start, end) if mask[j] == 0.0]
            if not ep.turns[i][t].done and not ep.truncated[i]:
                assert observed == feedback and row[agent[-1]] == TOK.eos_id
            start = end
        assert all(batch.turn_of_token[i, j] == -1 for j in range(len(mask)) if mask[j] == 0.0)
        assert batch.attention_mask[i, batch.prompt_len:].sum() == len(ep.responses[i])


def test_behaviour_logprobs_are_what_the_policy_assigns_the_batch():
    """The engine's update recomputes log-probs on the padded episode rows; they must equal the ones
    sampled turn by turn (else the first PPO ratio is not 1)."""
    env = SearchEnv(length=3, max_turns=4)
    problems = env.sample(8, "train", random.Random(0))
    policy = policy_of(64)
    ep = run_episodes(policy, env, problems, TOK, SamplingConfig(max_new_tokens=4, temperature=0.7),
                      torch.Generator().manual_seed(3))
    batch = episode_batch(ep, 2, env.max_turns, TOK, env)
    out = policy.response_outputs(batch.input_ids, batch.attention_mask, batch.prompt_len, temperature=0.7)
    mask = batch.response_mask
    assert mask.sum() > len(problems)  # several agent turns per row
    torch.testing.assert_close(out.logprobs * mask, batch.behaviour_logprobs, atol=1e-5, rtol=1e-5)


def test_engine_update_consumes_episodes_unchanged():
    env = RetryEnv("gcd", max_turns=3)
    _, batch = play(env, n=8)
    batch.group_size = 4
    batch.problems = batch.problems[::4]
    batch = batch.with_rewards(torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1]))
    policy = policy_of()
    before = [p.detach().clone() for p in policy.parameters()]
    metrics = RLVR(policy, MultiTurnConfig(minibatches=1)).update(batch)
    assert float(metrics["clip_frac"]) == 0.0 and float(metrics["skipped"]) == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_turn_rewards_are_the_verifiable_ones_and_sum_to_the_outcome():
    env = RetryEnv("gcd", max_turns=3)
    p = gcd_problem()
    assert env.step(p, [], "6").turn_reward == 1.0 and env.step(p, [], "5").turn_reward == 0.0
    ep, batch = play(env, n=8)
    expected = torch.tensor([[t.turn_reward for t in turns] + [0.0] * (3 - len(turns)) for turns in ep.turns])
    torch.testing.assert_close(batch.turn_rewards, expected)
    torch.testing.assert_close(EPISODE_REWARDS.get("return")(batch, None), batch.exact)


def test_a_turn_without_eos_ends_the_episode_unsolved():
    env = RetryEnv("gcd", max_turns=3)
    ep, batch = play(env, max_new=1)  # one token per turn: a random policy rarely ends a turn in time
    cut = [i for i, t in enumerate(ep.truncated) if t]
    assert cut
    for i in cut:
        assert ep.turns[i][-1].info.get("truncated") and not ep.success[i] and batch.truncated[i]


def test_context_overflow_is_an_error_or_ends_the_episode():
    env = RetryEnv("gcd", max_turns=5)
    with pytest.raises(ContextLengthError, match="model's context is 40"):
        play(env, block_size=40, max_new=4)
    ep, batch = play(env, block_size=40, max_new=4, policy="end")
    assert any(ep.context_ended) and batch.input_ids.shape[1] <= 40
    with pytest.raises(ContextLengthError, match="prompt of"):
        play(env, block_size=14, max_new=4)
    with pytest.raises(ConfigError, match="context_policy = 'wrap'"):
        play(env, policy="wrap")


def test_a_turn_budget_too_short_for_the_search_answer_is_refused():
    with pytest.raises(ConfigError, match="max_new_tokens = 6 is not allowed with code_length = 5"):
        MultiTurnConfig(env="search", code_length=5, max_new_tokens=6)
    with pytest.raises(ConfigError, match="the answer turn needs 7 tokens"):
        DemonstrationPretrainConfig(env="search", code_length=5, max_new_tokens=6)
    MultiTurnConfig(env="retry", code_length=9, max_new_tokens=4)  # the code length only matters on search


def test_multiturn_config_refuses_shapers_and_unknown_rewards():
    with pytest.raises(ConfigError, match="shaping"):
        MultiTurnConfig(shaping=("dynamic_sampling",))
    with pytest.raises(ConfigError, match="known episode rewards: outcome, return, ufo"):
        MultiTurnConfig(episode_reward="bonus")


def test_demonstration_batch_has_the_rollout_layout():
    turns = [("3", "|try again|"), ("6", "")]
    tokens, mask = transcript_tokens(TOK, turns)
    assert tokens == TOK.encode("3") + [TOK.eos_id] + TOK.encode("|try again|") + TOK.encode("6") + [TOK.eos_id]
    assert mask == [1.0, 1.0] + [0.0] * 11 + [1.0, 1.0]
    batch = demonstration_batch(TOK, [gcd_problem()], [turns])
    assert batch["response_mask"][0].tolist() == mask
    assert batch["input_ids"][0, batch["prompt_len"]:].tolist() == tokens


# -- UFO's reward -----------------------------------------------------------------------------------

def test_repeated_answer_share_hand_cases():
    shares = repeated_answer_share([["3", "3", "5"], ["1", "2"], [], ["4", None, "4"]])
    torch.testing.assert_close(shares, torch.tensor([1 - 2 / 3, 0.0, 0.0, 0.5]))


def test_ufo_return_discounts_success_and_charges_repeats():
    env = RetryEnv("gcd", max_turns=3)
    _, batch = play(env, n=3)
    batch.turn_rewards = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 0, 0]])
    batch.turn_answered = torch.ones(3, 3, dtype=torch.bool)
    batch.keys = [["3", "3", "6"], ["6"], ["1", "2", "2"]]
    got = ufo_return(batch, UFOConfig(max_turns=3))
    # 0.5^2 - 0.5 (1 - 2/3);  0.5^0 - 0;  0 - 0.5 (1 - 2/3)
    torch.testing.assert_close(got, torch.tensor([0.25 - 0.5 / 3, 1.0, -0.5 / 3]))
    plain = ufo_return(batch, UFOConfig(max_turns=3, turn_discount=1.0, repeat_penalty=0.0))
    torch.testing.assert_close(plain, torch.tensor([1.0, 1.0, 0.0]))  # = the outcome reward
