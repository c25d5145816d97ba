"""Offline RL-VLM-F — rewards for an unlabelled offline dataset from a model's preferences
(Venkataraman, Wang, Wang, Ravie, Erickson, Held; 2024, arXiv 2411.05273; official code
github.com/vsreyas/RL-VLM-F, `reward_model.py`, `relabel.py`, `config/train_PEBBLE.yaml`).

The pipeline (the paper's Fig. 2), then any offline algorithm unchanged:
1. draw random pairs of single observations (segment length 1) from the dataset;
2. a labeller answers which shows more progress toward a text goal (`PreferenceOracle`; a VLM in the
   paper, `ScriptedTeacher` on a progress function of states here), "no preference" pairs dropped;
3. fit an ensemble of reward models r_psi(o) by Bradley-Terry:
   P_psi[o_1 > o_2] = exp r_psi(o_1) / (exp r_psi(o_1) + exp r_psi(o_2)),
   L(psi) = -E[y log P_psi[o_1 > o_2] + (1 - y) log P_psi[o_2 > o_1]];
4. relabel every transition r_t = r_hat(o_{t+1}) (the code scores the *next* image), the ensemble
   mean of members standardized over the dataset (BT rewards are shift- and, through the tanh,
   roughly scale-free, so each member is put on one scale before the mean; the code averages raw
   members), then standardized again;
5. run `base` (IQL in the paper) on the relabelled data.
Reward model as the code's `gen_net`: an MLP on the state with a tanh output, ensemble of 3, Adam
3e-4, batch 128, each member its own shuffle of the pairs. Ours: ReLU hidden layers (the code uses
LeakyReLU, which the core's activations lack) 3 x 64 wide (the code: 3 x 256), states standardized
with the dataset's statistics, the queried observations are the o_{t+1} used for relabelling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from policylab.core.config import Config, param
from policylab.core.errors import ConfigError
from policylab.core.nn import EnsembleMLP, adam
from policylab.core.registry import ALGORITHMS
from policylab.core.stats import spearman
from policylab.data import OfflineData
from policylab.data.preferences import (
    LabelledPairs,
    PreferenceOracle,
    Progress,
    ScriptedTeacher,
    bradley_terry_loss,
    label_pairs,
    sample_pairs,
)


def pendulum_progress(obs: torch.Tensor) -> torch.Tensor:
    """-(theta^2 + 0.1 theta_dot^2): the state part of Pendulum-v1's cost, obs = [cos, sin, theta_dot]."""
    theta = torch.atan2(obs[..., 1], obs[..., 0])
    return -(theta.square() + 0.1 * obs[..., 2].square())


def maze_progress(obs: torch.Tensor) -> torch.Tensor:
    """Minus the straight-line distance to the goal, obs = [x, y, vx, vy, goal_x, goal_y]."""
    return -(obs[..., :2] - obs[..., 4:6]).norm(dim=-1)


TASKS: dict[str, tuple[str, Progress]] = {
    "Pendulum-v1": ("swing the pendulum upright and hold it still", pendulum_progress),
    "Maze2D-UMaze-v0": ("move the ball to the goal", maze_progress),
    "Maze2D-Medium-v0": ("move the ball to the goal", maze_progress),
}
"""Env id -> (text goal, progress of a state) for the scripted teacher."""


