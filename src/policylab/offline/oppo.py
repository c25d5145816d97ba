"""OPPO — Offline Preference-guided Policy Optimization (Kang, Shi, Liu, He, Wang; "Beyond Reward", ICML 2023,
arXiv 2305.16217; official code github.com/bkkgbkjb/OPPO, `oppo/scripted/gym/`: `training/pdt_trainer.py`,
`experiment.py`, `args.py`).

No reward model and no TD learning: a segment encoder, a policy conditioned on the encoding, and one free
context z* that the preferences pull toward the preferred segments' encodings; the policy then acts with z*.

    z = E_w(tau)           tau = (s_t, a_t)_{t < K}, a K-step window of one episode
    L_HIM  = E_tau[ mean_t ||pi_theta(s_t, E_w(tau)) - a_t||^2 ]                  (HIM: hindsight information matching)
    L_pref = E_(tau+, tau-)[ max(0, ||z* - E_w(tau+)|| - ||z* - E_w(tau-)|| + m) ]  (preference: triplet, anchor z*)
    L_norm = E_tau[ (||E_w(tau)|| - 1)^2 ]                                         (keeps encodings near the sphere)
    step 1: (w, theta) <- AdamW on L_HIM + alpha L_pref(z* held fixed) + beta L_norm, each net's gradient clipped
    step 2: z*         <- AdamW on L_pref, the pair encodings recomputed by the updated encoder and held fixed
    act:    a = pi_theta(s, z*)

Sources. Verified in the official code (the scripted-teacher version): the three losses and their forms (torch's
TripletMarginLoss, p = 2, margin 1, z* the anchor; torch's distance is ||x - y + 1e-6||, its pairwise_distance
eps added to every coordinate of the difference, while `triplet_preference_loss` takes the plain ||x - y||: the
two differ by under 1e-6 sqrt(d_z) per distance; the norm loss an MSE of ||z|| to 1; the action MSE over the
steps that exist), L_HIM and L_norm summed over the two segment batches of a step, alpha = beta = 0.1, the order of
the two steps and what each holds fixed (step 2 re-encodes the pair segments after step 1), the gradient clip 0.25
on encoder and policy separately, z* ~ N(0, 2^2 I) with AdamW lr 1e-3 and weight decay 1e-4, encoder and policy
AdamW 1e-4 with weight decay 1e-4, K = 20, d_z = 8, batch 64 per side; and the scripted teacher: a segment is scored
by the sum of the true rewards over the `foresee` = 200 steps from its start (cut at the episode's end), the larger
wins, exact ties are dropped and the share of used pairs is logged. Not verified: the paper's method section could
not be read here, so the comments name its objectives (HIM, preference, norm) but give no equation numbers.

Ours (CPU, and a preference budget):
- pi(a | s, z) is a tanh MLP on [s, z] (the code: a causal GPT decoder over (z, s, a) tokens, Decision
  Transformer's, with timestep embeddings and dropout 0.1); E_w is an MLP on the flattened window, missing steps
  zeroed with the mask as an input (the code: a 3-layer BERT over (s, a) tokens, summed over tokens, then linear);
- a fixed budget of `num_pairs` pairs of windows, drawn once and labelled once by the library's `ScriptedTeacher`
  on the windows' foresee returns (epsilon / beta noise knobs); each update draws `batch_size` of them for L_pref.
  The scripted code labels two fresh batches every step (an unlimited budget) and runs all three losses on them;
  here L_HIM and L_norm run on two fresh uniform batches of dataset windows (unlabelled data, as the paper's HIM is
  over the whole dataset and its human-label code reconstructs unlabelled windows), L_pref on the labelled pairs;
- windows are `TrajectorySegments`': start uniform over transitions, a window past its episode's end repeats the
  last step with mask 0 (the code left-pads short windows with zeros);
- no learning-rate warm-up (the code warms the policy up over 10k steps; a CPU run is about that long).

The baseline the paper compares against, a Bradley-Terry reward learned from the same pairs and then IQL (PT+IQL's
pipeline, with PEBBLE's MLP reward r(s, a) summed over a segment instead of a transformer), is
`preference_reward_relabel`: `rl_vlm_f.fit_reward` on the same windows, relabel, then any offline algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from policylab.core.config import param
from policylab.core.errors import ConfigError
from policylab.core.nn import adam, mlp
from policylab.core.stats import spearman
from policylab.data import OfflineData, TrajectorySegments
from policylab.data.preferences import LabelledPairs, ScriptedTeacher, label_pairs, sample_pairs
from policylab.offline.rl_vlm_f import RLVLMFConfig, fit_reward, predicted_rewards
from policylab.offline.train import OfflineConfig, Prepared, require_actions, train_offline

TEACHER_GOAL = "more reward over the steps that follow the segment's start"


@dataclass(frozen=True)
class OPPOConfig(OfflineConfig):
    batch_size: int = param(64, gt=0)
    """Labelled pairs per update, and windows in each of the two L_HIM batches (the code: 64)."""
    hidden: tuple[int, ...] = (128, 128)
    """Widths of the policy MLP pi(a | s, z) (the code's transformers are 128 wide)."""
    lr: float = param(1e-4, gt=0)
    """AdamW step size of the policy (the code: 1e-4 after a 10k-step linear warm-up)."""
    segment_length: int = param(20, gt=0)
    """K: steps per window (the code: 20)."""
    context_dim: int = param(8, gt=0)
    """d_z: the size of a segment's encoding and of z* (the code: 8)."""
    encoder_hidden: tuple[int, ...] = (128, 128)
    """Widths of the encoder MLP on the flattened window."""
    encoder_lr: float = param(1e-4, gt=0)
    """AdamW step size of the encoder (the code: 1e-4)."""
    weight_decay: float = param(1e-4, ge=0)
    """AdamW's decoupled weight decay, for encoder, policy and z* (the code: 1e-4)."""
    margin: float = param(1.0, ge=0)
    """m of the triplet preference loss (the code: 1)."""
    pref_weight: float = param(0.1, ge=0)
    """alpha: the weight of L_pref in the encoder-and-policy step (the code: 0.1)."""
    norm_weight: float = param(0.1, ge=0)
    """beta: the weight of L_norm in the encoder-and-policy step (the code: 0.1)."""
    grad_clip: float = param(0.25, gt=0)
    """Largest gradient norm of the encoder and of the policy, each (the code: 0.25)."""
    zstar_init_std: float = param(2.0, ge=0)
    """z* starts as N(0, std^2 I) (the code: 2)."""
    zstar_lr: float = param(1e-3, gt=0)
    """AdamW step size of z* (the code: 1e-3)."""
    num_pairs: int = param(2000, gt=0)
    """The preference budget: pairs of windows the teacher is asked about, once, before training."""
    foresee: int = param(200, gt=0)
    """The teacher scores a window by the true rewards summed over this many steps from its start (the code: 200)."""
    teacher_epsilon: float = param(0.0, ge=0, le=1)
    """The scripted teacher's mistake probability: each answered label is flipped with it."""
    teacher_beta: float = param(0.0, ge=0)
    """The scripted teacher's rationality: 0 answers by the sign of the gap, > 0 draws sigmoid(beta gap)."""

    def check(self) -> None:
        super().check()
        if self.sampler != "uniform":
            raise ConfigError(f"OPPOConfig.sampler = {self.sampler!r} is not allowed: OPPO draws its own windows and "
                              "labelled pairs; only 'uniform'")


# -- the scripted teacher's labels over dataset windows (the preference budget) ------------------------------------

def foresee_returns(data: OfflineData, foresee: int) -> torch.Tensor:
    """[N]: for a window starting at transition t, r_t + ... + r_{t+foresee-1}, cut at the end of t's episode."""
    if foresee <= 0:
        raise ConfigError(f"foresee = {foresee} is not allowed: must be >= 1 step")
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), data.rewards.double().cumsum(0)])
    start = torch.arange(len(data))
    end = torch.minimum(start + foresee, data.episode_starts[1:][data.episode_ids])
    return (cumulative[end] - cumulative[start]).float()


