"""CQL — Conservative Q-Learning (Kumar et al. 2020), the SAC-based CQL(H) variant, CORL's defaults.

Critic (eq. 4, with the log-sum-exp estimated by importance sampling as in the official code):
    L_Q = alpha_c * E_s[ logsumexp_a Q(s, a) - E_{a~D} Q(s, a) ] + 1/2 E_D[(Q(s, a) - y)^2],
    y   = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(s')   (no entropy in the backup, CORL's default)
where logsumexp over actions uses N uniform actions (density 0.5^|A|) and N policy actions at s and at s'
(each minus its log-density). Actor and temperature: SAC's, E[alpha log pi(a|s) - min_i Q_i(s, a)],
alpha tuned toward entropy -|A|. Defaults: alpha_c = 10 and policy lr 3e-5 (CORL locomotion), critic
lr 3e-4, N = 10.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.actor_critic import q_values
from policylab.core.config import param
from policylab.core.nn import EnsembleMLP, TanhGaussianHead, adam, mlp, soft_update
from policylab.offline.train import OfflineConfig, Prepared, require_actions


@dataclass(frozen=True)
class CQLConfig(OfflineConfig):
    cql_alpha: float = param(10.0, ge=0)
    """alpha_c, the weight of the conservative penalty (0 gives plain offline SAC)."""
    num_sampled_actions: int = param(10, gt=0)
    policy_lr: float = param(3e-5, gt=0)
    tau: float = param(0.005, gt=0, le=1)


class CQL:
    name = "cql"

    def __init__(self, prepared: Prepared, cfg: CQLConfig):
        data = prepared.data
        require_actions(data, self.name, discrete=False)
        self.cfg = cfg
        n_obs, self.n_act = data.observations.shape[1], data.actions.shape[1]
        self.actor = mlp(n_obs, 2 * self.n_act, cfg.hidden)
        self.head = TanhGaussianHead()
        self.critic = EnsembleMLP(2, n_obs + self.n_act, 1, cfg.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros((), requires_grad=True)
        self.actor_opt = adam(self.actor.parameters(), cfg.policy_lr)
        self.critic_opt = adam(self.critic.parameters(), cfg.lr)
        self.alpha_opt = adam([self.log_alpha], cfg.policy_lr)
        self.target_entropy = -float(self.n_act)

    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.actor(obs), deterministic)

    def _repeated_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q of N actions per state: obs [B, D], actions [B, N, A] -> [2, B, N]."""
        B, N, _ = actions.shape
        q = q_values(self.critic, obs[:, None].expand(B, N, obs.shape[-1]).reshape(B * N, -1),
                     actions.reshape(B * N, -1))
        return q.view(2, B, N)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        B, N, A = obs.shape[0], cfg.num_sampled_actions, self.n_act

        # actor and temperature (SAC)
        pi, logp = self.sample(obs)
        self.critic.requires_grad_(False)
        q_pi = q_values(self.critic, obs, pi).min(0).values
        self.critic.requires_grad_(True)
        alpha = self.log_alpha.exp().detach()
        actor_loss = (alpha * logp - q_pi).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        # critic: Bellman error + conservative penalty
        with torch.no_grad():
            next_a, _ = self.sample(next_obs)
            target = batch["rewards"] + cfg.gamma * (1 - batch["terminals"]) * \
                q_values(self.critic_target, next_obs, next_a).min(0).values
            rand_a = torch.rand(B, N, A) * 2 - 1
            rep_obs = obs[:, None].expand(B, N, obs.shape[-1]).reshape(B * N, -1)
            rep_next = next_obs[:, None].expand(B, N, obs.shape[-1]).reshape(B * N, -1)
            cur_a, cur_logp = self.sample(rep_obs)
            nxt_a, nxt_logp = self.sample(rep_next)
        q = q_values(self.critic, obs, actions)
        bellman = 0.5 * (q - target).pow(2).mean(1).sum()
        log_uniform = A * math.log(0.5)
        candidates = torch.cat([
            self._repeated_q(obs, rand_a) - log_uniform,
            self._repeated_q(obs, cur_a.view(B, N, A)) - cur_logp.view(1, B, N),
            self._repeated_q(obs, nxt_a.view(B, N, A)) - nxt_logp.view(1, B, N),
        ], dim=-1)
        gap = torch.logsumexp(candidates, dim=-1) - q  # [2, B]
        penalty = gap.mean(1).sum()
        critic_loss = bellman + cfg.cql_alpha * penalty
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        return {"loss/critic": bellman.detach(), "loss/cql_gap": penalty.detach(), "loss/actor": actor_loss.detach(),
                "alpha": alpha, "q": q.detach().mean(), "entropy": -logp.detach().mean()}

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.sample(obs, deterministic=True)[0]

    parts = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "alpha_opt")

    def state_dict(self) -> dict[str, Any]:
        return {**{p: getattr(self, p).state_dict() for p in self.parts}, "log_alpha": self.log_alpha.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for p in self.parts:
            getattr(self, p).load_state_dict(state[p])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
