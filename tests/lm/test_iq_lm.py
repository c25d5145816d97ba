"""IQLearn as TD-regularized MLE (policylab.lm.iq_lm): Eq. 14 by hand, lambda = 0 is MLE, the reward telescopes."""

import math
import random

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.core.run import RunDir, read_metrics
from policylab.lm.iq_lm import (
    IQLM,
    Between,
    DemonstrationSet,
    IQLMConfig,
    evaluate_iq_lm,
    initial_policy,
    iq_lm_loss,
    next_state_values,
    sequence_rewards,
    token_rewards,
    train_iq_lm,
)
from policylab.lm.pretrain import SFT, PretrainConfig, sft_batch
from policylab.lm.tasks import Problem, distinct_problems, get_task

torch.set_num_threads(1)

# Two responses over a 3-word vocabulary: row 0 has two tokens (the second is EOS), row 1 one token, then padding.
LOGITS = [[[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]],
          [[-0.3, 0.8, 0.1], [7.0, -9.0, 3.0]]]
TARGETS = [[2, 0], [1, 0]]
MASK = [[1.0, 1.0], [1.0, 0.0]]


def case():
    return (torch.tensor(LOGITS, requires_grad=True), torch.tensor(TARGETS), torch.tensor(MASK))


def logsumexp(values):
    return math.log(sum(math.exp(v) for v in values))


def random_case(seed=0, B=5, R=6, V=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, R, V, generator=g)
    targets = torch.randint(0, V, (B, R), generator=g)
    lengths = torch.tensor([R, R - 1, 1, R - 3, 2][:B])
    mask = (torch.arange(R)[None] < lengths[:, None]).float()
    return logits, targets, mask


def test_td_term_and_rewards_by_hand():
    logits, targets, mask = case()
    gamma, lam = 0.9, 0.3
    # row 0: r_0 = Q(s_0, a_0) - gamma V(s_1), r_1 = Q(s_1, EOS) - 0; row 1: one token, then the episode ends
    r00 = LOGITS[0][0][2] - gamma * logsumexp(LOGITS[0][1])
    r01 = LOGITS[0][1][0]
    r10 = LOGITS[1][0][1]
    rewards = token_rewards(logits, targets, mask, gamma)
    assert rewards.flatten().tolist() == pytest.approx([r00, r01, r10, 0.0], abs=1e-6)
    nll = -((LOGITS[0][0][2] - logsumexp(LOGITS[0][0])) + (LOGITS[0][1][0] - logsumexp(LOGITS[0][1]))
            + (LOGITS[1][0][1] - logsumexp(LOGITS[1][0]))) / 3
    td = (r00 ** 2 + r01 ** 2 + r10 ** 2) / 3
    loss, parts = iq_lm_loss(logits, targets, mask, lam, gamma)
    assert parts["loss/nll"].item() == pytest.approx(nll, abs=1e-6)
    assert parts["loss/td"].item() == pytest.approx(td, abs=1e-6)
    assert loss.item() == pytest.approx(nll + lam * td, abs=1e-6)


def test_td_gradient_flows_through_the_next_state_value():
    logits, targets, mask = case()
    gamma = 0.9
    td = iq_lm_loss(logits, targets, mask, 1.0, gamma)[0] - iq_lm_loss(logits, targets, mask, 0.0, gamma)[0]
    td.backward()
    # d td / d Q(s_1, j) for row 0: (2 / 3) [ r_00 * (-gamma softmax(Q(s_1))_j) + r_01 * 1{j = EOS} ]
    r00 = LOGITS[0][0][2] - gamma * logsumexp(LOGITS[0][1])
    r01 = LOGITS[0][1][0]
    softmax = [math.exp(v - logsumexp(LOGITS[0][1])) for v in LOGITS[0][1]]
    expected = [2 / 3 * (r00 * -gamma * p + r01 * (j == 0)) for j, p in enumerate(softmax)]
    assert logits.grad[0, 1].tolist() == pytest.approx(expected, abs=1e-6)
    assert logits.grad[0, 1, 1].item() != 0.0  # a token never taken still moves through V(s')


