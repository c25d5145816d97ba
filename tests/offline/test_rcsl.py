"""RCSL: returns-to-go by hand, the sampler, the evaluator's per-episode hooks and RCSL's remaining target,
conditioning on a toy dataset, bad input, and learning on pendulum-mix10."""

import numpy as np
import pytest
import torch

from policylab.core.errors import ConfigError
from policylab.data import OfflineData, UniformTransitions
from policylab.envs.evaluate import RandomAgent, evaluate_policy
from policylab.envs.factory import make_env
from policylab.offline.rcsl import RCSL, RCSLConfig, ReturnConditionedTransitions, returns_to_go
from policylab.offline.train import EnvPolicy, Prepared, train_offline


def tiny_data(rewards: list[list[float]], env_id: str = "Pendulum-v1", actions: torch.Tensor | None = None,
              observations: torch.Tensor | None = None) -> OfflineData:
    """Episodes with the given rewards; observation row i is (i, 0, 0) unless given, so a row names itself."""
    lengths = [len(r) for r in rewards]
    n = sum(lengths)
    obs = torch.zeros(n, 3) if observations is None else observations
    if observations is None:
        obs[:, 0] = torch.arange(n, dtype=torch.float32)
    ends = torch.zeros(n)
    ends[torch.tensor(lengths).cumsum(0) - 1] = 1.0
    return OfflineData(observations=obs, actions=torch.zeros(n, 1) if actions is None else actions,
                       rewards=torch.tensor([r for ep in rewards for r in ep]), next_observations=obs.clone(),
                       terminals=torch.zeros(n), timeouts=ends,
                       episode_starts=torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()]),
                       metadata={"env_id": env_id, "action_type": "continuous"})


def test_returns_to_go_by_hand_stop_at_the_episode_boundary():
    data = tiny_data([[1.0, 2.0, 3.0], [10.0, 20.0], [-4.0]])
    assert returns_to_go(data).tolist() == [6.0, 5.0, 3.0, 30.0, 20.0, -4.0]
    sampler = ReturnConditionedTransitions(data, 64, seed=0)
    batch = sampler.sample()
    rows = batch["observations"][:, 0].long()  # observation row i is (i, 0, 0)
    assert torch.equal(batch["returns_to_go"], returns_to_go(data)[rows])
    plain = UniformTransitions(data, 64, seed=0).sample()  # same draws as the plain sampler
    assert all(torch.equal(batch[k], plain[k]) for k in plain)


def test_remaining_target_drops_by_the_rewards_received_and_follows_the_live_episodes():
    data = tiny_data([[1.0, 2.0], [3.0]])
    algo = RCSL(Prepared(data, normalize=True), RCSLConfig(hidden=(8,), target_return=5.0))
    assert algo.rtg_scale == 3.0  # max |episode return|
    obs = torch.randn(3, 3)
    algo.policy_reset(3)
    assert torch.equal(algo.policy_action(obs), algo.policy_output(obs, torch.full((3,), 5.0)))
    algo.policy_observe(torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0, -3.0]), torch.tensor([False, True, False]))
    assert algo.remaining.tolist() == [4.0, 3.0, 8.0]
    expected = algo.policy_output(obs[:2], torch.tensor([4.0, 8.0]))  # the rows are episodes 0 and 2
    assert torch.equal(algo.policy_action(obs[:2]), expected)
    assert not torch.equal(expected, algo.policy_output(obs[:2], torch.full((2,), 5.0)))
    with pytest.raises(ValueError, match="3 observations for 2 live episodes"):
        algo.policy_action(obs)
    algo.policy_observe(torch.tensor([0, 2]), torch.tensor([0.5, 0.5]), torch.tensor([True, True]))
    assert algo.remaining is None  # evaluation over: plain calls condition on the full target again
    assert torch.equal(algo.policy_action(obs), algo.policy_output(obs, torch.full((3,), 5.0)))


