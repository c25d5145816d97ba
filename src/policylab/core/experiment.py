"""An experiment is a claim check: arms x seeds x budget, one metric, the claimed direction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policylab.core.errors import ConfigError
from policylab.core.run import RunDir

BUDGETS = ("quick", "full")
MAX_SEEDS = 1000
"""The most seeds one run may ask for (`--seeds`): far past any claim check, short of filling the disk."""
FIDELITY = ("faithful", "reconstructed", "stand-in", "scaled down")
"""How close a claim check's implementation is to its paper (one or more, comma-separated):
faithful (the paper's equations and defaults, checked against its official code where that exists),
reconstructed (some equations recovered from secondary sources), stand-in (a component replaced, e.g. a
scripted teacher for a VLM), scaled down (architecture or budget reduced in a way that can change the result)."""


@dataclass(frozen=True)
class Comparison:
    """One claimed effect: `method` beats `baseline` in the experiment's direction."""

    method: str
    baseline: str
    label: str = ""
    metric_label: str = ""
    """Axis label of this comparison's panel when it differs from the experiment's."""
    curve_x: str = ""
    direction: str = ""
    """'higher' or 'lower' when this comparison's metric runs the other way from the experiment's."""
    metric: str = ""
    """Compare this key of the arms' `ArmResult.extra` instead of their main value (same runs)."""
    margin: float | None = None
    """A non-inferiority claim ("keeps"): reproduced when the interval stays above -margin on the claimed side
    (see `policylab.core.stats.verdict`). Fixed before the run like every threshold."""
    equivalence: bool = False
    """With a margin: an equivalence claim ("matches", "on par"): reproduced only when the whole interval lies
    within +-margin. The only kind of comparison the ledger's prose may call a match."""


@dataclass(frozen=True)
class ArmResult:
    """What one (arm, seed) run reports: the final metric and an optional learning curve."""

    value: float
    curve: list[tuple[float, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    id: str
    claim: str
    arms: dict[str, dict[str, Any]]
    """Arm name -> the settings that define it (recorded in the report)."""
    comparisons: tuple[Comparison, ...]
    metric: str
    direction: str
    seeds: dict[str, tuple[int, ...]]
    """Fixed seed lists per budget, written before the first run."""
    run_arm: Callable[[str, int, str, RunDir], ArmResult]
    """run_arm(arm, seed, budget, run_dir) -> ArmResult; must be a module-level function."""
    min_effect: float = 0.0
    paired: bool = True
    curve_x: str = "environment steps"
    budgets_note: dict[str, str] = field(default_factory=dict)
    """What each budget runs, in words, for the report."""
    metric_label: str = ""
    """A short axis label for the metric (default: the metric itself)."""
    figures: tuple[Callable[[dict[str, Any], Path], None], ...] = ()
    """Extra report figures: each is called as figure(report, png_path) when the report is written and linked
    from its markdown; they read what the arms reported, e.g. the `extra_curves` (extras that are (x, y) lists)."""
    kind: str = "claim"
    """'claim' (a paper's claim check, run by `make claims`) or 'showcase' (the demo)."""
    paper: str = ""
    """The paper's title and year as the reading list names it (the ledger's paper column)."""
    pillar: str = ""
    """The pillar its method lives in: lm, offline, rl, irl or vision."""
    method: str = ""
    """The reading-list id this check belongs to; empty for the method's own check, set by follow-ups."""
    fidelity: str = ""
    """One or more of `FIDELITY`, comma-separated, e.g. 'reconstructed' or 'faithful' (see `FIDELITY`)."""
    fidelity_note: str = ""
    """One line on what differs from the paper; required unless the fidelity is 'faithful'."""
    caveats: str = ""
    """What a reader needs to read the verdict, for the ledger. Numbers are never typed: `{arm}` (the arm's IQM),
    `{arm/key}` (an extra's IQM) and `{#k}` (comparison k's effect and interval) are filled from the result."""

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ConfigError(f"experiment {self.id}: direction = {self.direction!r}, must be 'higher' or 'lower'")
        for c in self.comparisons:
            if c.direction not in ("", "higher", "lower"):
                raise ConfigError(f"experiment {self.id}: comparison {c.label or c.method!r} has direction = "
                                  f"{c.direction!r}, must be 'higher', 'lower' or empty (the experiment's)")
            if c.equivalence and c.margin is None:
                raise ConfigError(f"experiment {self.id}: comparison {c.label or c.method!r} claims equivalence "
                                  "without a margin")
            for arm in (c.method, c.baseline):
                if arm not in self.arms:
                    raise ConfigError(f"experiment {self.id}: comparison names unknown arm '{arm}'")
        labels = [part.strip() for part in self.fidelity.split(",")] if self.fidelity else []
        for label in labels:
            if label not in FIDELITY:
                raise ConfigError(f"experiment {self.id}: fidelity label {label!r} is not allowed: must be one of "
                                  f"{', '.join(FIDELITY)}")
        if labels and labels != ["faithful"] and not self.fidelity_note:
            raise ConfigError(f"experiment {self.id}: fidelity {self.fidelity!r} needs a fidelity_note saying what "
                              "differs from the paper")
        for budget in BUDGETS:
            if not self.seeds.get(budget):
                raise ConfigError(f"experiment {self.id}: no seeds fixed for budget '{budget}'")

    def select_seeds(self, budget: str, count: int | None = None) -> tuple[int, ...]:
        """The budget's fixed seeds; `count` takes a prefix, extending past the list in order."""
        check_budget(budget)
        fixed = list(self.seeds[budget])
        if count is None:
            return tuple(fixed)
        if not 1 <= count <= MAX_SEEDS:
            raise ConfigError(f"seeds = {count} is not allowed: must be between 1 and {MAX_SEEDS}")
        while len(fixed) < count:
            fixed.append(max(fixed) + 1)
        return tuple(fixed[:count])


def check_budget(budget: str) -> str:
    if budget not in BUDGETS:
        raise ConfigError(f"budget = {budget!r} is not allowed: must be one of {', '.join(BUDGETS)}")
    return budget
