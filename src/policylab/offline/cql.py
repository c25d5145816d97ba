"""CQL — Conservative Q-Learning (Kumar et al. 2020), the SAC-based CQL(H) variant, CORL's defaults.

Critic (eq. 4, with the log-sum-exp estimated by importance sampling as in the official code):
    L_Q = sum_i [ alpha_c * E_s[ logsumexp_a Q_i(s, a) - E_{a~D} Q_i(s, a) ] + c E_D[(Q_i(s, a) - y)^2] ],
    y   = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(s')   (no entropy in the backup, CORL's default)
where logsumexp over actions uses N uniform actions (density 0.5^|A|) and N policy actions at s and at s'
(each minus its log-density). c = `bellman_scale` = 1 is the plain MSE of each critic, summed over the two,
as CORL (`algorithms/offline/cql.py`) and the authors' rlkit code train; c = 1/2 is eq. 4 as printed. Under
Adam the overall scale of a loss hardly matters, so c = 1/2 acts like alpha_c doubled. Actor and
temperature: SAC's, E[alpha log pi(a|s) - min_i Q_i(s, a)], alpha tuned toward entropy -|A|. Defaults:
alpha_c = 10 and policy lr 3e-5 (CORL locomotion), critic lr 3e-4, N = 10. One order differs from CORL:
the actor steps before the critic's loss is built (CORL builds all losses first, then steps).
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


def cql_critic_loss(q_data: torch.Tensor, target: torch.Tensor, q_candidates: torch.Tensor, cql_alpha: float,
                    bellman_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_Q, its Bellman term, its conservative gap), each summed over the critics.

    q_data [E, B]: Q_i(s, a) on the batch; target [B]: y; q_candidates [E, B, K]: the importance-corrected
    Q values whose log-sum-exp estimates logsumexp_a Q_i(s, a).
    """
    bellman = bellman_scale * (q_data - target).pow(2).mean(1).sum()
    gap = (torch.logsumexp(q_candidates, dim=-1) - q_data).mean(1).sum()
    return bellman + cql_alpha * gap, bellman, gap


@dataclass(frozen=True)
class CQLConfig(OfflineConfig):
    cql_alpha: float = param(10.0, ge=0)
    """alpha_c, the weight of the conservative penalty (0 gives plain offline SAC)."""
    bellman_scale: float = param(1.0, gt=0)
    """c, the Bellman term's weight: 1 is CORL's / rlkit's plain MSE per critic; 0.5 is the paper's eq. 4 form."""
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

    @torch.no_grad()
    def critic_draws(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The actions the critic's loss needs: a' ~ pi(s') for the target, and N uniform, N pi(s) and
        N pi(s') actions (with their log-densities) for the log-sum-exp."""
        obs, next_obs = batch["observations"], batch["next_observations"]
        B, N, A = obs.shape[0], self.cfg.num_sampled_actions, self.n_act
        next_a, _ = self.sample(next_obs)
        rand_a = torch.rand(B, N, A) * 2 - 1
        rep_obs = obs[:, None].expand(B, N, obs.shape[-1]).reshape(B * N, -1)
        rep_next = next_obs[:, None].expand(B, N, obs.shape[-1]).reshape(B * N, -1)
        cur_a, cur_logp = self.sample(rep_obs)
        nxt_a, nxt_logp = self.sample(rep_next)
        return {"next_actions": next_a, "uniform": rand_a, "current": cur_a.view(B, N, A),
                "current_logp": cur_logp.view(B, N), "next": nxt_a.view(B, N, A), "next_logp": nxt_logp.view(B, N)}

    def critic_loss(self, batch: dict[str, torch.Tensor], draws: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_Q, Bellman term, conservative gap, Q(s, a) [2, B]) for the batch and `critic_draws`' actions."""
        cfg, obs = self.cfg, batch["observations"]
        with torch.no_grad():
            target = batch["rewards"] + cfg.gamma * (1 - batch["terminals"]) * \
                q_values(self.critic_target, batch["next_observations"], draws["next_actions"]).min(0).values
        q = q_values(self.critic, obs, batch["actions"])
        log_uniform = self.n_act * math.log(0.5)
        candidates = torch.cat([
            self._repeated_q(obs, draws["uniform"]) - log_uniform,
            self._repeated_q(obs, draws["current"]) - draws["current_logp"][None],
            self._repeated_q(obs, draws["next"]) - draws["next_logp"][None],
        ], dim=-1)
        loss, bellman, gap = cql_critic_loss(q, target, candidates, cfg.cql_alpha, cfg.bellman_scale)
        return loss, bellman, gap, q

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs = batch["observations"]

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
        critic_loss, bellman, penalty, q = self.critic_loss(batch, self.critic_draws(batch))
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
