"""THR: the influence score against hand computation, explicit loops and a real gradient step; the
threshold and reweighting rules; edge cases; and a short end-to-end run."""

import math

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.lm import GRPOConfig
from policylab.lm.advantages import grpo_advantage
from policylab.lm.losses.thr import (
    THRConfig,
    group_vocabulary,
    influence_scores,
    prediction_errors,
    thr_advantage,
    thr_reweight,
    thr_threshold,
    token_hidden_reward,
)
from policylab.lm.pretrain import load_base, pretrain
from policylab.lm.rollout import RolloutSource
from policylab.lm.tasks import get_task
from policylab.lm.trainer import RLVR, train_rlvr


def hand_group():
    """One group: response 0 correct (tokens 0, 1), response 1 wrong (tokens 0, 2); vocabulary 3, d = 2."""
    q = torch.tensor([[[.5, .25, .25], [.25, .5, .25]],
                      [[.5, .25, .25], [.25, .25, .5]]])[None]
    h = torch.tensor([[[1., 0.], [0., 1.]],
                      [[2., 0.], [2., 1.]]])[None]
    tokens = torch.tensor([[[0, 1], [0, 2]]])
    mask = torch.ones(1, 2, 2)
    correct = torch.tensor([[True, False]])
    return q, h, tokens, mask, correct


def scores(q, h, tokens, mask, correct, restrict=False):
    columns, valid = group_vocabulary(tokens, mask, q.shape[-1], restrict)
    return influence_scores(prediction_errors(q, tokens, columns, valid), h, mask, correct)


def loop_scores(q, h, tokens, mask, correct, columns=None):
    """s_{j,k} = sum_{i correct, k'} <e_o - q, e_o' - q'> <h, h'> by explicit loops (columns: V* or all)."""
    P, G, R, V = q.shape
    out = torch.zeros(P, G, R, dtype=torch.float64)

    def g(p, j, k, cols):
        return torch.tensor([float(tokens[p, j, k] == c) - float(q[p, j, k, c]) for c in cols], dtype=torch.float64)

    for p in range(P):
        cols = list(range(V)) if columns is None else columns[p]
        for j in range(G):
            for k in range(R):
                if not mask[p, j, k]:
                    continue
                for i in range(G):
                    for kk in range(R):
                        if correct[p, i] and mask[p, i, kk]:
                            alpha = g(p, i, kk, cols) @ g(p, j, k, cols)
                            out[p, j, k] += alpha * (h[p, i, kk].double() @ h[p, j, k].double())
    return out


def test_score_matches_hand_computation():
    # g00 = (.5, -.25, -.25), g01 = (-.25, .5, -.25), g10 = g00, g11 = (-.25, -.25, .5)
    # <g00,g00> = <g01,g01> = .375, <g00,g01> = <g00,g11> = <g01,g11> = -.1875, <g01,g10> = -.1875
    # s00 = .375*1 + (-.1875)*0; s01 = (-.1875)*0 + .375*1; s10 = .375*2 + (-.1875)*0; s11 = -.1875*2 - .1875*1
    expected = torch.tensor([[[0.375, 0.375], [0.75, -0.5625]]])
    torch.testing.assert_close(scores(*hand_group()), expected)


def test_threshold_is_the_lowest_mean_score_of_a_correct_response():
    s = torch.tensor([[[1., 3., 7.], [2., 2., 5.], [0., 0., 0.]]])
    mask = torch.tensor([[[1., 1., 0.], [1., 1., 1.], [1., 1., 1.]]])
    tau, defined = thr_threshold(s, mask, torch.tensor([[True, True, False]]), beta=0.5)
    # correct means 2 (the masked 7 does not count) and 3; the wrong response's 0 is ignored
    assert defined.tolist() == [True] and tau.item() == pytest.approx(0.5 * 2.0)