def test_lambda_zero_is_exactly_the_mle_loss_and_gradient():
    logits, targets, mask = random_case()
    logits.requires_grad_(True)
    loss, _ = iq_lm_loss(logits, targets, mask, lam=0.0)
    loss.backward()
    ours = logits.grad.clone()
    logits.grad = None
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    mle = -(logp * mask).sum() / mask.sum()
    mle.backward()
    assert torch.equal(loss.detach(), mle.detach())
    assert torch.equal(ours, logits.grad)
    logits.grad = None
    iq_lm_loss(logits, targets, mask, lam=0.5)[0].backward()
    assert not torch.allclose(ours, logits.grad)  # the regularizer does change the gradient when lambda > 0


def test_lambda_zero_update_equals_pretrain_sft_update():
    cfg = IQLMConfig(lam=0.0, max_steps=10, warmup=2)
    torch.manual_seed(0)
    policy, tokenizer = initial_policy(cfg)
    twin = type(policy)(policy.cfg)
    twin.load_state_dict(policy.state_dict())
    batch = sft_batch(tokenizer, Between().sample(16, "train", random.Random(0)))
    sft = SFT(twin, PretrainConfig(lr=cfg.lr, warmup=cfg.warmup, weight_decay=cfg.weight_decay,
                                   max_steps=cfg.max_steps))
    ours = IQLM(policy, cfg)
    for _ in range(3):
        m_ours, m_sft = ours.update(batch), sft.update(batch)
        assert torch.equal(m_ours["loss/nll"], m_sft["loss/nll"])
    for a, b in zip(policy.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_value_is_zero_after_eos_and_padding_is_masked():
    logits, targets, mask = random_case(seed=3)
    values = torch.randn(mask.shape)
    following = next_state_values(values, mask)
    last = mask.sum(-1).long() - 1
    assert torch.all(following[torch.arange(len(last)), last] == 0)  # V(s') = 0 after the final (EOS) token
    assert torch.all(following[mask == 0] == 0)
    inner = (mask[:, 1:] > 0)
    assert torch.equal(following[:, :-1][inner], values[:, 1:][inner])

    def loss_and_grad(x):
        x = x.clone().requires_grad_(True)
        loss, _ = iq_lm_loss(x, targets, mask, lam=0.7, gamma=0.95)
        loss.backward()
        return loss.detach(), x.grad

    base_loss, base_grad = loss_and_grad(logits)
    garbage = logits.clone()
    garbage[mask == 0] = torch.randn_like(garbage[mask == 0]) * 100
    row, col = (mask == 0).nonzero()[0]
    garbage[row, col, 0] = float("inf")
    other_loss, other_grad = loss_and_grad(garbage)
    assert torch.equal(base_loss, other_loss)
    assert torch.equal(base_grad, other_grad)
    assert torch.all(base_grad[mask == 0] == 0)
    changed_targets = targets.clone()
    changed_targets[mask == 0] = (changed_targets[mask == 0] + 1) % logits.shape[-1]
    assert torch.equal(iq_lm_loss(logits, changed_targets, mask, 0.7, 0.95)[0], base_loss)


def test_sequence_reward_telescopes_when_gamma_is_one():
    logits, targets, mask = random_case(seed=5)
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    v0 = torch.logsumexp(logits[:, 0], -1)
    expected = (logp * mask).sum(-1) + v0  # sum_t r_t = sum_t log pi(a_t|s_t) + V(s_0)
    assert torch.allclose(sequence_rewards(logits, targets, mask, gamma=1.0), expected, atol=1e-5)
    assert not torch.allclose(sequence_rewards(logits, targets, mask, gamma=0.5), expected, atol=1e-3)


@pytest.mark.parametrize("field,value", [("lam", -0.1), ("gamma", 1.5), ("gamma", -0.01), ("lr", 0.0),
                                          ("eval_samples", 1), ("demonstrations", -1)])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"IQLMConfig\.{field} = {value}"):
        IQLMConfig(**{field: value})
    with pytest.raises(ConfigError, match="divisible by n_head"):
        IQLMConfig(d_model=30, n_head=4)


