"""SQIRL — shallow Q-iteration via reinforcement learning (Laidlaw, Zhu, Russell, Dragan, ICLR 2024,
arXiv 2312.08369, Algorithm 1; official deep version `effective_horizon/sb3/algorithms/sqirl.py`), on
finite-horizon tabular MDPs with the tabular regression oracle (the mean per (t, s, a)).

For each timestep i = 0..T-1:
1. m episodes: the learned policies pi_0..pi_{i-1} for t < i, uniform random actions for t >= i;
2. Q^1_t regressed on the Monte-Carlo return-to-go, for t in the window [i, i + k - 1];
3. k - 1 steps of fitted-Q iteration on the same episodes: Q^{j+1}_t <- mean of r_t + max_a Q^j_{t+1}(s_{t+1}, a)
   for t in [i, i + k - 1 - j] (Q_T = 0);
4. pi_i(s) = argmax_a Q^k_i(s, a) (an action never tried at s scores -inf; a state never seen acts 0).
The data of iteration i are used only there (the paper's definition; the deep port reuses a buffer).
Samples are counted as the paper does: m episodes x T steps per iteration, T iterations.
"""

from __future__ import annotations

import numpy as np
import torch

from policylab.core.errors import ConfigError
from policylab.tabular.horizon import FiniteHorizonMDP


def rollouts(mdp: FiniteHorizonMDP, policy: np.ndarray, random_from: int, episodes: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episodes under policy[t, s] for t < random_from and uniform actions after: states [m, T + 1],
    actions [m, T], rewards [m, T]."""
    T = mdp.horizon
    states = np.empty((episodes, T + 1), dtype=np.int64)
    actions = np.empty((episodes, T), dtype=np.int64)
    rewards = np.empty((episodes, T))
    states[:, 0] = mdp.sample_starts(episodes, rng)
    for t in range(T):
        chosen = policy[t, states[:, t]] if t < random_from else rng.integers(mdp.num_actions, size=episodes)
        actions[:, t] = chosen
        states[:, t + 1], rewards[:, t] = mdp.step(t, states[:, t], chosen, rng)
    return states, actions, rewards


def _mean_by_cell(states: np.ndarray, actions: np.ndarray, targets: np.ndarray, num_states: int,
                  num_actions: int) -> np.ndarray:
    """The tabular regression oracle: mean target per (s, a), NaN where there is no data."""
    cell = states * num_actions + actions
    total = np.bincount(cell, weights=targets, minlength=num_states * num_actions)
    count = np.bincount(cell, minlength=num_states * num_actions)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).reshape(num_states, num_actions)


def sqirl(mdp: FiniteHorizonMDP, k: int, episodes: int, seed: int) -> np.ndarray:
    """The learned deterministic policy actions[t, s]."""
    if k < 1 or episodes < 1:
        raise ConfigError(f"sqirl: k = {k} and episodes = {episodes} are not allowed: both must be >= 1")
    rng = np.random.default_rng(seed)
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    policy = np.zeros((T, S), dtype=np.int64)
    for i in range(T):
        states, actions, rewards = rollouts(mdp, policy, i, episodes, rng)
        to_go = np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1]
        last = min(i + k - 1, T - 1)
        q = {t: _mean_by_cell(states[:, t], actions[:, t], to_go[:, t], S, A) for t in range(i, last + 1)}
        for j in range(1, k):
            for t in range(i, last + 1 - j):  # increasing t reads Q^j_{t+1} before it is overwritten
                nxt = q[t + 1] if t + 1 < T else np.zeros((S, A))
                best_next = np.where(np.isnan(nxt), -np.inf, nxt).max(1)
                best_next = np.where(np.isfinite(best_next), best_next, 0.0)  # an unseen state adds nothing
                q[t] = _mean_by_cell(states[:, t], actions[:, t], rewards[:, t] + best_next[states[:, t + 1]], S, A)
        policy[i] = np.where(np.isnan(q[i]), -np.inf, q[i]).argmax(1)
    return policy


def near_optimal(mdp: FiniteHorizonMDP, policy: np.ndarray, optimal_return: float, random_return: float,
                 epsilon: float) -> bool:
    """Exact value within epsilon of the span between the random policy's return and the optimum (the
    paper's bounds are for epsilon-optimal policies; exact optimality hinges on states visited < 1%)."""
    return mdp.policy_value(torch.as_tensor(policy)) >= optimal_return - epsilon * (optimal_return - random_return)


def sqirl_sample_complexity(mdp: FiniteHorizonMDP, optimal_return: float, random_return: float, epsilon: float,
                            ks: tuple[int, ...], max_doublings: int, replicates: int, seed: int) -> float:
    """The fewest samples m T^2 over k in `ks` and m = 1, 2, 4, ... for which at least two thirds of
    `replicates` runs return an epsilon-optimal policy; inf when none does within `max_doublings`."""
    best = np.inf
    for k in ks:
        for doubling in range(max_doublings + 1):
            m = 2 ** doubling
            if m * mdp.horizon ** 2 >= best:
                break
            wins = sum(near_optimal(mdp, sqirl(mdp, k, m, seed * 1_000 + 10 * doubling + r), optimal_return,
                                    random_return, epsilon) for r in range(replicates))
            if wins * 3 >= 2 * replicates:
                best = m * mdp.horizon ** 2
                break
    return float(best)


def q_learning_sample_complexity(mdp: FiniteHorizonMDP, optimal_return: float, random_return: float,
                                 epsilon: float, exploration: float = 0.2, lr: float = 0.1, max_episodes: int = 6000,
                                 check_every: int = 10, seed: int = 0) -> float:
    """Samples (episodes x T) until the greedy policy of `exploration`-greedy tabular Q-learning on
    Q_t(s, a) is epsilon-optimal, checked every `check_every` episodes; inf past `max_episodes`."""
    rng = np.random.default_rng(seed)
    T, A = mdp.horizon, mdp.num_actions
    q = np.zeros((T + 1, mdp.num_states, A))
    P, R = mdp.transitions.numpy(), mdp.rewards.numpy()
    for episode in range(1, max_episodes + 1):
        s = int(mdp.sample_starts(1, rng)[0])
        for t in range(T):
            a = int(rng.integers(A)) if rng.random() < exploration else int(q[t, s].argmax())
            nxt = int(rng.choice(mdp.num_states, p=P[s, a]))
            q[t, s, a] += lr * (R[t, s, a] + q[t + 1, nxt].max() - q[t, s, a])
            s = nxt
        if episode % check_every == 0 and near_optimal(mdp, q[:T].argmax(-1), optimal_return, random_return,
                                                       epsilon):
            return float(episode * T)
    return float("inf")
