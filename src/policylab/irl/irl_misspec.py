"""Sensitivity of IRL to misspecification (Skalse and Abate, "Quantifying the Sensitivity of Inverse
Reinforcement Learning to Misspecification", ICLR 2024, arXiv 2403.06854). A theory paper: no code.

IRL assumes a behavioural model f: reward -> policy; the data may come from another, g. The paper asks
how far the reward inferred under f can be from the true one, in a STARC metric, when g != f.
Behavioural models (§2), with the optimal Q* for Boltzmann and the soft Q for MCE:
    Boltzmann b_beta:  pi(a|s) ∝ exp(beta Q*_R(s, a))
    MCE c_alpha:       pi(a|s) = exp((Q^soft_R(s, a) - V^soft_R(s)) / alpha)
Their inverses determine R up to potential shaping and S'-redistribution (Thm 3.x); an IRL learner
that assumes (temperature', gamma', tau') returns some member of
    {R_hat(s, a) + Phi(s) - gamma' E_{S'~tau'(s, a)} Phi(S')  :  Phi any potential}
    MCE:        R_hat = alpha' log pi                       (Q - V = r + gamma E V' - V is R shaped by V)
    Boltzmann:  Q_hat = log(pi) / beta',  R_hat(s, a) = Q_hat(s, a) - gamma' E_{S'~tau'} max_a' Q_hat(S', a')
Under the true (gamma, tau) a Phi-term with the wrong gamma' or tau' is no longer a shaping: it leaves
the residual (gamma - gamma') tau Phi or gamma (tau - tau') Phi, which grows with ||Phi||. Hence the
paper's results: a wrong temperature costs nothing (Thm: b_beta, c_alpha are 0-robust to it), a wrong
discount or wrong dynamics can cost arbitrarily much (the worst case grows with the admissible ||Phi||).
`misspecification_error` measures it: the STARC distance (VAL, uniform pi, under the true MDP) between
the true reward and the canonical member (Phi = 0), and its worst case over `potentials` random Phi
with ||Phi||_inf <= bound x max |E R| (a lower bound on the supremum; the bound is part of the result).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.tabular import (
    TabularMDP,
    boltzmann_policy,
    mce_policy,
    normalized_regret,
    soft_value_iteration,
    starc_distance,
    value_iteration,
)


def boltzmann_model(mdp: TabularMDP, temperature: float) -> torch.Tensor:
    q, _ = value_iteration(mdp)
    return boltzmann_policy(q, 1.0 / temperature)


def mce_model(mdp: TabularMDP, temperature: float) -> torch.Tensor:
    q, v = soft_value_iteration(mdp, temperature)
    return mce_policy(q, v, temperature)


def boltzmann_inverse(policy: torch.Tensor, mdp: TabularMDP, temperature: float) -> torch.Tensor:
    q = temperature * policy.log()
    return q - mdp.gamma * torch.einsum("sat,t->sa", mdp.transitions, q.amax(-1))


def mce_inverse(policy: torch.Tensor, mdp: TabularMDP, temperature: float) -> torch.Tensor:
    return temperature * policy.log()


BEHAVIOUR_MODELS = {"boltzmann": (boltzmann_model, boltzmann_inverse), "mce": (mce_model, mce_inverse)}
"""name -> (reward -> policy in the MDP, (policy, assumed MDP, temperature) -> canonical reward [S, A])."""


@dataclass(frozen=True)
class MisspecConfig(Config):
    data_model: str = "mce"
    data_temperature: float = param(1.0, gt=0)
    learner_model: str = "mce"
    learner_temperature: float = param(1.0, gt=0)
    learner_gamma: float | None = param(None, ge=0, lt=1)
    """gamma' the learner assumes; None is the true one."""
    dynamics_noise: float = param(0.0, ge=0, le=1)
    """tau' = (1 - w) tau + w N, N a random Dirichlet(1) transition kernel of its own seed."""
    bound: float = param(10.0, ge=0)
    """B: ||Phi||_inf <= B x max |E R| for the worst case over shaping."""
    potentials: int = param(400, gt=0)

    def check(self) -> None:
        for name in ("data_model", "learner_model"):
            if getattr(self, name) not in BEHAVIOUR_MODELS:
                raise ConfigError(f"MisspecConfig.{name} = {getattr(self, name)!r} is not allowed: behavioural "
                                  f"models: {', '.join(BEHAVIOUR_MODELS)}")


def assumed_mdp(mdp: TabularMDP, cfg: MisspecConfig, seed: int) -> TabularMDP:
    """The MDP the learner believes in: its gamma' and its perturbed dynamics tau'."""
    P = mdp.transitions
    if cfg.dynamics_noise > 0:
        rng = np.random.default_rng(seed)
        noise = torch.from_numpy(rng.dirichlet(np.ones(mdp.num_states), size=(mdp.num_states, mdp.num_actions)))
        P = (1 - cfg.dynamics_noise) * P + cfg.dynamics_noise * noise
    gamma = mdp.gamma if cfg.learner_gamma is None else cfg.learner_gamma
    return replace(mdp, transitions=P, gamma=gamma)


def misspecification_error(mdp: TabularMDP, cfg: MisspecConfig, seed: int) -> dict[str, float]:
    """Distances between the true reward and what an IRL learner assuming `cfg`'s model infers from the
    exact policy of `cfg.data_model` (infinite data: the error is the misspecification's alone)."""
    policy = BEHAVIOUR_MODELS[cfg.data_model][0](mdp, cfg.data_temperature)
    believed = assumed_mdp(mdp, cfg, seed)
    canonical = BEHAVIOUR_MODELS[cfg.learner_model][1](policy, believed, cfg.learner_temperature)
    scale = float(mdp.expected_rewards().abs().max())
    generator = torch.Generator().manual_seed(seed)
    phi = cfg.bound * scale * (2 * torch.rand((cfg.potentials, mdp.num_states), dtype=torch.float64,
                                              generator=generator) - 1)
    members = canonical + phi[:, :, None] - believed.gamma * torch.einsum("sat,nt->nsa", believed.transitions, phi)
    worst = starc_distance(mdp, mdp.rewards, members, batched=True).max()
    return {"starc_canonical": float(starc_distance(mdp, mdp.rewards, canonical)),
            "starc_worst": float(max(worst, starc_distance(mdp, mdp.rewards, canonical))),
            "regret_canonical": normalized_regret(mdp, mdp.rewards, canonical)}