def first_feature(x: torch.Tensor) -> torch.Tensor:
    return x[..., 0]


def segment_preferences(data: OfflineData, cfg: OPPOConfig, seed: int) -> tuple[LabelledPairs, dict[str, float]]:
    """`cfg.num_pairs` pairs of window starts, uniform over transitions, answered by `ScriptedTeacher` on each
    window's foresee return; ties dropped. The labels index transitions (the windows' starts)."""
    first, second = sample_pairs(len(data), cfg.num_pairs, seed)
    score = foresee_returns(data, cfg.foresee)
    teacher = ScriptedTeacher(first_feature, TEACHER_GOAL, beta=cfg.teacher_beta or None,
                              epsilon=cfg.teacher_epsilon, seed=seed)
    pairs = label_pairs(teacher, score.unsqueeze(-1), first, second, TEACHER_GOAL)
    truth = (score[pairs.first] > score[pairs.second]).float()
    return pairs, {"pairs_used_fraction": len(pairs) / pairs.asked,
                   "label_error_rate": float((truth != pairs.labels).float().mean())}


class WindowsAt(TrajectorySegments):
    """`TrajectorySegments`' K-step windows at the given starts (the labelled pairs'), not at random ones."""

    def __init__(self, data: OfflineData, starts: torch.Tensor, length: int):
        super().__init__(data, len(starts), length)
        self.starts = starts

    def indices(self) -> torch.Tensor:
        return self.starts


