"""Two-player tabular Markov games: the joint dynamics, each player's marginal MDP given the other's
policy, the logit quantal-response equilibrium, exact joint returns, sampled demonstrations, and a
small "gems" gridworld (the MAMQL notes' 3 x 3 general-sum check).

    P(s' | s, a_0, a_1), r_i(s, a_0, a_1), gamma
    marginal for player i:  P_i(s' | s, a_i) = sum_{a_-i} pi_-i(a_-i | s) P(s' | s, a_i, a_-i),
                            r_i(s, a_i)      = sum_{a_-i} pi_-i(a_-i | s) r_i(s, a_i, a_-i)
    logit QRE at rationality lambda: each pi_i = exp(lambda (Q_i - V_i)), the soft-optimal policy
    (temperature 1 / lambda) of its marginal MDP under the other's pi_-i
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from policylab.core.errors import ConfigError, PolicylabError
from policylab.tabular.mdp import TabularMDP, sample_rows
from policylab.tabular.planning import mce_policy, policy_evaluation, soft_value_iteration


@dataclass(frozen=True)
class MarkovGame:
    transitions: torch.Tensor
    """P[s, a_0, a_1, s']."""
    rewards: torch.Tensor
    """r[i, s, a_0, a_1] (expected over s')."""
    gamma: float
    initial: torch.Tensor

    def __post_init__(self) -> None:
        S, A0, A1, S2 = self.transitions.shape
        if S != S2 or self.rewards.shape != (2, S, A0, A1) or self.initial.shape != (S,):
            raise ConfigError(f"MarkovGame: transitions {tuple(self.transitions.shape)}, rewards "
                              f"{tuple(self.rewards.shape)} and initial {tuple(self.initial.shape)} do not fit "
                              "[S, A0, A1, S], [2, S, A0, A1], [S]")
        if not torch.allclose(self.transitions.sum(-1), torch.ones(S, A0, A1, dtype=torch.float64), atol=1e-9):
            raise ConfigError("MarkovGame.transitions: every P[s, a_0, a_1, :] must be a probability distribution")

    @property
    def num_states(self) -> int:
        return self.transitions.shape[0]

    def marginal_mdp(self, player: int, other_policy: torch.Tensor) -> TabularMDP:
        """Player i's MDP when the other plays `other_policy` [S, A_-i]; rewards [S, A_i] broadcast over s'."""
        if player == 0:
            P = torch.einsum("sabt,sb->sat", self.transitions, other_policy)
            r = torch.einsum("sab,sb->sa", self.rewards[0], other_policy)
        else:
            P = torch.einsum("sabt,sa->sbt", self.transitions, other_policy)
            r = torch.einsum("sab,sa->sb", self.rewards[1], other_policy)
        return TabularMDP(P, r[:, :, None].expand_as(P).contiguous(), self.gamma, self.initial)

    def joint_returns(self, policies: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Each player's expected discounted return from the initial distribution, [2]."""
        out = []
        for i in (0, 1):
            mdp = self.marginal_mdp(i, policies[1 - i])
            _, values = policy_evaluation(mdp, policies[i])
            out.append(self.initial @ values)
        return torch.stack(out)

    def sample(self, policies: tuple[torch.Tensor, torch.Tensor], episodes: int, length: int, seed: int
               ) -> dict[str, np.ndarray]:
        """Trajectories of joint play: states [n, L + 1], actions [2, n, L]."""
        rng = np.random.default_rng(seed)
        P = self.transitions.numpy()
        pis = [p.numpy() for p in policies]
        states = np.empty((episodes, length + 1), dtype=np.int64)
        actions = np.empty((2, episodes, length), dtype=np.int64)
        states[:, 0] = rng.choice(self.num_states, size=episodes, p=self.initial.numpy())
        for t in range(length):
            s = states[:, t]
            for i in (0, 1):
                actions[i, :, t] = sample_rows(pis[i][s], rng)
            states[:, t + 1] = sample_rows(P[s, actions[0, :, t], actions[1, :, t]], rng)
        return {"states": states, "actions": actions}


def quantal_response_equilibrium(game: MarkovGame, rationality: float, damping: float = 0.5, tol: float = 1e-10,
                                 max_iter: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    """Both players' logit-QRE policies by damped best-response iteration (each soft-optimal against the other)."""
    A0, A1 = game.transitions.shape[1:3]
    policies = [torch.full((game.num_states, A0), 1 / A0, dtype=torch.float64),
                torch.full((game.num_states, A1), 1 / A1, dtype=torch.float64)]
    for _ in range(max_iter):
        change = 0.0
        for i in (0, 1):
            mdp = game.marginal_mdp(i, policies[1 - i])
            q, v = soft_value_iteration(mdp, 1.0 / rationality)
            response = mce_policy(q, v, 1.0 / rationality)
            new = damping * policies[i] + (1 - damping) * response
            change = max(change, float((new - policies[i]).abs().max()))
            policies[i] = new
        if change < tol:
            return policies[0], policies[1]
    raise PolicylabError(f"quantal_response_equilibrium did not converge to {tol} in {max_iter} rounds")


MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
"""stay, up, down, left, right."""


def gems(size: int = 3, slip: float = 0.1, gamma: float = 0.9, own_gem: float = 1.0, shared_gem: float = 2.0,
         step_cost: float = 0.05) -> MarkovGame:
    """Two players on a size x size grid; the joint state is (cell of 0, cell of 1). Each player's own gem
    (0: top-right corner, 1: bottom-left) pays it `own_gem` per step there; the purple centre pays
    each `shared_gem` when both stand on it; every step costs `step_cost`. With probability `slip` a
    player's move is a uniformly random one. Start: 0 top-left, 1 bottom-right."""
    if size < 2 or not 0 <= slip < 1:
        raise ConfigError(f"gems: size = {size} (>= 2) and slip = {slip} (in [0, 1)) are the allowed ranges")
    cells = size * size
    moves = np.zeros((cells, len(MOVES), cells))
    for c in range(cells):
        r, col = divmod(c, size)
        for a, (dr, dc) in enumerate(MOVES):
            target = min(max(r + dr, 0), size - 1) * size + min(max(col + dc, 0), size - 1)
            moves[c, a, target] += 1 - slip
            for dr2, dc2 in MOVES:
                other = min(max(r + dr2, 0), size - 1) * size + min(max(col + dc2, 0), size - 1)
                moves[c, a, other] += slip / len(MOVES)
    P = np.einsum("xat,ybu->xyabtu", moves, moves).reshape(cells * cells, len(MOVES), len(MOVES), cells * cells)
    gem0, gem1, purple = size - 1, (size - 1) * size, (size // 2) * size + size // 2
    position = np.arange(cells * cells)
    pos0, pos1 = position // cells, position % cells
    state_reward = np.stack([own_gem * (pos0 == gem0), own_gem * (pos1 == gem1)]).astype(np.float64)
    state_reward += shared_gem * ((pos0 == purple) & (pos1 == purple))
    state_reward -= step_cost
    R = np.broadcast_to(state_reward[:, :, None, None], (2, cells * cells, len(MOVES), len(MOVES))).copy()
    initial = np.zeros(cells * cells)
    initial[0 * cells + (cells - 1)] = 1.0
    return MarkovGame(torch.from_numpy(P), torch.from_numpy(R), gamma, torch.from_numpy(initial))