@dataclass(frozen=True)
class RLVLMFConfig(Config):
    num_pairs: int = param(2000, gt=0)
    """Pairs of single observations sent to the labeller."""
    goal: str = ""
    """The text goal given to the labeller; empty: the env's entry in `TASKS`."""
    teacher_beta: float = param(0.0, ge=0)
    """Scripted teacher's rationality: 0 answers by the sign of the progress gap, > 0 Bradley-Terry draws."""
    teacher_epsilon: float = param(0.0, ge=0, le=1)
    """Scripted teacher's uniform mistake (flip) probability."""
    teacher_proximity: float = param(0.0, ge=0, le=1)
    """Scripted teacher's flip probability at a zero progress gap, decaying as exp(-|gap| / scale)."""
    teacher_proximity_scale: float = param(0.0, ge=0)
    """The scale of the proximity flips; 0: the median progress gap of the queried pairs."""
    teacher_equal: float = param(0.0, ge=0)
    """Progress gaps below it are answered 'no preference' and dropped."""
    ensemble: int = param(3, gt=0)
    reward_hidden: tuple[int, ...] = (64, 64, 64)
    reward_lr: float = param(3e-4, gt=0)
    reward_batch_size: int = param(128, gt=0)
    reward_steps: int = param(2000, gt=0)
    relabel_with: str = param("next", choices=("next", "current"))
    """r_t = r_hat(o_{t+1}) ("next", the code's) or r_hat(o_t) ("current")."""
    base: str = "iql"
    """The offline algorithm run on the relabelled data."""
    base_hidden: tuple[int, ...] = (256, 256)

    def check(self) -> None:
        if self.base not in ALGORITHMS or ALGORITHMS.get(self.base).pillar != "offline" or self.base == "rl_vlm_f":
            known = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).pillar == "offline" and n != "rl_vlm_f"]
            raise ConfigError(f"RLVLMFConfig.base = {self.base!r} is not allowed: offline algorithms: "
                              f"{', '.join(known)}")