class PreferenceWindows(TrajectorySegments):
    """One draw: 2 x batch_size uniform windows (the two L_HIM batches) and batch_size labelled pairs, their
    windows under `first_*` / `second_*` and `labels` (1: first preferred)."""

    def __init__(self, data: OfflineData, batch_size: int, length: int, seed: int, pairs: LabelledPairs,
                 info: dict[str, float]):
        super().__init__(data, 2 * batch_size, length, seed)
        self.first = WindowsAt(data, pairs.first, length).sample()
        self.second = WindowsAt(data, pairs.second, length).sample()
        self.labels, self.pair_batch, self.info = pairs.labels, batch_size, info

    def sample(self) -> dict[str, torch.Tensor]:
        batch = super().sample()
        rows = torch.randint(len(self.labels), (self.pair_batch,), generator=self.generator)
        for side, windows in (("first", self.first), ("second", self.second)):
            batch.update({f"{side}_{key}": windows[key][rows] for key in ("observations", "actions", "mask")})
        batch["labels"] = self.labels[rows]
        return batch

    def metrics(self) -> dict[str, float]:
        return dict(self.info)


# -- networks and losses -------------------------------------------------------------------------------------------

class SegmentEncoder(nn.Module):
    """E_w: a K-step window of (s, a), missing steps zeroed and flagged, flattened through an MLP to z."""

    def __init__(self, obs_dim: int, act_dim: int, length: int, hidden: tuple[int, ...], context_dim: int):
        super().__init__()
        self.net = mlp(length * (obs_dim + act_dim + 1), context_dim, hidden)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1)
        return self.net(torch.cat([obs * m, actions * m, m], -1).flatten(1))


