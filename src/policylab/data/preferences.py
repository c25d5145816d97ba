"""Preference labels over pairs of observations or segments: the labeller interface, a scripted noisy
teacher that stands in for a vision-language model, pair sampling and the Bradley-Terry loss.

A labeller answers `label(first, second, goal) -> labels` for a batch of pairs: `first` and `second`
are [B, obs_dim] single observations (RL-VLM-F's single frames) or [B, K, obs_dim] segments
(PEBBLE / OPPO); the labels [B] are 1 (first preferred), 0 (second preferred) or -1 (no
preference; the pair is dropped). A real VLM client implements the same method (render or describe
the two observations, ask which shows more progress toward `goal`).

`ScriptedTeacher` follows B-Pref's simulated teacher (Lee et al. 2021; `get_label` in
github.com/vsreyas/RL-VLM-F `reward_model.py`, which flips B-Pref's label sign: there 1 means the
*second* segment wins): with a segment's score S = sum_t gamma^(K-1-t) progress(o_t) and
Delta = S_first - S_second,
- |Delta| < equal_threshold, or Delta = 0, gives -1 ("equally preferable");
- otherwise the label is 1[Delta > 0] (beta = None: perfectly rational) or a Bradley-Terry draw
  with P(first) = sigmoid(beta Delta);
- then it is flipped with probability min(1, epsilon + rho exp(-|Delta| / scale)).
B-Pref's mistake rate is epsilon. The proximity term rho exp(-|Delta| / scale) is ours: the notes
(offline_rl.md 5.9) cite a "proximity flip" mode of the RL-VLM-F scripts that the stored code does
not contain, so its form here is our choice: pairs with close progress are flipped more, up to
epsilon + rho at Delta = 0, as a VLM confuses near-identical frames.

`bradley_terry_loss` is the generic form with (soft) labels y: -[y log sigmoid(Delta_hat) + (1 - y)
log sigmoid(-Delta_hat)]. `policylab.lm.preference.reward_model.bradley_terry_loss` is the y = 1 case
with (chosen, rejected) arguments; it lives in the `lm` pillar, which `data` may not import, so the
general function lives here (the two agree, see tests/data/test_preferences.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from policylab.core.errors import ConfigError

Progress = Callable[[torch.Tensor], torch.Tensor]
"""progress(obs [..., obs_dim]) -> [...]: how far a state is toward the goal (higher is better)."""


class PreferenceOracle(Protocol):
    def label(self, first: torch.Tensor, second: torch.Tensor, goal: str) -> torch.Tensor:
        """[B] int64 labels for pairs of observations [B, obs_dim] or segments [B, K, obs_dim]:
        1 first preferred, 0 second preferred, -1 no preference."""


def _check_pairs(first: torch.Tensor, second: torch.Tensor) -> None:
    if first.shape != second.shape or first.dim() not in (2, 3):
        raise ConfigError(f"a preference query needs first and second of one shape, [B, obs_dim] or [B, K, obs_dim]; "
                          f"got {tuple(first.shape)} and {tuple(second.shape)}")


@dataclass
class ScriptedTeacher:
    """The VLM stand-in: B-Pref's noisy teacher on a progress function of states, for one text goal."""

    progress: Progress
    goal: str
    """The task description it answers for; a query with another goal is refused."""
    beta: float | None = None
    """Rationality: None answers by the sign of the progress gap, beta > 0 draws sigmoid(beta Delta)."""
    epsilon: float = 0.0
    """B-Pref's mistake probability: every answered label is flipped with it."""
    proximity: float = 0.0
    """rho: the extra flip probability of a pair with no progress gap, decaying as exp(-|Delta| / scale)."""
    proximity_scale: float = 1.0
    """The progress gap over which the proximity flips fall by a factor e."""
    equal_threshold: float = 0.0
    """|Delta| below it gives -1 (no preference)."""
    gamma: float = 1.0
    """B-Pref's myopia for segments: step t of K is weighted gamma^(K-1-t) (1: a plain sum)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, ok, allowed in (
                ("beta", self.beta, self.beta is None or self.beta > 0, "None or > 0"),
                ("epsilon", self.epsilon, 0 <= self.epsilon <= 1, "in [0, 1]"),
                ("proximity", self.proximity, 0 <= self.proximity <= 1, "in [0, 1]"),
                ("proximity_scale", self.proximity_scale, self.proximity_scale > 0, "> 0"),
                ("equal_threshold", self.equal_threshold, self.equal_threshold >= 0, ">= 0"),
                ("gamma", self.gamma, 0 < self.gamma <= 1, "in (0, 1]")):
            if not ok:
                raise ConfigError(f"ScriptedTeacher.{name} = {value!r} is not allowed: must be {allowed}")
        self.generator = torch.Generator().manual_seed(self.seed)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """[B]: progress of single observations, or the gamma-weighted progress sum of segments."""
        value = self.progress(x).to(torch.float64)
        if x.dim() == 2:
            return value
        K = x.shape[1]
        weights = self.gamma ** torch.arange(K - 1, -1, -1, dtype=torch.float64)
        return value @ weights

    def flip_probability(self, gap: torch.Tensor) -> torch.Tensor:
        return (self.epsilon + self.proximity * torch.exp(-gap.abs() / self.proximity_scale)).clamp(max=1.0)

    def probabilities(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P(label = 1 | answered) [B] and the mask of pairs answered -1."""
        _check_pairs(first, second)
        gap = self.score(first) - self.score(second)
        rational = (gap > 0).double() if self.beta is None else torch.sigmoid(self.beta * gap)
        flip = self.flip_probability(gap)
        return rational * (1 - flip) + (1 - rational) * flip, (gap.abs() < self.equal_threshold) | (gap == 0)

    def label(self, first: torch.Tensor, second: torch.Tensor, goal: str) -> torch.Tensor:
        if goal != self.goal:
            raise ConfigError(f"goal = {goal!r} is not allowed: this scripted teacher scores progress toward "
                              f"{self.goal!r} only")
        _check_pairs(first, second)
        gap = self.score(first) - self.score(second)
        # Two uniforms per pair, always drawn, so a seed gives the same stream whatever the knobs.
        u_choice = torch.rand(gap.shape, generator=self.generator, dtype=torch.float64)
        u_flip = torch.rand(gap.shape, generator=self.generator, dtype=torch.float64)
        p_first = (gap > 0).double() if self.beta is None else torch.sigmoid(self.beta * gap)
        labels = (u_choice < p_first).long()
        flipped = u_flip < self.flip_probability(gap)
        labels = torch.where(flipped, 1 - labels, labels)
        return torch.where((gap.abs() < self.equal_threshold) | (gap == 0), -1, labels)