def test_between_accepts_any_valid_answer_and_draws_them_uniformly():
    task = get_task("between")
    problem = Problem("between", "between(3,7)=", "5", {"low": 3, "high": 7})
    assert [task.score(problem, r).exact for r in ("4", "5", "6")] == [1.0, 1.0, 1.0]
    assert [task.score(problem, r).exact for r in ("3", "7", "05", " 5", "-5", "", "x")] == [0.0] * 7
    assert task.score(problem, "9").dense == pytest.approx(0.97)
    rng = random.Random(0)
    positions = []
    for p in task.sample(3000, "train", rng):
        low, high, answer = p.meta["low"], p.meta["high"], int(p.answer)
        assert low < answer < high and task.score(p, p.answer).exact == 1.0
        positions.append((answer - low - 1) / (high - low - 2))  # 0 for low + 1, 1 for high - 1
    assert sum(positions) / len(positions) == pytest.approx(0.5, abs=0.03)
    assert sum(x < 0.25 for x in positions) / len(positions) == pytest.approx(0.25, abs=0.04)


def test_demonstration_set_holds_one_answer_per_train_question():
    task = Between()
    demos = distinct_problems(task, 50, "train", seed=1)
    data = DemonstrationSet(task, demos)
    drawn = data.sample(500, "train", random.Random(0))
    assert {p.prompt for p in drawn} <= {p.prompt for p in demos}
    assert len({(p.prompt, p.answer) for p in drawn}) == len({p.prompt for p in drawn})
    with pytest.raises(ConfigError, match="train-split"):
        data.sample(1, "test", random.Random(0))


def test_evaluation_counts_distinct_correct_answers_and_ranks_by_reward():
    cfg = IQLMConfig()
    torch.manual_seed(0)
    policy, tokenizer = initial_policy(cfg)
    problems = distinct_problems(Between(), 10, "test", seed=0)
    result = evaluate_iq_lm(policy, tokenizer, Between(), problems, 4, samples=4)
    assert 0 <= result["sample_acc"] <= 1 and 0 <= result["distinct_correct"] <= 4
    assert 0 <= result["reward_auc"] <= 1 and policy.training


def test_training_lowers_the_td_term_only_when_lambda_is_positive(tmp_path):
    runs = {}
    for lam in (0.0, 1.0):
        cfg = IQLMConfig(lam=lam, max_steps=40, warmup=5, demonstrations=64, eval_prompts=10, eval_samples=2)
        run = RunDir(tmp_path, f"lam{lam}", "main", 0)
        runs[lam] = train_iq_lm(cfg, env_id="between", seed=0, run=run, evals=1, progress=False)
    assert runs[1.0]["last"]["loss/td"] < 0.5 * runs[0.0]["last"]["loss/td"]
    first = next(r for r in read_metrics(RunDir(tmp_path, "lam0.0", "main", 0).metrics_path) if "loss/nll" in r)
    assert runs[0.0]["last"]["loss/nll"] < 0.8 * first["loss/nll"]
    again = train_iq_lm(IQLMConfig(lam=1.0, max_steps=40, warmup=5, demonstrations=64, eval_prompts=10,
                                   eval_samples=2), env_id="between", seed=0, run=RunDir(tmp_path, "lam1.0", "main", 0),
                        evals=1, progress=False)
    assert again["steps"] == 40 and again["eval"] == runs[1.0]["eval"]  # resumed from the final checkpoint
