"""DPO and the r -> Q* analysis (policylab.lm.preference.dpo_q): the loss and implicit rewards by hand,
the first wrong token, credit assignment on a policy that differs from its reference at one token,
the pair source, and a short DPO run that widens the margin and resumes to the same weights."""

import math

import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.lm.policy import ResponseOutputs
from policylab.lm.preference import PreferencePairs
from policylab.lm.preference.dpo_q import (
    DPOConfig,
    PairSource,
    credit_assignment,
    dpo_loss,
    first_wrong_position,
    implicit_token_reward,
    train_dpo,
)
from policylab.lm.pretrain import load_base, pretrain
from policylab.lm.tasks import CharTokenizer, Problem


def test_dpo_loss_and_implicit_rewards_by_hand():
    loss, m = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    # implicit returns: chosen 0.5 * 1 = 0.5, rejected 0.5 * -1 = -0.5; loss = -log sigmoid(1)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1.0)))
    assert float(m["reward/chosen"]) == 0.5 and float(m["reward/rejected"]) == -0.5 and float(m["reward/margin"]) == 1
    equal, _ = dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.1)
    assert float(equal) == pytest.approx(math.log(2.0))  # the policy is its reference: no preference yet
    token = implicit_token_reward(torch.tensor([[-0.1, -2.0]]), torch.tensor([[-0.5, -1.0]]), 0.1)
    assert torch.allclose(token, torch.tensor([[0.04, -0.1]]))


def test_dpo_gradient_moves_probability_from_rejected_to_chosen():
    logp_c, logp_r = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    loss, _ = dpo_loss(logp_c, logp_r, torch.tensor([-2.0]), torch.tensor([-2.0]), 0.1)
    loss.backward()
    # d loss / d logp_w = -beta sigmoid(-margin) = -0.05 at margin 0, and +0.05 for the rejected response
    assert float(logp_c.grad) == pytest.approx(-0.05) and float(logp_r.grad) == pytest.approx(0.05)


@pytest.mark.parametrize("response,answer,expected", [("16", "6", 0), ("61", "6", 1), ("6", "16", 0), ("1", "16", 1),
                                                       ("6", "6", None), ("37 59", "37 58", 4)])
def test_first_wrong_position(response, answer, expected):
    assert first_wrong_position(response, answer) == expected


class TableLogprobs(torch.nn.Module):
    """A stub policy: log-prob -1 for every response token, except `low` at one position of each row."""

    def __init__(self, position: int | None):
        super().__init__()
        self.position = position

    def response_outputs(self, input_ids, attention_mask, prompt_len, want_entropy=True, **_):
        logp = torch.full((input_ids.shape[0], input_ids.shape[1] - prompt_len), -1.0)
        if self.position is not None:
            logp[:, self.position] = -3.0
        return ResponseOutputs(logp, None)


def test_credit_assignment_finds_the_token_the_policy_lowered():
    tok = CharTokenizer()
    problems = [Problem("gcd", "gcd(12,18)=", "6"), Problem("gcd", "gcd(4,8)=", "4")]
    responses = ["16", "41"]  # first wrong token: position 0 for "16" (vs "6"), position 1 for "41" (vs "4")
    hit = credit_assignment(TableLogprobs(0), TableLogprobs(None), tok, problems, responses, beta=0.1)
    assert hit["credit_hit"] == 0.5 and hit["credit_responses"] == 2  # position 0 is right for one of the two
    assert hit["credit_chance"] == pytest.approx(1 / 3)  # two characters and EOS
    right = credit_assignment(TableLogprobs(0), TableLogprobs(None), tok, problems[:1] * 2, ["16", "6"], 0.1)
    assert right["credit_responses"] == 1  # the right answer is left out
    with pytest.raises(ConfigError, match="at least one wrong response"):
        credit_assignment(TableLogprobs(0), TableLogprobs(None), tok, problems[:1], ["6"], 0.1)


def test_dpo_widens_the_margin_and_resumes_to_the_same_weights(base_models, tmp_path):
    policy, tok, _ = load_base(pretrain("tiny-gcd"))
    problems = [Problem("gcd", f"gcd({a},12)=", str(math.gcd(a, 12))) for a in range(1, 33)]
    pairs = PreferencePairs(problems, [p.answer for p in problems], [str(int(p.answer) + 1) for p in problems],
                            torch.ones(32), torch.zeros(32, dtype=torch.bool))
    source = PairSource(pairs, tok, policy, batch_size=8, seed=0)
    first = source.next_batch(None)
    assert first["input_ids"].shape[0] == 16 and first["ref_logp"].shape == (16,)
    cfg = DPOConfig(base_model="tiny-gcd", lr=1e-3, batch_size=16)
    summary = train_dpo(cfg, env_id="gcd", steps=12, pairs=pairs, progress=False, checkpoints=0)
    assert summary["last"]["reward/margin"] > 0.05 and summary["last"]["reward/accuracy"] > 0.7
    run = RunDir(tmp_path, "dpo", "main", 0)
    train_dpo(cfg, env_id="gcd", steps=6, pairs=pairs, progress=False, run=run, checkpoints=2)
    resumed = train_dpo(cfg, env_id="gcd", steps=12, pairs=pairs, progress=False, run=run, checkpoints=2)
    straight = train_dpo(cfg, env_id="gcd", steps=12, pairs=pairs, progress=False, run=RunDir(tmp_path, "b", "m", 0),
                         checkpoints=2)
    a, b = resumed["algorithm"].policy.state_dict(), straight["algorithm"].policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="at least one preference pair"):
        PairSource(pairs.subset([]), tok, policy, 8, 0)