class RecordingAgent(RandomAgent):
    """Random actions; records what the evaluator's hooks tell it and checks act gets the live rows."""

    def reset(self, num_episodes):
        self.episodes, self.rewards, self.calls = num_episodes, np.zeros(num_episodes), 0
        self.live = np.arange(num_episodes)

    def act(self, obs, deterministic=True):
        assert obs.shape[0] == len(self.live)
        return super().act(obs, deterministic)

    def observe(self, indices, rewards, dones):
        assert np.array_equal(indices, self.live)
        self.rewards[indices] += rewards
        self.live = indices[~dones]
        self.calls += 1


def test_evaluator_hooks_see_every_reward_of_every_live_episode():
    """CartPole episodes end at different steps, so the live set shrinks unevenly."""
    agent = RecordingAgent(make_env("CartPole-v1").action_space, 0)
    result = evaluate_policy(agent, "CartPole-v1", 6, seed=3)
    assert agent.episodes == 6 and len(agent.live) == 0
    assert agent.rewards.mean() == pytest.approx(result["return"]) and agent.calls == agent.rewards.max()
    assert len(set(agent.rewards.tolist())) > 1


def test_evaluator_without_hooks_is_unchanged():
    """The loop as it was before the hooks, against evaluate_policy, for an agent without them."""
    episodes, seed = 4, 7
    envs = [make_env("Pendulum-v1") for _ in range(episodes)]
    agent = RandomAgent(envs[0].action_space, 5)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns, running = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while running.any():
        live = np.flatnonzero(running)
        actions = agent.act(obs[live])
        for j, i in enumerate(live):
            obs[i], reward, terminated, truncated, _ = envs[i].step(actions[j])
            returns[i] += reward
            running[i] = not (terminated or truncated)
    result = evaluate_policy(RandomAgent(envs[0].action_space, 5), "Pendulum-v1", episodes, seed=seed)
    assert result == {"return": float(returns.mean()), "return_std": float(returns.std())}


def test_the_return_chooses_the_action_when_states_are_the_same():
    """Two episodes through the same states: the good one (reward 1 per step) took +0.5, the bad one
    (reward -1) took -0.5; BC would average them to 0, RCSL recovers each from its return-to-go.
    Seeded: the first CI run of an unseeded version missed the 0.1 tolerance once (0.11)."""
    torch.manual_seed(0)
    obs = torch.randn(10, 3).repeat(2, 1)
    actions = torch.cat([torch.full((10, 1), 1.0), torch.full((10, 1), -1.0)])  # +-0.5 in [-1, 1] units
    prepared = Prepared(tiny_data([[1.0] * 10, [-1.0] * 10], actions=actions, observations=obs), normalize=True)
    algo = RCSL(prepared, RCSLConfig(hidden=(32, 32), lr=3e-3, batch_size=20))
    sampler = algo.make_sampler(prepared.data, seed=0)
    for _ in range(500):
        metrics = algo.update(sampler.sample())
    assert metrics["loss/rcsl"] < 0.01
    states, rtg = prepared.data.observations[:10], sampler.returns_to_go
    good, bad = algo.policy_output(states, rtg[:10]), algo.policy_output(states, rtg[10:])
    assert (good - 0.5).abs().max() < 0.1 and (bad + 0.5).abs().max() < 0.1


def test_discrete_actions_use_cross_entropy_and_argmax():
    data = tiny_data([[1.0, 0.0], [0.0]], env_id="CartPole-v1", actions=torch.tensor([0, 1, 1]),
                     observations=torch.randn(3, 4))
    data.metadata.update(action_type="discrete", num_actions=2)
    algo = RCSL(Prepared(data, normalize=False), RCSLConfig(hidden=(8,)))
    metrics = algo.update(ReturnConditionedTransitions(data, 8, seed=0).sample())
    assert torch.isfinite(metrics["loss/rcsl"]) and metrics["loss/rcsl"].requires_grad is False
    action = algo.policy_action(torch.randn(5, 4))
    assert action.dtype == torch.int64 and action.shape == (5,)
    assert algo.target_return == 1.0  # the best episode's return


