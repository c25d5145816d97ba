"""RCSL — return-conditioned supervised learning: the MLP policy of RvS (Emmons et al. 2022) conditioned on
the return-to-go, as MBRCSL (Zhou et al. 2024) trains it; Decision Transformer's conditioning without the transformer.

    g_t = sum_{t' >= t} r_t'                                 (undiscounted return-to-go within the episode, as DT)
    L(phi) = E_D[ ||pi_phi(s_t, g_t / c) - a_t||^2 ]          continuous: deterministic tanh policy, a in [-1, 1]
    L(phi) = -E_D[ log pi_phi(a_t | s_t, g_t / c) ]           discrete: cross-entropy, argmax at evaluation
c = max |episode return| of the dataset, so the conditioning input is O(1). At evaluation the policy is
conditioned on a target g_0 (by default the dataset's best episode return, as RvS and MBRCSL evaluate) and
then on what is left of it, g_{t+1} = g_t - r_t (as DT does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.core.nn import adam
from policylab.data import OfflineData, UniformTransitions
from policylab.offline.bc import imitation_actor, imitation_loss
from policylab.offline.train import OfflineConfig, Prepared


@dataclass(frozen=True)
class RCSLConfig(OfflineConfig):
    hidden: tuple[int, ...] = (256, 256)
    """MLP widths; 2x256 as in the small MBRCSL experiment (MBRCSL's code uses 2x1024)."""
    lr: float = param(3e-4, gt=0)
    """Adam step size; MBRCSL's code uses 5e-5 over 100 epochs, the pendulum-mix10 test 1e-3 over 15k steps."""
    target_quantile: float = param(1.0, ge=0, le=1)
    """Evaluate conditioned on this quantile of the dataset's episode returns; 1 is the best episode."""
    target_return: float | None = None
    """A target return in env units instead of the quantile."""
    rtg_scale: float | None = param(None, gt=0)
    """Divide returns-to-go by this before they enter the network; None is the data's max |episode return|."""

    def check(self) -> None:
        super().check()
        if self.target_return is not None and not math.isfinite(self.target_return):
            raise ConfigError(f"RCSLConfig.target_return = {self.target_return} is not allowed: must be finite")
        if self.target_return is not None and self.target_quantile != 1.0:
            raise ConfigError(f"RCSLConfig: target_return = {self.target_return} and target_quantile = "
                              f"{self.target_quantile} both set the evaluation target; set only one")


def returns_to_go(data: OfflineData) -> torch.Tensor:
    """g_t = sum of the rewards from t to its episode's end, per transition (float32, contiguous).

    Suffix sums over the whole dataset minus the suffix sum at the next episode's start, in float64.
    """
    suffix = torch.cat([data.rewards.double().flip(0).cumsum(0).flip(0), torch.zeros(1, dtype=torch.float64)])
    episode_end = data.episode_starts[1:][data.episode_ids]
    return (suffix[:-1] - suffix[episode_end]).float().contiguous()


class ReturnConditionedTransitions(UniformTransitions):
    """Uniform transitions whose batches also carry each transition's return-to-go (`returns_to_go`)."""

    def __init__(self, data: OfflineData, batch_size: int, seed: int = 0, subset: torch.Tensor | None = None):
        super().__init__(data, batch_size, seed, subset)
        self.returns_to_go = returns_to_go(data)
        self.drawn = torch.empty(0, dtype=torch.long)

    def indices(self) -> torch.Tensor:
        self.drawn = super().indices()
        return self.drawn

    def sample(self) -> dict[str, torch.Tensor]:
        batch = super().sample()  # draws through `indices`, so `drawn` names the batch's transitions
        batch["returns_to_go"] = self.returns_to_go[self.drawn]
        return batch


class RCSL:
    name = "rcsl"

    def __init__(self, prepared: Prepared, cfg: RCSLConfig):
        self.cfg = cfg
        data = prepared.data
        self.discrete = data.discrete
        self.actor = imitation_actor(data, 1, cfg.hidden)  # BC's actor with the return-to-go as one more input
        self.opt = adam(self.actor.parameters(), cfg.lr)
        episode_returns = data.episode_returns()
        self.rtg_scale = cfg.rtg_scale or max(float(episode_returns.abs().max()), 1e-6)
        self.target_return = (cfg.target_return if cfg.target_return is not None
                              else float(episode_returns.quantile(cfg.target_quantile)))
        self.remaining: torch.Tensor | None = None
        """Per evaluation episode, the target return minus the rewards received so far (env units)."""
        self.live: torch.Tensor | None = None
        """The evaluation episodes whose observations the next policy_action gets, in order."""

    def make_sampler(self, data: OfflineData, seed: int) -> ReturnConditionedTransitions:
        return ReturnConditionedTransitions(data, self.cfg.batch_size, seed)

    def policy_output(self, obs: torch.Tensor, returns_to_go: torch.Tensor) -> torch.Tensor:
        return self.actor(torch.cat([obs, (returns_to_go / self.rtg_scale).unsqueeze(-1)], -1))

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "returns_to_go" not in batch:
            raise ConfigError("rcsl needs batches with 'returns_to_go' (its own sampler, ReturnConditionedTransitions);"
                              " a caller's sampler must provide them")
        loss = imitation_loss(self.policy_output(batch["observations"], batch["returns_to_go"]), batch["actions"],
                              self.discrete)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss/rcsl": loss.detach()}

    # -- evaluation: condition on the target, then on what is left of it (EnvPolicy forwards these) --

    def policy_reset(self, num_episodes: int) -> None:
        self.remaining = torch.full((num_episodes,), self.target_return, dtype=torch.float64)
        self.live = torch.arange(num_episodes)

    def policy_observe(self, indices: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor) -> None:
        self.remaining[indices] -= rewards.double()
        self.live = indices[~dones]
        if len(self.live) == 0:  # the evaluation is over
            self.remaining = self.live = None

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        if self.remaining is None:  # outside an evaluation: every row conditioned on the full target
            target = torch.full((obs.shape[0],), self.target_return)
        elif len(self.live) != obs.shape[0]:
            raise ValueError(f"policy_action got {obs.shape[0]} observations for {len(self.live)} live episodes")
        else:
            target = self.remaining[self.live].float()
        out = self.policy_output(obs, target)
        return out.argmax(-1) if self.discrete else out

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "opt": self.opt.state_dict(), "rtg_scale": self.rtg_scale,
                "target_return": self.target_return}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.opt.load_state_dict(state["opt"])
        self.rtg_scale, self.target_return = state["rtg_scale"], state["target_return"]