class ContextPolicy(nn.Module):
    """pi_theta(a | s, z): a deterministic tanh MLP on [s, z] (the code's action head is tanh too)."""

    def __init__(self, obs_dim: int, act_dim: int, context_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = nn.Sequential(mlp(obs_dim + context_dim, act_dim, hidden), nn.Tanh())

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """obs [..., obs_dim]; z broadcastable to [..., d_z] (z* [d_z], or [B, 1, d_z] for windows [B, K, .])."""
        return self.net(torch.cat([obs, z.expand(*obs.shape[:-1], z.shape[-1])], -1))


def him_loss(predicted: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_HIM of one batch: the squared action error averaged over the steps that exist and the action dimensions."""
    error = (predicted - actions).pow(2).mean(-1)
    return (error * mask).sum() / mask.sum().clamp(min=1)


def triplet_preference_loss(z_star: torch.Tensor, first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor,
                            margin: float) -> torch.Tensor:
    """L_pref: the mean over answered pairs of max(0, ||z* - z+|| - ||z* - z-|| + m); labels 1 (first preferred),
    0 (second) or -1 (no preference, left out). No answered pair: 0, with a zero gradient."""
    answered = labels >= 0
    if not answered.any():
        return (z_star * 0.0).sum()
    first_wins = (labels[answered] > 0.5).unsqueeze(-1)
    first, second = first[answered], second[answered]
    positive, negative = torch.where(first_wins, first, second), torch.where(first_wins, second, first)
    d_positive = torch.linalg.vector_norm(z_star - positive, dim=-1)
    d_negative = torch.linalg.vector_norm(z_star - negative, dim=-1)
    return F.relu(d_positive - d_negative + margin).mean()


def norm_loss(z: torch.Tensor) -> torch.Tensor:
    """L_norm of one batch: the mean of (||z|| - 1)^2."""
    return (torch.linalg.vector_norm(z, dim=-1) - 1).pow(2).mean()


class OPPO:
    name = "oppo"

    def __init__(self, prepared: Prepared, cfg: OPPOConfig):
        data = prepared.data
        require_actions(data, self.name, discrete=False)
        self.cfg = cfg
        obs_dim, act_dim = data.observations.shape[1], data.actions.shape[1]
        self.encoder = SegmentEncoder(obs_dim, act_dim, cfg.segment_length, cfg.encoder_hidden, cfg.context_dim)
        self.policy = ContextPolicy(obs_dim, act_dim, cfg.context_dim, cfg.hidden)
        self.z_star = nn.Parameter(torch.randn(cfg.context_dim) * cfg.zstar_init_std)
        adamw = dict(decoupled=True, weight_decay=cfg.weight_decay)  # the code's AdamW everywhere
        self.encoder_opt = adam(self.encoder.parameters(), cfg.encoder_lr, **adamw)
        self.policy_opt = adam(self.policy.parameters(), cfg.lr, **adamw)
        self.zstar_opt = adam([self.z_star], cfg.zstar_lr, **adamw)
        self.preference_info: dict[str, float] = {}

    def make_sampler(self, data: OfflineData, seed: int) -> PreferenceWindows:
        """Ask the teacher about the budget's pairs (seeded: the same pairs as any pipeline given this seed)."""
        pairs, self.preference_info = segment_preferences(data, self.cfg, seed)
        return PreferenceWindows(data, self.cfg.batch_size, self.cfg.segment_length, seed, pairs,
                                 self.preference_info)

    def encode(self, batch: dict[str, torch.Tensor], side: str = "") -> torch.Tensor:
        return self.encoder(batch[f"{side}observations"], batch[f"{side}actions"], batch[f"{side}mask"])

    def context_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Step 1: encoder and policy on L_HIM + alpha L_pref (z* detached) + beta L_norm, summed over the two
        HIM batches as the code; each network's gradient clipped to `grad_clip`."""
        cfg = self.cfg
        z = self.encode(batch)
        him = norm = torch.zeros(())
        for obs, actions, mask, z_half in zip(batch["observations"].chunk(2), batch["actions"].chunk(2),
                                              batch["mask"].chunk(2), z.chunk(2)):
            him = him + him_loss(self.policy(obs, z_half.unsqueeze(1)), actions, mask)  # HIM
            norm = norm + norm_loss(z_half)  # norm
        pref = triplet_preference_loss(self.z_star.detach(), self.encode(batch, "first_"),
                                       self.encode(batch, "second_"), batch["labels"], cfg.margin)  # preference
        loss = him + cfg.pref_weight * pref + cfg.norm_weight * norm
        self.encoder_opt.zero_grad(set_to_none=True)
        self.policy_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.encoder.parameters(), cfg.grad_clip)
        nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
        self.encoder_opt.step()
        self.policy_opt.step()
        return {"loss/him": him.detach(), "loss/pref": pref.detach(), "loss/norm": norm.detach()}

    def zstar_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Step 2: z* on L_pref, the pair encodings recomputed by the updated encoder and held fixed."""
        with torch.no_grad():
            first, second = self.encode(batch, "first_"), self.encode(batch, "second_")
        pref = triplet_preference_loss(self.z_star, first, second, batch["labels"], self.cfg.margin)
        self.zstar_opt.zero_grad(set_to_none=True)
        pref.backward()
        self.zstar_opt.step()
        return pref.detach()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        metrics = self.context_step(batch)
        metrics["loss/pref_zstar"] = self.zstar_step(batch)
        metrics["zstar_norm"] = self.z_star.detach().norm()
        return metrics

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs, self.z_star)

    parts = ("encoder", "policy", "encoder_opt", "policy_opt", "zstar_opt")

    def state_dict(self) -> dict[str, Any]:
        return {"z_star": self.z_star.detach().clone(), **{p: getattr(self, p).state_dict() for p in self.parts}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.z_star.copy_(state["z_star"])
        for p in self.parts:
            getattr(self, p).load_state_dict(state[p])


@torch.no_grad()
def context_diagnostics(algo: OPPO, data: OfflineData, samples: int = 2048, seed: int = 0) -> dict[str, float]:
    """Where z* sits among the encodings of `samples` fixed uniform windows: its mean distance to those whose
    foresee return is in the top decile and in the bottom decile; and how far the policy's action moves when each
    window's first state gets another window's encoding instead of its own (0: pi ignores z)."""
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(data), (samples,), generator=generator)
    windows = WindowsAt(data, starts, algo.cfg.segment_length).sample()
    score = foresee_returns(data, algo.cfg.foresee)[starts]
    z = algo.encode(windows)
    distance = torch.linalg.vector_norm(z - algo.z_star, dim=-1)
    top, bottom = score >= score.quantile(0.9), score <= score.quantile(0.1)
    states = windows["observations"][:, 0]
    shuffled = z[torch.randperm(samples, generator=generator)]
    change = torch.linalg.vector_norm(algo.policy(states, z) - algo.policy(states, shuffled), dim=-1)
    return {"zstar_norm": float(algo.z_star.norm()), "zstar_dist_top": float(distance[top].mean()),
            "zstar_dist_bottom": float(distance[bottom].mean()),
            "encoding_norm": float(torch.linalg.vector_norm(z, dim=-1).mean()),
            "z_shuffle_action_change": float(change.mean())}


def train_oppo(cfg: OPPOConfig, *, env_id: Any, seed: int = 0, steps: int = 10_000, **train_kwargs: Any
               ) -> dict[str, Any]:
    """Label the budget's pairs, train OPPO through the offline trainer, then place z* among the encodings."""
    summary = train_offline(OPPO, cfg, env_id=env_id, seed=seed, steps=steps, **train_kwargs)
    algo = summary["algorithm"]
    summary["oppo"] = {**algo.preference_info, **context_diagnostics(algo, summary["policy"].prepared.data)}
    return summary


# -- the paper's baseline on the same pairs: a Bradley-Terry reward, relabel, then offline RL ---------------------

def preference_reward_relabel(data: OfflineData, cfg: OPPOConfig, seed: int, reward: RLVLMFConfig
                              ) -> tuple[OfflineData, dict[str, float]]:
    """The dataset relabelled r_t = r_hat(s_t, a_t), standardized: an ensemble fitted by Bradley-Terry on the very
    pairs OPPO gets with this seed (`segment_preferences`), a window scored by its summed r_hat. `reward` gives the
    ensemble's size, widths, steps and step size (`rl_vlm_f.fit_reward`)."""
    pairs, info = segment_preferences(data, cfg, seed)
    features = torch.cat([data.observations, data.actions], -1)
    windows = [WindowsAt(data, starts, cfg.segment_length).sample() for starts in (pairs.first, pairs.second)]
    items = torch.cat([torch.cat([w["observations"], w["actions"]], -1) for w in windows])
    mask = torch.cat([w["mask"] for w in windows])
    n = len(pairs)
    local = LabelledPairs(torch.arange(n), n + torch.arange(n), pairs.labels, pairs.asked)
    model, fit = fit_reward(items, local, reward, seed, mask)
    relabelled = replace(data, rewards=predicted_rewards(model, features).to(data.rewards.dtype).contiguous())
    info.update(fit, reward_spearman=spearman(relabelled.rewards.tolist(), data.rewards.tolist()))
    return relabelled, info