@dataclass(frozen=True)
class LabelledPairs:
    """Answered pairs: indices into the labelled items and labels y (1: first preferred)."""

    first: torch.Tensor
    second: torch.Tensor
    labels: torch.Tensor
    """[P] float: 1.0 first preferred, 0.0 second preferred."""
    asked: int
    """How many pairs were asked, ties included."""

    def __len__(self) -> int:
        return self.labels.shape[0]


def sample_pairs(num_items: int, num_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_pairs` pairs (i, j) of distinct items drawn uniformly from range(num_items)."""
    if num_items < 2:
        raise ConfigError(f"num_items = {num_items} is not allowed: pairs need at least 2 items")
    if num_pairs < 0:
        raise ConfigError(f"num_pairs = {num_pairs} is not allowed: must be >= 0")
    generator = torch.Generator().manual_seed(seed)
    i = torch.randint(num_items, (num_pairs,), generator=generator)
    j = (i + torch.randint(1, num_items, (num_pairs,), generator=generator)) % num_items  # j != i, uniform
    return i, j


def label_pairs(oracle: PreferenceOracle, items: torch.Tensor, first: torch.Tensor, second: torch.Tensor, goal: str,
                batch_size: int = 1024) -> LabelledPairs:
    """Ask `oracle` about items[first] vs items[second] in batches; keep the answered pairs."""
    if first.shape != second.shape or first.dim() != 1:
        raise ConfigError(f"first and second must be index vectors of one length, got {tuple(first.shape)} and "
                          f"{tuple(second.shape)}")
    if len(first) == 0:
        raise ConfigError("no pairs to label: num_pairs must be > 0")
    answers = torch.cat([torch.as_tensor(oracle.label(items[first[k:k + batch_size]], items[second[k:k + batch_size]],
                                                      goal)).long().reshape(-1)
                         for k in range(0, len(first), batch_size)])
    if answers.shape != first.shape or not torch.isin(answers, torch.tensor([-1, 0, 1])).all():
        raise ConfigError(f"the oracle must answer one label in {{-1, 0, 1}} per pair; got shape "
                          f"{tuple(answers.shape)} for {len(first)} pairs")
    keep = answers >= 0
    if not keep.any():
        raise ConfigError(f"the oracle answered 'no preference' (-1) to all {len(first)} pairs: nothing to learn "
                          "from; lower its equal threshold or ask about pairs further apart")
    return LabelledPairs(first[keep], second[keep], answers[keep].float(), len(first))


def bradley_terry_loss(score_first: torch.Tensor, score_second: torch.Tensor, labels: torch.Tensor,
                       reduction: str = "mean") -> torch.Tensor:
    """-[y log sigmoid(s1 - s2) + (1 - y) log sigmoid(s2 - s1)] per pair; y in [0, 1] (1: first preferred)."""
    margin = score_first - score_second
    loss = labels * F.softplus(-margin) + (1 - labels) * F.softplus(margin)
    if reduction == "none":
        return loss
    if reduction != "mean":
        raise ConfigError(f"reduction = {reduction!r} is not allowed: 'mean' or 'none'")
    return loss.mean()