class RewardEnsemble(torch.nn.Module):
    """r_psi(o) of `n` members in one batched network; tanh output as the code's `gen_net`."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], n: int, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net = EnsembleMLP(n, obs_dim, 1, hidden)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """[N, B] member rewards for obs [B, obs_dim] (or [N, B, obs_dim], one batch per member)."""
        return torch.tanh(self.net((obs - self.mean) / self.std)).squeeze(-1)


def item_scores(model: RewardEnsemble, items: torch.Tensor, index: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """[N, B] member scores of items[index] (index [N, B]): r_psi of single observations (items [M, d]), or
    of segments (items [M, K, d]) the sum over the K steps of r_psi, steps where mask [M, K] is 0 left out."""
    x = items[index]
    if items.dim() == 2:
        return model(x)
    n, b, k, d = x.shape
    r = model(x.reshape(n, b * k, d)).reshape(n, b, k)
    return (r if mask is None else r * mask[index]).sum(-1)


def fit_reward(items: torch.Tensor, pairs: LabelledPairs, cfg: RLVLMFConfig, seed: int,
               mask: torch.Tensor | None = None) -> tuple[RewardEnsemble, dict[str, float]]:
    """Bradley-Terry fit of every member on minibatches of the labelled pairs (each its own draw). Items are
    single observations [M, d] or segments [M, K, d] scored by their summed per-step reward (PEBBLE's and
    Preference Transformer's MLP form), `mask` [M, K] marking the steps that exist."""
    if len(pairs) == 0:
        raise ConfigError("no labelled pairs to fit a reward model on")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    steps = items.reshape(-1, items.shape[-1]) if mask is None else items[mask > 0]
    model = RewardEnsemble(items.shape[-1], cfg.reward_hidden, cfg.ensemble, steps.mean(0),
                           steps.std(0).clamp(min=1e-3))
    opt = adam(model.parameters(), cfg.reward_lr)
    batch = min(cfg.reward_batch_size, len(pairs))
    for _ in range(cfg.reward_steps):
        rows = torch.randint(len(pairs), (cfg.ensemble, batch), generator=generator)
        r1, r2 = item_scores(model, items, pairs.first[rows], mask), item_scores(model, items, pairs.second[rows], mask)
        loss = bradley_terry_loss(r1, r2, pairs.labels[rows]) * cfg.ensemble  # a sum over members
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        every = (cfg.ensemble, len(pairs))
        r1 = item_scores(model, items, pairs.first.expand(every), mask)
        r2 = item_scores(model, items, pairs.second.expand(every), mask)
        accuracy = ((r1 > r2).float() == pairs.labels).float().mean()
    return model, {"reward_loss": float(loss.detach()) / cfg.ensemble, "reward_train_accuracy": float(accuracy)}


def standardize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """(x - mean) / std along `dim`; a constant row is mapped to zeros."""
    std = x.std(dim, keepdim=True)
    return (x - x.mean(dim, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))


@torch.no_grad()
def predicted_rewards(model: RewardEnsemble, obs: torch.Tensor) -> torch.Tensor:
    """The standardized mean of the members' standardized rewards over `obs` [N, obs_dim] -> [N]."""
    return standardize(standardize(model(obs)).mean(0))


def relabel(data: OfflineData, model: RewardEnsemble, relabel_with: str = "next") -> OfflineData:
    """The dataset with r_t = r_hat(o_{t+1}) ("next") or r_hat(o_t) ("current"), standardized."""
    if relabel_with not in ("next", "current"):
        raise ConfigError(f"relabel_with = {relabel_with!r} is not allowed: 'next' or 'current'")
    obs = data.next_observations if relabel_with == "next" else data.observations
    return replace(data, rewards=predicted_rewards(model, obs).to(data.rewards.dtype).contiguous())


def default_teacher(data: OfflineData, cfg: RLVLMFConfig, seed: int, gaps: torch.Tensor) -> ScriptedTeacher:
    """The scripted teacher of the dataset's env (`TASKS`), knobs from `cfg`."""
    env_id = data.metadata.get("env_id", "?")
    if env_id not in TASKS:
        raise ConfigError(f"env_id = {env_id!r} has no scripted teacher: known envs {', '.join(TASKS)}; pass "
                          "oracle= (a PreferenceOracle) and RLVLMFConfig.goal for another env")
    goal, progress = TASKS[env_id]
    scale = cfg.teacher_proximity_scale or float(gaps.abs().median().clamp(min=1e-6))
    return ScriptedTeacher(progress, cfg.goal or goal, beta=cfg.teacher_beta or None, epsilon=cfg.teacher_epsilon,
                           proximity=cfg.teacher_proximity, proximity_scale=scale, equal_threshold=cfg.teacher_equal,
                           seed=seed)


def preference_relabel(data: OfflineData, cfg: RLVLMFConfig, seed: int, oracle: PreferenceOracle | None = None
                       ) -> tuple[OfflineData, dict[str, Any]]:
    """Steps 1-4: query pairs, label, fit the reward ensemble, relabel. Diagnostics include the
    Spearman correlation of r_hat with the env's progress where `TASKS` knows it (only a benchmark can)."""
    items = data.next_observations if cfg.relabel_with == "next" else data.observations
    first, second = sample_pairs(len(items), cfg.num_pairs, seed)
    task = TASKS.get(data.metadata.get("env_id", ""))
    if oracle is None:
        gaps = task[1](items[first]) - task[1](items[second]) if task else torch.zeros(0)
        oracle = default_teacher(data, cfg, seed, gaps)
    goal = cfg.goal or (task[0] if task else "")
    if not goal:
        raise ConfigError("RLVLMFConfig.goal = '' is not allowed with this dataset's env: give the labeller's text "
                          "goal")
    pairs = label_pairs(oracle, items, first, second, goal)
    model, info = fit_reward(items, pairs, cfg, seed)
    relabelled = relabel(data, model, cfg.relabel_with)
    info.update(pairs_asked=pairs.asked, pairs_answered=len(pairs))
    if task is not None:
        truth = task[1](items)
        info["reward_spearman"] = spearman(relabelled.rewards.tolist(), truth.tolist())
        correct = (task[1](items[pairs.first]) > task[1](items[pairs.second])).float()
        info["label_error_rate"] = float((correct != pairs.labels).float().mean())
    return relabelled, info


def train_rl_vlm_f(cfg: RLVLMFConfig, *, env_id: Any, seed: int = 0, steps: int = 10_000,
                   oracle: PreferenceOracle | None = None, **train_kwargs: Any) -> dict[str, Any]:
    """Relabel `env_id`'s dataset from preferences, then train `cfg.base` on it (its defaults, `base_hidden`
    wide). `oracle`: a labeller (a VLM client); None uses the env's scripted teacher."""
    from policylab.offline.train import open_data

    data, info = preference_relabel(open_data(env_id), cfg, seed, oracle)
    spec = ALGORITHMS.get(cfg.base)
    summary = spec.train(spec.config(hidden=cfg.base_hidden), env_id=data, seed=seed, steps=steps, **train_kwargs)
    summary["rl_vlm_f"] = info
    return summary
