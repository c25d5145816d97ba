"""IQL — Implicit Q-Learning (Kostrikov, Nair & Levine 2022), CORL's defaults for locomotion.

    L_V(psi)   = E_D[ L2^tau( min_i Qbar_i(s, a) - V_psi(s) ) ],   L2^tau(u) = |tau - 1(u < 0)| u^2   (eq. 5)
    L_Q(theta) = E_D[ (r + gamma (1 - d) V_psi(s') - Q_theta_i(s, a))^2 ]  for both critics             (eq. 6)
    L_pi(phi)  = -E_D[ min(exp(beta (min_i Qbar_i(s, a) - V_psi(s))), 100) log pi_phi(a | s) ]         (eq. 7)
tau = 0.7, beta = 3, Polyak 0.005. The policy is a Gaussian with a tanh mean and a state-independent
log-std (evaluated at its mean). Rewards are scaled by 1000 / (max episode return - min episode return)
of the dataset, as CORL does for locomotion, so tau and beta mean the same across reward scales.
Two conventions differ from CORL's `algorithms/offline/iql.py`: L_Q is the *sum* of the two critics' MSEs
(CORL averages them, `sum(F.mse_loss(q, targets) for q in qs) / len(qs)`), which under Adam changes little
beyond the logged `loss/critic` (twice CORL's q_loss); and the actor's learning rate is constant (CORL
anneals it with a cosine schedule over the run).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.actor_critic import q_values
from policylab.core.config import param
from policylab.core.nn import EnsembleMLP, adam, mlp, soft_update
from policylab.offline.bc import GaussianBCActor
from policylab.offline.train import OfflineConfig, Prepared, require_actions, return_spread_scale


@dataclass(frozen=True)
class IQLConfig(OfflineConfig):
    expectile: float = param(0.7, gt=0, lt=1)
    """tau of the expectile regression of V onto Q."""
    beta: float = param(3.0, gt=0)
    """Inverse temperature of the advantage weights."""
    max_weight: float = param(100.0, gt=0)
    tau: float = param(0.005, gt=0, le=1)
    normalize_rewards: bool = True
    """Scale rewards by 1000 / (max - min episode return) of the dataset."""


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """L2^tau(u) = |tau - 1(u < 0)| u^2, averaged."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


class IQL:
    name = "iql"

    def __init__(self, prepared: Prepared, cfg: IQLConfig):
        data = prepared.data
        require_actions(data, self.name, discrete=False)
        self.cfg = cfg
        n_obs, n_act = data.observations.shape[1], data.actions.shape[1]
        self.actor = GaussianBCActor(n_obs, n_act, cfg.hidden)
        self.critic = EnsembleMLP(2, n_obs + n_act, 1, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(n_obs, 1, cfg.hidden)
        self.actor_opt = adam(self.actor.parameters(), cfg.lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.lr)
        self.value_opt = adam(self.value.parameters(), cfg.lr)
        self.reward_scale = return_spread_scale(prepared, cfg.normalize_rewards)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, actions = batch["observations"], batch["actions"]
        rewards = batch["rewards"] * self.reward_scale
        with torch.no_grad():
            q_target = q_values(self.critic_target, obs, actions).min(0).values
            next_v = self.value(batch["next_observations"]).squeeze(-1)
        v = self.value(obs).squeeze(-1)
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        target = rewards + cfg.gamma * (1 - batch["terminals"]) * next_v
        q = q_values(self.critic, obs, actions)
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        advantage = (q_target - v.detach())
        weights = torch.exp(cfg.beta * advantage).clamp(max=cfg.max_weight)
        actor_loss = self.actor.weighted_nll(obs, actions, weights)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        return {"loss/value": value_loss.detach(), "loss/critic": critic_loss.detach(),
                "loss/actor": actor_loss.detach(), "q": q.detach().mean(), "v": v.detach().mean(),
                "adv_weight": weights.mean()}

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    parts = ("actor", "critic", "critic_target", "value", "actor_opt", "critic_opt", "value_opt")

    def state_dict(self) -> dict[str, Any]:
        return {p: getattr(self, p).state_dict() for p in self.parts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for p in self.parts:
            getattr(self, p).load_state_dict(state[p])
