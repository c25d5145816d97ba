"""On-policy MDPO (policylab.rl.mdpo): the proximity term has no gradient at theta_k (why m > 1 matters),
both KL directions, the 1 / t_k schedule over the run's own length, and m = 10 learning faster than m = 1."""

import gymnasium
import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.rl import MDPO, MDPOConfig, train_online


def make(total_updates=4):
    env = gymnasium.make("CartPole-v1")
    return MDPO(env.observation_space, env.action_space, MDPOConfig(), total_updates=total_updates)


def test_kl_has_no_gradient_at_the_anchor_but_the_surrogate_does():
    algo = make()
    obs = torch.randn(64, 4)
    with torch.no_grad():
        old = algo.dist(obs)
    for direction in ("reverse", "forward"):
        algo.cfg = MDPOConfig(kl_direction=direction)
        kl = algo.kl(algo.dist(obs), old).mean()
        grads = torch.autograd.grad(kl, algo.params, allow_unused=True)
        assert float(kl.detach()) == pytest.approx(0.0, abs=1e-7)
        assert all(g is None or g.abs().max() < 1e-6 for g in grads)
    dist = algo.dist(obs)
    actions = dist.sample()
    surrogate = (algo.log_prob(dist, actions) - algo.log_prob(old, actions).detach()).exp().mean()
    grads = torch.autograd.grad(surrogate, algo.params, allow_unused=True)
    assert any(g is not None and g.abs().max() > 1e-6 for g in grads)


def test_kl_weight_grows_as_one_over_t_k():
    algo = make(total_updates=4)
    T = 8
    batch = {"obs": torch.randn(T, 2, 4), "actions": torch.randint(0, 2, (T, 2)), "logprobs": torch.full((T, 2), -0.69),
             "rewards": torch.ones(T, 2), "values": torch.zeros(T, 2), "dones": torch.zeros(T, 2),
             "last_value": torch.zeros(2)}
    weights = [float(algo.update(batch)["kl_weight"]) for _ in range(4)]
    assert weights == pytest.approx([1.0, 4 / 3, 2.0, 4.0])  # t_k = 1 - k / K
    with pytest.raises(ConfigError, match="kl_direction"):
        MDPOConfig(kl_direction="both")


@pytest.mark.slow
def test_ten_proximal_steps_learn_faster_than_one():
    finals = {}
    for m in (10, 1):
        finals[m] = np.mean([train_online(MDPO, MDPOConfig(num_envs=8, rollout_steps=256, sgd_steps=m),
                                          env_id="CartPole-v1", seed=seed, steps=30_000, evals=1, eval_episodes=10,
                                          checkpoints=0, progress=False)["eval"]["eval/return"] for seed in (0, 1)])
    assert finals[10] > finals[1] + 30, finals


def off_policy(**kw):
    from policylab.rl import MDPOOff, MDPOOffConfig

    env = gymnasium.make("Pendulum-v1")
    return MDPOOff(env.observation_space, env.action_space, MDPOOffConfig(hidden=(16, 16), **kw))


def test_off_policy_mdpo_with_a_uniform_anchor_is_sac():
    import math

    from policylab.rl import SAC

    algo = off_policy(kl_weight=0.7)
    obs = torch.randn(32, 3)
    uniform = -math.log(2.0)  # log density of U[-1, 1] for the one action dimension
    algo.head.log_prob = lambda params, pre: torch.full(pre.shape[:-1], uniform)
    torch.manual_seed(0)
    loss_mdpo, _ = algo.actor_loss(obs, torch.tensor(0.2))
    grads_mdpo = torch.autograd.grad(loss_mdpo, list(algo.actor.parameters()))
    torch.manual_seed(0)
    loss_sac, _ = SAC.actor_loss(algo, obs, torch.tensor(0.7))  # alpha = 1 / t
    grads_sac = torch.autograd.grad(loss_sac, list(algo.actor.parameters()))
    assert float((loss_mdpo - loss_sac).detach()) == pytest.approx((0.2 - 0.7) * uniform, abs=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_mdpo, grads_sac))


def test_off_policy_anchor_is_refreshed_every_m_steps():
    algo = off_policy(refresh_every=3)
    obs = torch.randn(8, 3)
    copied = []
    for _ in range(7):
        with torch.no_grad():  # the actor moves between gradient steps
            for p in algo.actor.parameters():
                p.add_(0.01)
        algo.actor_loss(obs, torch.tensor(0.2))
        copied.append(all(torch.equal(a, b) for a, b in zip(algo.anchor.parameters(), algo.actor.parameters())))
    assert copied == [True, False, False, True, False, False, True] and algo.steps == 7
