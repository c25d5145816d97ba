"""HIB, the Historical Information Bottleneck (He, Wu, Bai, Lai, Wang, Pan, Hu, Zhang, "Bridging the Sim-to-Real
Gap from the Information Bottleneck Perspective", CoRL 2024, arXiv 2305.18464; v1 "Privileged Knowledge Distillation
for Sim-to-Real Policy Generalization"), as an OFFLINE ADAPTATION of an on-policy (PPO) method: IQL on the current
observation and an encoded history, the encoder shaped by the policy's loss and an information bottleneck towards
the privileged knowledge e (the dynamics parameters) that only the training data carries.

    h_t          the last H rows (o_k, a_{k-1}, 1) up to o_t, zero-padded before the episode's start
    q_phi(z|h)   = N(mu_phi(h), diag sigma_phi(h)^2), a GRU over h; z = mu + sigma * eps (reparameterized)
    objective    max_phi  I(z; e) - beta I(z; h)                                                        (IB)
    (1) I(z; h) <= E_h[ KL(q_phi(z|h) || N(0, I)) ]                                      (variational upper bound)
    (2) I(z; e) >= log B - L_NCE,  L_NCE = -E_i[ log exp(s(z_i, g(e_i))/T) / sum_j exp(s(z_i, g(e_j))/T) ]
    (3) policy pi(a | o_t, z_t): IQL's value, critic and advantage-weighted actor losses (policylab.offline.iql,
        unchanged) on inputs (o_t, sg(z_t)); the policy loss L_pi = -E[w log pi(a | o_t, z_t)] again with z_t live
    encoder and g step on  L_pi + beta KL + lambda L_NCE

Sources. Verified (the paper's abstract and project page, read here): the sim-to-real gap framed as an
information-bottleneck problem; a privileged-knowledge representation learned in one stage from a fixed-length
local history, keeping the changeable dynamics information; the RL objective also sends gradients to the history
encoder, so the representation combines with any RL algorithm; theory bounds the oracle-vs-learned value gap;
baselines that gradually drop privileged inputs or imitate a teacher in two stages; the paper's experiments are
on-policy (PPO) legged locomotion in simulation and on a real quadruped. Reconstructed (the method section could
not be read here; policylab's notes 5.10 and the standard estimators): the KL-to-N(0, I) upper bound (1) (deep
variational IB, Alemi et al. 2017), the InfoNCE lower bound (2) (van den Oord et al. 2018) with a learned
embedding g(e), and the values of beta, lambda, T, H and d_z. Ours, for the offline setting: IQL instead of PPO;
the RL gradient reaching the encoder is the policy's loss only (IQL's advantage-weighted log-likelihood, the
counterpart of PPO's policy surrogate; the critics are not deployed, and our notes recall the paper's as
asymmetric), as the critic and value regressions are in reward units and, routed into the encoder, swamp the
nats of (1) and (2) by orders of magnitude (measured on the unit tests' tiny dataset); s = cosine similarity;
pairs of a batch that share their episode's e are dropped from each other's denominators (they are not
negatives); g(e) sees e standardized by the dataset's statistics; training draws z ~ q(z|h), deployment uses
z = mu(h); a Polyak target encoder gives the bootstrap inputs (o_{t+1}, mu_bar(h_{t+1})). `stochastic=False,
kl_weight=0, nce_weight=0` is the same network without the bottleneck (history-IQL). e enters only L_NCE's g: the
deployable policy takes (o_t, h_t).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from policylab.core.actor_critic import q_values
from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.core.nn import adam, mlp, soft_update
from policylab.data.history import HistoryWindows, history_table, history_windows
from policylab.data.privileged import (
    deployable_observation_dim,
    privileged_values,
    register_privileged_from_metadata,
)
from policylab.offline.history import HistoryEncoder, HistoryPolicy, HistoryTracker
from policylab.offline.iql import IQL, IQLConfig
from policylab.offline.train import Prepared, open_data, train_offline

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class HIBConfig(IQLConfig):
    history_length: int = param(8, ge=1)
    """H: rows (o_k, a_{k-1}) the encoder sees, the current observation last."""
    encoder_hidden: int = param(32, gt=0)
    """GRU width of the history encoder."""
    latent_dim: int = param(8, gt=0)
    """d_z, the size of the privileged-knowledge representation z."""
    stochastic: bool = True
    """q(z|h) Gaussian with z sampled in training (False: z = mu(h), deterministic, no bottleneck possible)."""
    kl_weight: float = param(1e-3, ge=0)
    """beta of the IB objective: the weight of KL(q(z|h) || N(0, I)), the compression term (1)."""
    nce_weight: float = param(1.0, ge=0)
    """lambda, weight of the InfoNCE loss (2) that keeps z informative about e."""
    temperature: float = param(0.1, gt=0)
    """T of the InfoNCE logits (cosine similarities / T)."""
    embed_hidden: tuple[int, ...] = (64,)
    """Hidden widths of the privileged-knowledge embedding g(e)."""
    encoder_tau: float = param(0.005, gt=0, le=1)
    """Polyak rate of the target encoder that encodes h_{t+1} for the critic's bootstrap."""
    previous_action: bool = True
    """Pair each observation with the previous action (False: observations only)."""

    def check(self) -> None:
        super().check()
        if self.kl_weight > 0 and not self.stochastic:
            raise ConfigError(f"HIBConfig.kl_weight = {self.kl_weight} is not allowed with stochastic = False: the KL "
                              "term needs a stochastic encoder (set kl_weight = 0 or stochastic = True)")
        if self.sampler != "uniform":
            raise ConfigError(f"HIBConfig.sampler = {self.sampler!r} is not allowed: hib draws its own history "
                              "windows (uniform over transitions); only 'uniform'")
        if any(w <= 0 for w in self.embed_hidden):
            raise ConfigError(f"HIBConfig.embed_hidden = {self.embed_hidden} is not allowed: widths must be > 0")


