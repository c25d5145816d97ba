"""Statistics for claim checks: IQM, bootstrap intervals, effects, verdicts (Agarwal et al. 2021)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from policylab.core.errors import ConfigError

Stat = Callable[[np.ndarray], np.ndarray]  # reduces the last axis


def iqm(values: Sequence[float] | np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: drop floor(n/4) values at each end, average the rest."""
    x = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("IQM of an empty sample is undefined")
    cut = n // 4
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).mean(axis=axis)


def bootstrap_ci(values: Sequence[float], stat: Stat = iqm, resamples: int = 2000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over the sample."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample is undefined")
    rng = np.random.default_rng(seed)
    draws = stat(x[rng.integers(0, x.size, (resamples, x.size))], axis=-1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class Effect:
    value: float
    low: float
    high: float
    paired: bool


def effect_interval(method: Sequence[float], baseline: Sequence[float], paired: bool,
                    stat: Stat = iqm, resamples: int = 2000, confidence: float = 0.95,
                    seed: int = 0) -> Effect:
    """Effect = stat(method) - stat(baseline), or stat of per-seed differences when paired.

    Unpaired samples are resampled independently per arm (a stratified bootstrap).
    """
    m, b = np.asarray(method, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if m.size == 0 or b.size == 0:
        raise ValueError("an effect needs at least one value per arm")
    if paired:
        if m.shape != b.shape:
            raise ValueError(f"paired effect needs equal seeds per arm, got {m.size} and {b.size}")
        low, high = bootstrap_ci(m - b, stat, resamples, confidence, seed)
        return Effect(float(stat(m - b)), low, high, True)
    rng = np.random.default_rng(seed)
    draws = (stat(m[rng.integers(0, m.size, (resamples, m.size))], axis=-1)
             - stat(b[rng.integers(0, b.size, (resamples, b.size))], axis=-1))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Effect(float(stat(m) - stat(b)), float(low), float(high), False)


REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def verdict(effect: Effect, direction: str, min_effect: float = 0.0, margin: float | None = None,
            equivalence: bool = False) -> str:
    """Reproduced when the whole interval is on the claimed side (beyond `min_effect`).

    With a `margin` the claim is non-inferiority ("kept"): reproduced when the whole interval is above
    -margin on the claimed side, not reproduced when it is wholly below. With `equivalence` too the claim is
    "matches": reproduced when the whole interval lies inside (-margin, +margin) (both one-sided tests pass),
    not reproduced when it lies wholly outside that band, inconclusive otherwise."""
    if direction not in ("higher", "lower"):
        raise ConfigError(f"direction = {direction!r} is not allowed: must be 'higher' or 'lower'")
    sign = 1.0 if direction == "higher" else -1.0
    low, high = sorted((sign * effect.low, sign * effect.high))
    if equivalence and margin is None:
        raise ConfigError("equivalence = True needs a margin: the band within which the arms count as equal")
    if margin is not None:
        if margin < 0:
            raise ConfigError(f"margin = {margin} is not allowed: a non-inferiority margin must be >= 0")
        if equivalence:
            inside = -margin < low and high < margin
            return REPRODUCED if inside else NOT_REPRODUCED if (high < -margin or low > margin) else INCONCLUSIVE
        return REPRODUCED if low > -margin else NOT_REPRODUCED if high < -margin else INCONCLUSIVE
    if low > min_effect:
        return REPRODUCED
    if high < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def normalized_score(score: float | np.ndarray, ref_min: float, ref_max: float) -> np.ndarray:
    """D4RL's normalization: 0 is the reference minimum (random), 100 the maximum (expert)."""
    if ref_max == ref_min:
        raise ValueError("normalized score needs ref_max != ref_min")
    return 100.0 * (np.asarray(score, dtype=np.float64) - ref_min) / (ref_max - ref_min)


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs of runs (the Mann-Whitney U statistic / (n m))."""
    a, b = np.asarray(x, dtype=np.float64)[:, None], np.asarray(y, dtype=np.float64)[None, :]
    if a.size == 0 or b.size == 0:
        raise ValueError("probability of improvement needs runs on both sides")
    return float(((a > b) + 0.5 * (a == b)).mean())


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    unique, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on average ranks); 0 when either side is constant."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman needs two sequences of the same length >= 2, got {len(x)} and {len(y)}")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(np.sqrt((rx @ rx) * (ry @ ry)))
    return float(rx @ ry) / denominator if denominator > 0 else 0.0
