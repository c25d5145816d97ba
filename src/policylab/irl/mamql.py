"""MAMQL — "Multi-Agent Inverse Q-Learning from Demonstrations" (Haynam, Khoja, Kumar, Myers, Biyik;
2025, arXiv 2503.04679), tabular and offline. No official code was found; the objective is the paper's
per-agent inverse soft-Q (IQ-Learn) on marginalized critics, as the notes derive it.

Each agent i keeps a critic Q_i(s, a_i) marginalized over the others' demonstrated policies; the
experts are generalized Boltzmann, pi_i ∝ exp(lambda Q_i). With pi_-i fixed, agent i faces a single-agent
soft MDP, and its demonstrated transitions (s, a_i, s') already sample s' from the marginal dynamics
(the others acted from pi_-i), so IQ-Learn applies per agent, offline value-difference form, chi^2:
    V_i(s) = (1/lambda) log sum_a exp(lambda Q_i(s, a))
    max_Q  E_D[ phi(Q_i(s, a_i) - gamma V_i(s')) ] - E_D[ V_i(s) - gamma V_i(s') ],   phi(x) = x - x^2 / (4 alpha)
    reward  r_i(s, a_i) = Q_i(s, a_i) - gamma E_{s'~P_i(s, a_i)} V_i(s')           (P_i: agent i's marginal dynamics)
    policy  pi_i = softmax(lambda Q_i)
Baselines: log-BC (count-based BC with `bc_pseudocount`; reward (1 / lambda) log pi_BC, the closed-form
MCE inverse) and independent IQ-Learn on the agent's own local state (it ignores the other agent's
position; its critic is lifted to the joint state for the reward read-off).
Ours: tabular critics, full-batch Adam (`steps`, `lr`); the recovered reward is read off with the true
marginal dynamics, which the evaluation knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from policylab.core.config import Config, param
from policylab.core.nn import adam
from policylab.tabular.distances import starc_distance
from policylab.tabular.games import MarkovGame


@dataclass(frozen=True)
class MAMQLConfig(Config):
    rationality: float = param(3.0, gt=0)
    """lambda of the generalized Boltzmann experts (the reward scale)."""
    alpha: float = param(0.5, gt=0)
    """chi^2 regularizer of phi."""
    steps: int = param(3000, gt=0)
    lr: float = param(0.05, gt=0)
    bc_pseudocount: float = param(0.5, gt=0)


def soft_value(q: torch.Tensor, rationality: float) -> torch.Tensor:
    return torch.logsumexp(rationality * q, -1) / rationality


def iq_learn(states: np.ndarray, actions: np.ndarray, next_states: np.ndarray, num_states: int, num_actions: int,
             gamma: float, cfg: MAMQLConfig, seed: int) -> torch.Tensor:
    """Tabular offline IQ-Learn (chi^2, value-difference form): the critic Q [S, A]."""
    torch.manual_seed(seed)
    q = torch.zeros((num_states, num_actions), dtype=torch.float64, requires_grad=True)
    s, a, s2 = (torch.as_tensor(x) for x in (states, actions, next_states))
    opt = adam([q], cfg.lr)
    for _ in range(cfg.steps):
        v = soft_value(q, cfg.rationality)
        residual = q[s, a] - gamma * v[s2]
        objective = (residual - residual.square() / (4 * cfg.alpha)).mean() - (v[s] - gamma * v[s2]).mean()
        opt.zero_grad(set_to_none=True)
        (-objective).backward()
        opt.step()
    return q.detach()


def read_reward(q: torch.Tensor, marginal_transitions: torch.Tensor, gamma: float, rationality: float
                ) -> torch.Tensor:
    """r(s, a) = Q(s, a) - gamma E_{s'~P(s, a)} V(s')."""
    return q - gamma * marginal_transitions @ soft_value(q, rationality)


def transitions_of(demos: dict[str, np.ndarray], player: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    states = demos["states"]
    return states[:, :-1].ravel(), demos["actions"][player].ravel(), states[:, 1:].ravel()


def mamql(game: MarkovGame, demos: dict[str, np.ndarray], cfg: MAMQLConfig, marginals: list, seed: int
          ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-agent (rewards [S, A_i], policies [S, A_i]); `marginals[i]` is agent i's marginal MDP."""
    rewards, policies = [], []
    for i in (0, 1):
        s, a, s2 = transitions_of(demos, i)
        q = iq_learn(s, a, s2, game.num_states, marginals[i].num_actions, game.gamma, cfg, seed + i)
        rewards.append(read_reward(q, marginals[i].transitions, game.gamma, cfg.rationality))
        policies.append(torch.softmax(cfg.rationality * q, -1))
    return rewards, policies


def log_bc(game: MarkovGame, demos: dict[str, np.ndarray], cfg: MAMQLConfig, marginals: list
           ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    rewards, policies = [], []
    for i in (0, 1):
        s, a, _ = transitions_of(demos, i)
        counts = np.full((game.num_states, marginals[i].num_actions), cfg.bc_pseudocount)
        np.add.at(counts, (s, a), 1.0)
        pi = torch.from_numpy(counts / counts.sum(1, keepdims=True))
        rewards.append(pi.log() / cfg.rationality)
        policies.append(pi)
    return rewards, policies


def independent_iq(game: MarkovGame, demos: dict[str, np.ndarray], cfg: MAMQLConfig, marginals: list,
                   local_states: list[np.ndarray], seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """IQ-Learn on agent i's local state local_states[i][s] (e.g. its own cell), lifted back to joint states."""
    rewards, policies = [], []
    for i in (0, 1):
        s, a, s2 = transitions_of(demos, i)
        local = local_states[i]
        q_local = iq_learn(local[s], a, local[s2], int(local.max()) + 1, marginals[i].num_actions, game.gamma, cfg,
                           seed + i)
        q = q_local[torch.as_tensor(local)]
        rewards.append(read_reward(q, marginals[i].transitions, game.gamma, cfg.rationality))
        policies.append(torch.softmax(cfg.rationality * q, -1))
    return rewards, policies


def recovery(game: MarkovGame, marginals: list, rewards: list[torch.Tensor], policies: list[torch.Tensor]
             ) -> dict[str, float]:
    """STARC-VAL distance of each agent's recovered reward to its true marginal reward (on its marginal MDP
    under the experts), their mean, and the total return when both agents play the learned policies."""
    distances = [float(starc_distance(marginals[i], marginals[i].rewards, rewards[i])) for i in (0, 1)]
    return {"starc": float(np.mean(distances)), "starc_0": distances[0], "starc_1": distances[1],
            "return": float(game.joint_returns((policies[0], policies[1])).sum())}