def kl_to_standard_normal(mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """(1) KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_d (mu^2 + sigma^2 - 1 - 2 log sigma), mean over the batch."""
    return 0.5 * (mu.pow(2) + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1).mean()


def info_nce(z: torch.Tensor, keys: torch.Tensor, temperature: float, same: torch.Tensor | None = None
             ) -> torch.Tensor:
    """(2) L_NCE over a batch: row i's positive is keys[i], its negatives the other keys; s = cosine similarity.
    `same` [B, B] (optional) marks pairs that share their privileged value: off the diagonal they are dropped
    from the denominator. log B - L_NCE lower-bounds I(z; e) when every row has a distinct e."""
    logits = F.normalize(z, dim=-1) @ F.normalize(keys, dim=-1).T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    if same is not None:
        logits = logits.masked_fill(same & ~eye, -math.inf)
    return F.cross_entropy(logits, torch.arange(len(z), device=z.device))


class GaussianHistoryEncoder(torch.nn.Module):
    """q_phi(z|h): the GRU history encoder with a head of 2 d_z, split into mu and a clamped log sigma."""

    def __init__(self, features: int, hidden: int, latent: int):
        super().__init__()
        self.body = HistoryEncoder(features, hidden, 2 * latent)

    def forward(self, histories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.body(histories).chunk(2, -1)
        return mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)


class HIB(HistoryPolicy):
    name = "hib"

    def __init__(self, prepared: Prepared, cfg: HIBConfig):
        data = prepared.data
        self.cfg = cfg
        self.obs_dim, act_dim = data.observations.shape[1], data.actions.shape[1]
        deployable = deployable_observation_dim(data)
        if self.obs_dim != deployable:  # e (or anything else) appended: not a deployable policy's input
            raise ConfigError(f"hib: the dataset's observations have {self.obs_dim} columns, the deployed env's "
                              f"{deployable}; privileged values belong in the metadata")
        e = privileged_values(data)
        self.e_mean, self.e_std = e.mean(0), e.std(0).clamp(min=1e-6)
        self.tracker = HistoryTracker(cfg.history_length, self.obs_dim, act_dim, cfg.previous_action)
        self.encoder = GaussianHistoryEncoder(self.tracker.features, cfg.encoder_hidden, cfg.latent_dim)
        self.encoder_target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.embed = mlp(e.shape[1], cfg.latent_dim, cfg.embed_hidden)  # g(e): training losses only
        self.encoder_opt = adam([*self.encoder.parameters(), *self.embed.parameters()], cfg.lr)
        # (3) IQL sizes its networks from the data's observations: here they are (o_t, z_t)
        inputs = data.observations.new_zeros(1, self.obs_dim + cfg.latent_dim)
        self.iql = IQL(SimpleNamespace(data=replace(data, observations=inputs), raw=prepared.raw), cfg)

    def make_sampler(self, data: Any, seed: int) -> HistoryWindows:
        return HistoryWindows(data, self.cfg.batch_size, self.cfg.history_length, seed, self.cfg.previous_action,
                              extra={"privileged": privileged_values(data)})

    def embed_privileged(self, e: torch.Tensor) -> torch.Tensor:
        return self.embed((e - self.e_mean) / self.e_std)

    def encode(self, histories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, mu, log sigma): z a reparameterized sample when stochastic, else mu."""
        mu, log_std = self.encoder(histories)
        z = mu + log_std.exp() * torch.randn_like(mu) if self.cfg.stochastic else mu
        return z, mu, log_std

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        z, mu, log_std = self.encode(batch["histories"])
        with torch.no_grad():
            next_mu, _ = self.encoder_target(batch["next_histories"])
        inputs = torch.cat([batch["observations"], z], 1)
        next_inputs = torch.cat([batch["next_observations"], next_mu], 1)
        metrics = self.iql.update({**batch, "observations": inputs.detach(), "next_observations": next_inputs})  # (3)
        policy_loss = self.policy_loss(inputs, batch["actions"])  # (3) L_pi, now with z live
        kl = kl_to_standard_normal(mu, log_std)  # (1)
        e = batch["privileged"]
        same = (e[:, None, :] == e[None, :, :]).all(-1)
        nce = info_nce(z, self.embed_privileged(e), cfg.temperature, same)  # (2)
        encoder_loss = policy_loss
        if cfg.kl_weight > 0:
            encoder_loss = encoder_loss + cfg.kl_weight * kl
        if cfg.nce_weight > 0:
            encoder_loss = encoder_loss + cfg.nce_weight * nce
        self.encoder_opt.zero_grad(set_to_none=True)
        encoder_loss.backward()
        self.encoder_opt.step()
        self.iql.actor.zero_grad(set_to_none=True)  # the actor already stepped on L_pi inside IQL's update
        soft_update(self.encoder_target, self.encoder, cfg.encoder_tau)
        return {**metrics, "loss/kl": kl.detach(), "loss/nce": nce.detach(), "sigma": log_std.detach().exp().mean()}

    def policy_loss(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """IQL's L_pi (its eq. 7) at `inputs`, the weights exp(beta_awr (min Qbar - V)) from its current networks."""
        iql, frozen = self.iql, inputs.detach()
        with torch.no_grad():
            advantage = q_values(iql.critic_target, frozen, actions).min(0).values - iql.value(frozen).squeeze(-1)
            weights = torch.exp(self.cfg.beta * advantage).clamp(max=self.cfg.max_weight)
        return iql.actor.weighted_nll(inputs, actions, weights)

    # -- the deployable policy: (o_t, h_t) only, z = mu(h_t); reset / observe hooks: HistoryPolicy --------
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[1] != self.obs_dim:
            raise ConfigError(f"hib policy: observations have {obs.shape[1]} columns, expected {self.obs_dim}")

        def act(histories: torch.Tensor) -> torch.Tensor:
            mu, _ = self.encoder(histories)
            return self.iql.actor(torch.cat([obs, mu], 1))

        return self.act_on_history(obs, act)

    def state_dict(self) -> dict[str, Any]:
        return {"iql": self.iql.state_dict(),
                **{part: getattr(self, part).state_dict() for part in ("encoder", "embed", "encoder_target",
                                                                       "encoder_opt")}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iql.load_state_dict(state["iql"])
        for part in ("encoder", "embed", "encoder_target", "encoder_opt"):
            getattr(self, part).load_state_dict(state[part])


@torch.no_grad()
def privileged_diagnostics(algo: HIB, data: Any, draws: int = 8, seed: int = 0, ridge: float = 1e-3
                           ) -> dict[str, float]:
    """How much of e the representation keeps, on `draws` batches of one random transition per episode (every
    e distinct): `probe_r2`, R^2 of a ridge-linear probe mu(h) -> e fit on the first half of the episodes and
    scored on the second (mean over e's dimensions); `kl`, (1) in nats; `nce_bound`, log B - L_NCE (2) in nats
    (meaningful where g was trained, nce_weight > 0)."""
    gen = torch.Generator().manual_seed(seed)
    starts, lengths = data.episode_starts[:-1], data.episode_starts[1:] - data.episode_starts[:-1]
    table, row, first = history_table(data, algo.cfg.previous_action)
    e_all = privileged_values(data)
    mus, es, kls, bounds = [], [], [], []
    for _ in range(draws):
        i = starts + (torch.rand(len(starts), generator=gen) * lengths).long()
        mu, log_std = algo.encoder(history_windows(table, row[i], first[i], algo.cfg.history_length))
        e = e_all[i]
        mus.append(mu), es.append(e), kls.append(float(kl_to_standard_normal(mu, log_std)))
        bounds.append(math.log(len(i)) - float(info_nce(mu, algo.embed_privileged(e), algo.cfg.temperature)))
    half = data.num_episodes // 2
    r2 = linear_probe_r2(torch.cat([m[:half] for m in mus]), torch.cat([e[:half] for e in es]),
                         torch.cat([m[half:] for m in mus]), torch.cat([e[half:] for e in es]), ridge)
    return {"probe_r2": r2, "kl": sum(kls) / draws, "nce_bound": sum(bounds) / draws}


def linear_probe_r2(x_fit: torch.Tensor, y_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                    ridge: float = 1e-3) -> float:
    """R^2 on (x_test, y_test) of a ridge regression y ~ W x + b fit on (x_fit, y_fit), mean over y's columns."""
    def design(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.ones(len(x), 1)], 1).double()

    x = design(x_fit)
    w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y_fit.double())
    y = y_test.double()
    residual = (y - design(x_test) @ w).pow(2).sum(0)
    total = (y - y.mean(0)).pow(2).sum(0).clamp(min=1e-12)
    return float((1 - residual / total).mean())


def train_hib(cfg: HIBConfig, *, env_id: Any, seed: int = 0, steps: int = 10_000, **train_kwargs: Any
              ) -> dict[str, Any]:
    """Train on a dataset with privileged values per episode (`policylab.data.privileged`); the summary adds the
    representation's diagnostics (`privileged_diagnostics`)."""
    data = open_data(env_id)
    register_privileged_from_metadata(data)
    summary = train_offline(HIB, cfg, env_id=data, seed=seed, steps=steps, **train_kwargs)
    summary["diagnostics"] = privileged_diagnostics(summary["algorithm"], summary["policy"].prepared.data)
    return summary
