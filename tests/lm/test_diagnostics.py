"""The gradient-noise diagnostic on a small random policy (policylab.lm.diagnostics)."""

import random

import pytest
import torch

from policylab.lm.advantages import ADVANTAGES
from policylab.lm.diagnostics import gradient_spread, policy_gradient
from policylab.lm.policy import TinyGPT, TinyGPTConfig
from policylab.lm.rollout import RolloutBatch
from policylab.lm.tasks import Problem

GROUPS, G, PROMPT, RESPONSE = 6, 4, 3, 4


def pool() -> RolloutBatch:
    g = torch.Generator().manual_seed(0)
    B = GROUPS * G
    ids = torch.randint(1, 20, (B, PROMPT + RESPONSE), generator=g)
    mask = torch.ones(B, RESPONSE)
    exact = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1])
    problems = [Problem("t", f"q{i}", "a") for i in range(GROUPS)]
    return RolloutBatch(ids, torch.ones_like(ids), PROMPT, mask, torch.zeros(B, RESPONSE),
                        torch.zeros(B, dtype=torch.bool), G, exact.clone(), exact, exact.clone(), problems, [""] * B)


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return TinyGPT(TinyGPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, d_model=16))


def test_spread_matches_an_explicit_covariance(policy):
    data, fn = pool(), ADVANTAGES.get("dr_grpo")
    got = gradient_spread(policy, data, {"x": fn}, prompts=3, resamples=5, seed=7)["x"]
    rng = random.Random(7)
    picks = [sorted(rng.sample(range(GROUPS), 3)) for _ in range(5)]
    grads = []
    for pick in picks:
        keep = torch.zeros(GROUPS, dtype=torch.bool)
        keep[pick] = True
        grads.append(policy_gradient(policy, data.select_groups(keep), fn).double())
    stacked = torch.stack(grads)
    trace = torch.var(stacked, dim=0, unbiased=True).sum()
    assert got["relative_variance"] == pytest.approx(float(trace / stacked.mean(0).square().sum()), rel=1e-6)
    full = policy_gradient(policy, data, fn).double()
    cosines = torch.nn.functional.cosine_similarity(stacked, full[None], dim=1)
    assert got["cosine_to_full"] == pytest.approx(float(cosines.mean()), rel=1e-6)


def test_spread_ignores_the_scale_of_the_advantages(policy):
    base = ADVANTAGES.get("dr_grpo")
    out = gradient_spread(policy, pool(), {"a": base, "b": lambda r, **kw: 3.0 * base(r, **kw)}, 3, 6, 1)
    assert out["a"]["relative_variance"] == pytest.approx(out["b"]["relative_variance"], rel=1e-5)


def test_minibatches_of_the_whole_pool_have_no_spread(policy):
    out = gradient_spread(policy, pool(), {"a": ADVANTAGES.get("grpo")}, GROUPS, 3, 0)["a"]
    assert out["relative_variance"] == pytest.approx(0.0, abs=1e-8) and out["cosine_to_full"] == pytest.approx(1.0)


def test_minibatch_size_is_validated(policy):
    with pytest.raises(ValueError, match="prompts"):
        gradient_spread(policy, pool(), {"a": ADVANTAGES.get("grpo")}, 1, 3, 0)