def test_bad_config_and_a_sampler_without_returns_to_go():
    with pytest.raises(ConfigError, match="RCSLConfig.target_quantile = 1.5"):
        RCSLConfig(target_quantile=1.5)
    with pytest.raises(ConfigError, match="RCSLConfig.rtg_scale = 0"):
        RCSLConfig(rtg_scale=0)
    with pytest.raises(ConfigError, match="set only one"):
        RCSLConfig(target_return=-100.0, target_quantile=0.5)
    with pytest.raises(ConfigError, match="must be finite"):
        RCSLConfig(target_return=float("nan"))
    data = tiny_data([[1.0, 2.0], [3.0]])
    algo = RCSL(Prepared(data, normalize=True), RCSLConfig(hidden=(8,), target_quantile=0.0))
    assert algo.target_return == 3.0  # the lowest episode return
    with pytest.raises(ConfigError, match="returns_to_go"):
        algo.update(UniformTransitions(data, 4).sample())


def test_state_dict_round_trip_keeps_the_target_and_scale():
    data = tiny_data([[1.0, 2.0], [3.0]])
    algo = RCSL(Prepared(data, normalize=True), RCSLConfig(hidden=(8,)))
    algo.update(ReturnConditionedTransitions(data, 4).sample())
    other = RCSL(Prepared(tiny_data([[7.0, 1.0]]), normalize=True), RCSLConfig(hidden=(8,)))
    other.load_state_dict(algo.state_dict())
    assert (other.target_return, other.rtg_scale) == (3.0, 3.0)
    obs = torch.randn(4, 3)
    assert torch.equal(other.policy_action(obs), algo.policy_action(obs))


def test_env_policy_forwards_the_hooks_only_to_algorithms_that_have_them():
    data = tiny_data([[1.0, 2.0], [3.0]])
    prepared = Prepared(data, normalize=True)
    algo = RCSL(prepared, RCSLConfig(hidden=(8,), target_return=-100.0))
    result = evaluate_policy(EnvPolicy(algo, prepared), "Pendulum-v1", 2, seed=0)
    assert algo.remaining is None and np.isfinite(result["return"])

    class Stateless:
        def policy_action(self, obs):
            return torch.zeros(obs.shape[0], 1)

    policy = EnvPolicy(Stateless(), prepared)
    policy.reset(2)
    policy.observe(np.array([0, 1]), np.zeros(2), np.array([False, False]))  # no hooks: nothing to forward
    assert policy.act(np.zeros((2, 3))).shape == (2, 1)


@pytest.mark.slow
@pytest.mark.xdist_group("pendulum-data")
def test_rcsl_conditioned_on_the_best_return_beats_random_and_a_median_target(datasets):
    """15k steps, 2x256, lr 1e-3 (~30 s on one core). The margins were fixed before this test first ran, from
    exploratory runs at these settings (seeds 0-3, on a pendulum-mix10 built with another SAC expert): best
    target >= +272 over random actions and >= +251 over the median episode return as target, each on the same
    evaluation episodes. Measured here (seed 0): best -554, median target -1117, random -1118; seeds 1 and 2
    gave -759 / -1194 / -1193 and -1109 / -1355 / -1360. At lr 3e-4 or 5k steps RCSL stayed within ~200 of
    random: with 90% random episodes, the undiscounted return-to-go of a random episode's last steps overlaps
    the expert's, so the expert's actions separate only slowly."""
    random_return = evaluate_policy(RandomAgent(make_env("Pendulum-v1").action_space, 0), "Pendulum-v1", 10,
                                    seed=10_000)["return"]
    summary = train_offline(RCSL, RCSLConfig(lr=1e-3), env_id=datasets["pendulum-mix10"], seed=0, steps=15_000,
                            evals=1, progress=False)
    best = summary["eval"]["eval/return"]
    algo, policy = summary["algorithm"], summary["policy"]
    algo.target_return = float(policy.prepared.data.episode_returns().quantile(0.5))
    median = evaluate_policy(policy, "Pendulum-v1", 10, seed=10_000)["return"]
    assert best > random_return + 150 and best > median + 100, (best, median, random_return)