def test_reweighting_follows_the_sign_of_thr_on_dominant_tokens():
    q, h, tokens, mask, correct = hand_group()
    s = scores(q, h, tokens, mask, correct)
    adv = grpo_advantage(torch.tensor([[1.0, 0.0]]))  # +-1/sqrt(2) with the unbiased std
    a = 1 / math.sqrt(2)
    thr = token_hidden_reward(adv, s)
    assert thr[0, 0, 0] > 0  # a correct token whose step raises the correct likelihood: positive THR
    assert thr[0, 1, 0] < 0  # a wrong token resembling the correct one: penalising it lowers it
    assert thr[0, 1, 1] > 0  # a wrong token unlike the correct one: penalising it raises it
    tau, defined = thr_threshold(s, mask, correct)
    assert tau.item() == pytest.approx(0.375)  # so the correct tokens (s = tau) are not dominant
    for p, expected in ((0.5, [[a, a], [-a * 0.5, -a * 1.5]]), (-0.5, [[a, a], [-a * 1.5, -a * 0.5]]),
                        (0.0, [[a, a], [-a, -a]])):
        out = thr_reweight(adv, thr, s, tau, defined, mask, p)
        torch.testing.assert_close(out, torch.tensor([expected]), atol=1e-5, rtol=1e-5)
    only = thr_reweight(adv, thr, s, tau, defined, mask, 0.0, only_dominant=True)
    torch.testing.assert_close(only, torch.tensor([[[0.0, 0.0], [-a, -a]]]), atol=1e-5, rtol=1e-5)


def test_p_above_zero_on_a_wrong_token_is_nthr_with_eta_one_minus_p():
    """NTHR (arXiv 2505.18830 §5.2): wrong tokens with s > tau get eta * A; THR with p = 1 - eta agrees there."""
    q, h, tokens, mask, correct = hand_group()
    s = scores(q, h, tokens, mask, correct)
    adv = grpo_advantage(torch.tensor([[1.0, 0.0]]))
    tau, defined = thr_threshold(s, mask, correct)
    eta = 0.25
    out = thr_reweight(adv, token_hidden_reward(adv, s), s, tau, defined, mask, 1 - eta)
    selected = (s > tau[:, None, None]) & ~correct[..., None]
    assert selected.sum() == 1
    torch.testing.assert_close(out[selected], eta * adv[..., None].expand_as(s)[selected])


def test_score_matches_explicit_loops_on_random_groups_and_restricted_vocabulary():
    torch.manual_seed(0)
    P, G, R, V, D = 2, 3, 4, 6, 5
    q = torch.softmax(torch.randn(P, G, R, V, dtype=torch.float64), -1)
    h = torch.randn(P, G, R, D, dtype=torch.float64)
    tokens = torch.randint(0, 4, (P, G, R))  # ids 4 and 5 are never sampled
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]] * 2, dtype=torch.float64).view(P, G, R)
    correct = torch.tensor([[True, False, True], [False, True, False]])
    torch.testing.assert_close(scores(q, h, tokens, mask, correct), loop_scores(q, h, tokens, mask, correct))
    sampled = [sorted({int(tokens[p, j, k]) for j in range(G) for k in range(R) if mask[p, j, k]}) for p in range(P)]
    torch.testing.assert_close(scores(q, h, tokens, mask, correct, restrict=True),
                               loop_scores(q, h, tokens, mask, correct, sampled))
    # groups do not leak into each other
    torch.testing.assert_close(scores(q[1:], h[1:], tokens[1:], mask[1:], correct[1:]),
                               scores(q, h, tokens, mask, correct)[1:])


def test_thr_is_the_first_order_change_of_the_correct_likelihood_under_the_token_step():
    """Unconstrained features (NTHR Assump. 4.3): logits W h. One gradient step on A_j log pi(o_{j,k}) in W
    changes sum_{i correct} log pi(o_i) by lr * THR_{j,k} to first order."""
    torch.manual_seed(1)
    G, R, V, D = 3, 2, 4, 3
    W = torch.randn(V, D, dtype=torch.float64)
    h = torch.randn(1, G, R, D, dtype=torch.float64)
    tokens = torch.randint(0, V, (1, G, R))
    mask = torch.ones(1, G, R, dtype=torch.float64)
    correct = torch.tensor([[True, False, True]])
    adv = grpo_advantage(correct.double())

    def logp(weights):
        return torch.log_softmax(h @ weights.T, -1).gather(-1, tokens[..., None]).squeeze(-1)

    q = torch.softmax(h @ W.T, -1)
    thr = token_hidden_reward(adv, scores(q, h, tokens, mask, correct))
    lr = 1e-6
    for j, k in ((1, 0), (0, 1), (2, 0)):
        w = W.clone().requires_grad_(True)
        (adv[0, j] * logp(w)[0, j, k]).backward()
        after = logp(W + lr * w.grad)
        change = (after - logp(W))[0][correct[0]].sum() / lr
        assert change.item() == pytest.approx(thr[0, j, k].item(), rel=1e-4, abs=1e-6)


