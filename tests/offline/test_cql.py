"""CQL (policylab.offline.cql): the critic's loss against CORL's form written out by hand, on a fixed batch,
fixed networks and fixed sampled actions."""

import math

import pytest
import torch
import torch.nn.functional as F

from policylab.core.actor_critic import q_values
from policylab.offline import CQL, CQLConfig
from policylab.offline.cql import cql_critic_loss
from policylab.offline.train import Prepared

B, D, A, N = 6, 3, 2, 4


def fake_setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    prepared = Prepared.__new__(Prepared)
    prepared.data = type("D", (), {"discrete": False, "observations": torch.randn(32, D, generator=g),
                                   "actions": torch.rand(32, A, generator=g) * 2 - 1, "metadata": {}})()
    batch = {"observations": torch.randn(B, D, generator=g), "actions": torch.rand(B, A, generator=g) * 2 - 1,
             "rewards": torch.randn(B, generator=g), "next_observations": torch.randn(B, D, generator=g),
             "terminals": torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])}
    draws = {"next_actions": torch.rand(B, A, generator=g) * 2 - 1, "uniform": torch.rand(B, N, A, generator=g) * 2 - 1,
             "current": torch.rand(B, N, A, generator=g) * 2 - 1, "current_logp": torch.randn(B, N, generator=g),
             "next": torch.rand(B, N, A, generator=g) * 2 - 1, "next_logp": torch.randn(B, N, generator=g)}
    return prepared, batch, draws


def corl_critic_loss(algo, batch, draws, cql_alpha, gamma):
    """CORL's `_q_loss` (algorithms/offline/cql.py, importance sampling on, no Lagrange, no clipping), one critic
    at a time: F.mse_loss per critic, + cql_alpha * mean(logsumexp(candidates) - Q(s, a)) per critic, summed."""
    obs, act = batch["observations"], batch["actions"]

    def critic(i, o, a):
        return q_values(algo.critic, o, a)[i]

    def critic_many(i, a):  # [B, N, A] -> [B, N]
        return torch.stack([critic(i, obs, a[:, j]) for j in range(a.shape[1])], 1)

    next_q = torch.min(q_values(algo.critic_target, batch["next_observations"], draws["next_actions"]), 0).values
    td_target = batch["rewards"] + (1.0 - batch["terminals"]) * gamma * next_q
    total = 0.0
    for i in range(2):
        predicted = critic(i, obs, act)
        mse = F.mse_loss(predicted, td_target.detach())
        candidates = torch.cat([critic_many(i, draws["uniform"]) - math.log(0.5 ** A),
                                critic_many(i, draws["next"]) - draws["next_logp"],
                                critic_many(i, draws["current"]) - draws["current_logp"]], 1)
        diff = (torch.logsumexp(candidates, 1) - predicted).mean()
        total = total + mse + cql_alpha * diff
    return total


@pytest.mark.parametrize("cql_alpha", [0.0, 10.0])
def test_critic_loss_matches_corl_by_hand(cql_alpha):
    prepared, batch, draws = fake_setup()
    torch.manual_seed(0)
    cfg = CQLConfig(hidden=(8, 8), cql_alpha=cql_alpha, num_sampled_actions=N)
    algo = CQL(prepared, cfg)
    with torch.no_grad():  # a target that differs from the critic, so y is not Q's own copy
        for p in algo.critic_target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    loss, bellman, gap, _ = algo.critic_loss(batch, draws)
    expected = corl_critic_loss(algo, batch, draws, cql_alpha, cfg.gamma)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6, rel=1e-6)
    assert (bellman + cql_alpha * gap).item() == pytest.approx(loss.item(), abs=1e-6)


def test_bellman_scale_half_is_the_paper_form():
    prepared, batch, draws = fake_setup(seed=1)
    torch.manual_seed(0)
    plain = CQL(prepared, CQLConfig(hidden=(8, 8), num_sampled_actions=N))
    half = CQL(prepared, CQLConfig(hidden=(8, 8), num_sampled_actions=N, bellman_scale=0.5))
    half.critic.load_state_dict(plain.critic.state_dict())
    half.critic_target.load_state_dict(plain.critic_target.state_dict())
    _, bellman, gap, _ = plain.critic_loss(batch, draws)
    loss_half, bellman_half, gap_half, _ = half.critic_loss(batch, draws)
    assert bellman_half.item() == pytest.approx(0.5 * bellman.item(), rel=1e-6)
    assert gap_half.item() == pytest.approx(gap.item(), rel=1e-6)
    assert loss_half.item() == pytest.approx(0.5 * bellman.item() + 10.0 * gap.item(), rel=1e-6)


def test_cql_critic_loss_by_hand_on_numbers():
    q_data = torch.tensor([[1.0, 2.0], [0.0, -1.0]])  # 2 critics x 2 states
    target = torch.tensor([0.0, 4.0])
    candidates = torch.zeros(2, 2, 3)  # logsumexp = log 3 everywhere
    loss, bellman, gap = cql_critic_loss(q_data, target, candidates, cql_alpha=2.0)
    # critic 1: mean(1, 4) = 2.5; critic 2: mean(0, 25) = 12.5
    assert bellman.item() == pytest.approx(15.0)
    # gaps: critic 1 mean(log 3 - 1, log 3 - 2); critic 2 mean(log 3, log 3 + 1)
    assert gap.item() == pytest.approx(2 * math.log(3) - 1.5 + 0.5)
    assert loss.item() == pytest.approx(15.0 + 2.0 * gap.item())
