"""Offline RL with observation histories (Hong, Dragan & Levine, "Offline RL with Observation Histories:
Analyzing and Improving Sample Complexity", ICLR 2024, arXiv 2310.20663): IQL on an encoded history plus a
bisimulation loss on the history representation.

    phi(h_t)   a GRU over the last H pairs (o_k, a_{k-1}), zero-padded before the episode's start
    L_IQL      IQL's value, critic and actor losses (policylab.offline.iql, unchanged) on z = phi(h_t),
               bootstrapping from phi_bar(h_{t+1})
    L_bisim    = E_i[( ||phi(h_i) - phi(h_j)||_1 - |r_i - r_j| - gamma ||phi_bar(h'_i) - phi_bar(h'_j)||_1 )^2],
               j = pi(i) a random permutation of the minibatch, phi_bar a Polyak copy of phi (no gradient)
    encoder gradient = d L_IQL / d phi + beta_bisim * d L_bisim / d phi      (beta_bisim = 0: plain history-IQL)

Sources. Verified (abstract, via the paper's public text): histories instead of states; a bisimulation loss
that measures how far the history representation is from a bisimulation, added to a standard offline RL
algorithm (the paper uses CQL/IQL, and ILQL for language), and the claim that the loss either improves the
score or is already low when the base method does well, correlating with performance. Reconstructed (the
method section could not be read here; policylab's research notes, section 5.8): the loss in the DBC form
above (Zhang et al. 2021), sample-based successor distances with a target encoder instead of a learned
latent dynamics model, L1 distances for both terms. Ours: the encoder takes the gradient of all three IQL
losses (captured on a detached latent leaf, so `IQL.update` runs unchanged) plus beta_bisim L_bisim, with
its own Adam; rewards in L_bisim are divided by the dataset's reward std (scale-free); the successor term
is dropped for a pair where either transition terminates; GRU(32) with a linear head (unbounded latent).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.core.nn import adam, soft_update
from policylab.data.history import HistoryWindows
from policylab.data.partial import partially_observed, register_from_metadata
from policylab.offline.history import HistoryEncoder, HistoryPolicy, HistoryTracker
from policylab.offline.iql import IQL, IQLConfig
from policylab.offline.train import Prepared, open_data, train_offline


@dataclass(frozen=True)
class ObsHistoryConfig(IQLConfig):
    history_length: int = param(8, ge=1)
    """H: pairs (o_k, a_{k-1}) the encoder sees, the current observation last."""
    encoder_hidden: int = param(32, gt=0)
    """GRU width, also the latent size."""
    previous_action: bool = True
    """Pair each observation with the previous action (False: observations only)."""
    bisim_weight: float = param(0.5, ge=0)
    """beta_bisim, the weight of the bisimulation loss on the encoder (0: history-IQL, loss only measured)."""
    encoder_tau: float = param(0.005, gt=0, le=1)
    """Polyak rate of the target encoder phi_bar."""
    hide_dims: tuple[int, ...] = (2,)
    """Observation dimensions hidden from the agent (default: Pendulum's angular velocity)."""
    obs_noise_std: float = param(0.0, ge=0)
    """Gaussian noise std added to the kept observation dimensions (environment units)."""
    noise_seed: int = 0

    def check(self) -> None:
        super().check()
        if len(set(self.hide_dims)) != len(self.hide_dims) or any(d < 0 for d in self.hide_dims):
            raise ConfigError(f"ObsHistoryConfig.hide_dims = {self.hide_dims} is not allowed: distinct observation "
                              "dimension indices >= 0 (() hides nothing)")
        if self.sampler != "uniform":
            raise ConfigError(f"ObsHistoryConfig.sampler = {self.sampler!r} is not allowed: obs_history draws its "
                              "own history windows (uniform over transitions); only 'uniform'")


def bisimulation_loss(z: torch.Tensor, next_z_target: torch.Tensor, rewards: torch.Tensor, gamma: float,
                      pairs: torch.Tensor, terminals: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over i of (||z_i - z_j||_1 - |r_i - r_j| - gamma ||z'_i - z'_j||_1)^2 with j = pairs[i]; the
    target side carries no gradient."""
    distance = (z - z[pairs]).abs().sum(-1)
    successor = (next_z_target - next_z_target[pairs]).abs().sum(-1)
    if terminals is not None:
        successor = successor * (1 - terminals) * (1 - terminals[pairs])
    target = (rewards - rewards[pairs]).abs() + gamma * successor
    return (distance - target.detach()).pow(2).mean()


class ObsHistory(HistoryPolicy):
    name = "obs_history"

    def __init__(self, prepared: Prepared, cfg: ObsHistoryConfig):
        data = prepared.data
        self.cfg = cfg
        obs_dim, act_dim = data.observations.shape[1], data.actions.shape[1]
        self.tracker = HistoryTracker(cfg.history_length, obs_dim, act_dim, cfg.previous_action)
        self.encoder = HistoryEncoder(self.tracker.features, cfg.encoder_hidden)
        self.encoder_target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.encoder_opt = adam(self.encoder.parameters(), cfg.lr)
        # IQL sizes its networks from the data's observations: here they are latents
        latents = data.observations.new_zeros(1, cfg.encoder_hidden)
        latent_view = SimpleNamespace(data=replace(data, observations=latents), raw=prepared.raw)
        self.iql = IQL(latent_view, cfg)
        self.bisim_reward_scale = 1.0 / float(prepared.raw.rewards.std().clamp(min=1e-6))
        self.pair_generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, ())))

    def make_sampler(self, data: Any, seed: int) -> HistoryWindows:
        return HistoryWindows(data, self.cfg.batch_size, self.cfg.history_length, seed, self.cfg.previous_action)

    def bisim(self, z: torch.Tensor, next_histories: torch.Tensor, rewards: torch.Tensor, terminals: torch.Tensor,
              pairs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            next_z_target = self.encoder_target(next_histories)
        return bisimulation_loss(z, next_z_target, rewards * self.bisim_reward_scale, self.cfg.gamma, pairs, terminals)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        z = self.encoder(batch["histories"])
        z_leaf = z.detach().requires_grad_(True)  # collects d L_IQL / d z from IQL's three backward passes
        with torch.no_grad():
            next_z_target = self.encoder_target(batch["next_histories"])
        metrics = self.iql.update({**batch, "observations": z_leaf, "next_observations": next_z_target})
        pairs = torch.randperm(len(z), generator=self.pair_generator)
        scaled = batch["rewards"] * self.bisim_reward_scale
        bisim = bisimulation_loss(z if cfg.bisim_weight > 0 else z.detach(), next_z_target, scaled, cfg.gamma, pairs,
                                  batch["terminals"])
        encoder_loss = (z * z_leaf.grad).sum()  # gradient d L_IQL / d phi by the chain rule
        if cfg.bisim_weight > 0:
            encoder_loss = encoder_loss + cfg.bisim_weight * bisim
        self.encoder_opt.zero_grad(set_to_none=True)
        encoder_loss.backward()
        self.encoder_opt.step()
        soft_update(self.encoder_target, self.encoder, cfg.encoder_tau)
        return {**metrics, "loss/bisim": bisim.detach(), "latent_norm": z.detach().abs().sum(-1).mean()}

    # -- the policy, with a window per evaluation episode (reset / observe hooks: HistoryPolicy) -----------
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.act_on_history(obs, lambda histories: self.iql.actor(self.encoder(histories)))

    def state_dict(self) -> dict[str, Any]:
        return {"iql": self.iql.state_dict(), "encoder": self.encoder.state_dict(),
                "encoder_target": self.encoder_target.state_dict(), "encoder_opt": self.encoder_opt.state_dict(),
                "pair_generator": self.pair_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iql.load_state_dict(state["iql"])
        for part in ("encoder", "encoder_target", "encoder_opt"):
            getattr(self, part).load_state_dict(state[part])
        self.pair_generator.set_state(state["pair_generator"])


@torch.no_grad()
def measure_bisim_loss(algo: ObsHistory, data: Any, samples: int = 4096, seed: int = 0) -> float:
    """L_bisim of the trained encoder on `samples` fixed transitions and pairs (the same for every run)."""
    batch = HistoryWindows(data, samples, algo.cfg.history_length, seed, algo.cfg.previous_action).sample()
    pairs = torch.randperm(samples, generator=torch.Generator().manual_seed(seed + 1))
    z = algo.encoder(batch["histories"])
    return float(algo.bisim(z, batch["next_histories"], batch["rewards"], batch["terminals"], pairs))


def train_obs_history(cfg: ObsHistoryConfig, *, env_id: Any, seed: int = 0, steps: int = 10_000, **train_kwargs: Any
                      ) -> dict[str, Any]:
    """Hide `cfg.hide_dims` / add noise to the dataset (evaluation uses the same wrapper), train, then measure
    the final bisimulation loss. A dataset that is already partially observed is used as it is, and so is
    one with no env (logged data: its observations are what the agent saw)."""
    data = open_data(env_id)
    if "partial_observation" in data.metadata:
        register_from_metadata(data)
    elif data.metadata.get("env_id"):
        data = partially_observed(data, cfg.hide_dims, cfg.obs_noise_std, cfg.noise_seed)
    summary = train_offline(ObsHistory, cfg, env_id=data, seed=seed, steps=steps, **train_kwargs)
    summary["bisim_loss"] = measure_bisim_loss(summary["algorithm"], summary["policy"].prepared.data)
    return summary