def test_groups_without_a_correct_answer_keep_grpo_advantages():
    s = torch.tensor([[[5.0, -5.0], [5.0, 1.0]]])
    mask = torch.ones(1, 2, 2)
    adv = grpo_advantage(torch.tensor([[0.3, 0.0]]))  # a shaped reward, no exact-match success
    correct = torch.tensor([[False, False]])
    tau, defined = thr_threshold(s, mask, correct)
    assert not defined.any() and torch.isfinite(tau).all()
    for only in (False, True):
        out = thr_reweight(adv, token_hidden_reward(adv, s), s, tau, defined, mask, 0.9, only)
        torch.testing.assert_close(out, adv[..., None].expand(1, 2, 2))


def test_all_correct_groups_and_empty_masks():
    s = torch.tensor([[[5.0, -5.0], [5.0, 1.0]]])
    adv = grpo_advantage(torch.ones(1, 2))
    tau, defined = thr_threshold(s, torch.ones(1, 2, 2), torch.tensor([[True, True]]))
    out = thr_reweight(adv, token_hidden_reward(adv, s), s, tau, defined, torch.ones(1, 2, 2), 0.9)
    assert torch.equal(out, torch.zeros(1, 2, 2))
    empty = torch.zeros(1, 2, 2)  # no response tokens at all: no anchor, no NaN
    q, h, tokens, _, correct = hand_group()
    s = scores(q, h, tokens, empty, correct, restrict=True)
    tau, defined = thr_threshold(s, empty, correct)
    assert torch.equal(s, torch.zeros_like(s)) and not defined.any() and torch.isfinite(tau).all()


def test_config_validation():
    with pytest.raises(ConfigError, match="thr_p"):
        THRConfig(thr_p=1.5)
    with pytest.raises(ConfigError, match="advantage"):
        THRConfig(advantage="grpo")
    with pytest.raises(ConfigError, match="THRConfig"):
        thr_advantage(torch.zeros(1, 2), cfg=GRPOConfig(advantage="thr"), batch=object(), policy=object())


def test_p_zero_is_grpo_and_p_nonzero_reweights_real_rollouts(base_models):
    policy, tok, _ = load_base(pretrain("tiny-gcd"))
    cfg = THRConfig(base_model="tiny-gcd", prompts_per_step=8, thr_p=0.5)
    source = RolloutSource(get_task("gcd"), tok, cfg, seed=0)
    batch = source.next_batch(RLVR(policy, cfg))
    grpo = RLVR(policy, GRPOConfig(base_model="tiny-gcd")).advantages(batch)
    assert torch.equal(RLVR(policy, cfg.replace(thr_p=0.0)).advantages(batch), grpo)
    policy.train()
    adv = RLVR(policy, cfg).advantages(batch)
    assert policy.training  # the scoring pass leaves the mode as it found it
    assert adv.shape == batch.response_mask.shape and torch.isfinite(adv).all()
    assert torch.equal(adv * (1 - batch.response_mask), torch.zeros_like(adv))
    ratio = adv[grpo != 0] / grpo[grpo != 0]
    assert set(ratio.round(decimals=4).unique().tolist()) <= {0.5, 1.0, 1.5}
    assert (ratio != 1).any()  # some tokens were dominant
    no_correct = (batch.exact.view(-1, cfg.group_size).sum(-1) == 0).repeat_interleave(cfg.group_size)
    assert torch.equal(adv[no_correct], grpo[no_correct])


def test_thr_trains_end_to_end(base_models):
    cfg = THRConfig(base_model="tiny-gcd", prompts_per_step=4, group_size=4, lr=1e-3, eval_prompts=10,
                    eval_ks=(1,), thr_p=-0.5)
    summary = train_rlvr(cfg, env_id="gcd", seed=0, steps=2, evals=1, checkpoints=0, progress=False, name="thr")
    assert summary["steps"] == 2 and math.isfinite(summary["eval"]["eval/greedy_acc"])
    initial = load_base(pretrain("tiny-gcd"))[0]
    changed = [not torch.equal(a, b) for a, b in zip(summary["algorithm"].policy.parameters(), initial.parameters())]
    assert any(changed)
