"""Aggregate experiment results into results/<id>.json, .md and .png, with the verdict."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from policylab.core.atomic import atomic_write, atomic_write_json, atomic_write_text
from policylab.core.errors import PolicylabError
from policylab.core.experiment import Experiment
from policylab.core.provenance import INPUT_KINDS, merge_datasets
from policylab.core.registry import EXPERIMENTS
from policylab.core.stats import bootstrap_ci, effect_interval, iqm, verdict

SMOKE_RUN = "smoke run: one seed, no verdict"
"""The verdict of a comparison with fewer than two seeds per arm: one seed has no interval to judge."""

# What a result depends on: a change here (tracked or untracked) makes its commit "-dirty"; results/,
# docs/ and tests/ do not, so committing a result or a doc never dirties the next run.
CODE_PATHS = ("src", "benchmarks", "pyproject.toml")


def git_commit(cwd: str | Path | None = None) -> str:
    """HEAD's hash, with '-dirty' when the code (`CODE_PATHS`, tracked or untracked) differs; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--",
                                *(f":(top){path}" for path in CODE_PATHS)],
                               cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_report(exp: Experiment, budget: str, results: list[dict], wall_s: float,
                 command: str | None = None, backend: str = "local", commit: str | None = None) -> dict[str, Any]:
    """`commit`: the code the runs used, taken when they started (default: HEAD now)."""
    arms: dict[str, Any] = {}
    for arm, settings in exp.arms.items():
        rows = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"])
        values = [r["value"] for r in rows]
        arms[arm] = {
            "config": settings, "seeds": [r["seed"] for r in rows], "values": values,
            "iqm": float(iqm(values)) if values else None,
            "ci95": list(bootstrap_ci(values)) if values else None,
            "curves": {str(r["seed"]): r.get("curve", []) for r in rows},
            "wall_s": [r.get("wall_s") for r in rows],
            "extra": _summarize_extras(rows),
            "extra_curves": _extra_curves(rows),
        }
    comparisons = []
    for c in exp.comparisons:
        m, b = arms[c.method], arms[c.baseline]
        paired = exp.paired and m["seeds"] == b["seeds"]
        if c.metric:
            for arm in (c.method, c.baseline):
                if c.metric not in arms[arm]["extra"]:
                    raise PolicylabError(f"experiment {exp.id}: comparison {c.label or c.method!r} reads "
                                         f"extra metric {c.metric!r}, which arm {arm!r} did not report")
            effect = effect_interval(m["extra"][c.metric]["values"], b["extra"][c.metric]["values"], paired=paired)
        else:
            effect = effect_interval(m["values"], b["values"], paired=paired)
        comparisons.append({
            "method": c.method, "baseline": c.baseline, "label": c.label or f"{c.method} vs {c.baseline}",
            "metric_label": c.metric_label, "curve_x": c.curve_x, "metric": c.metric or "value",
            "effect": effect.value, "ci95": [effect.low, effect.high], "paired": paired,
            "direction": c.direction or exp.direction, "margin": c.margin, "equivalence": c.equivalence,
            "verdict": (verdict(effect, c.direction or exp.direction, exp.min_effect, c.margin, c.equivalence)
                        if min(len(m["values"]), len(b["values"])) >= 2 else SMOKE_RUN),
        })
    return {
        "experiment": exp.id, "claim": exp.claim, "metric": exp.metric,
        "metric_label": exp.metric_label or exp.metric, "direction": exp.direction,
        "min_effect": exp.min_effect, "budget": budget, "budget_note": exp.budgets_note.get(budget, ""),
        "seeds": sorted({r["seed"] for r in results}), "arms": arms, "comparisons": comparisons,
        "verdict": comparisons[0]["verdict"] if len(comparisons) == 1 else
        {c["label"]: c["verdict"] for c in comparisons},
        "fidelity": exp.fidelity, "fidelity_note": exp.fidelity_note,
        "backend": backend, "wall_time_s": wall_s, "git_commit": commit or git_commit(),
        **{kind: merge_datasets([r.get(kind, {}) for r in results]) for kind in INPUT_KINDS},
        "command": command or " ".join(["policylab", *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "curve_x": exp.curve_x,
    }


def _summarize_extras(rows: list[dict]) -> dict[str, Any]:
    """Secondary numeric metrics an arm reports (e.g. pass@k): per-seed values, IQM and 95% CI."""
    keys = sorted({k for r in rows for k, v in r.get("extra", {}).items() if isinstance(v, (int, float))})
    out = {}
    for key in keys:
        values = [float(r["extra"][key]) for r in rows if key in r.get("extra", {})]
        out[key] = {"values": values, "iqm": float(iqm(values)), "ci95": list(bootstrap_ci(values))}
    return out


def _extra_curves(rows: list[dict]) -> dict[str, dict[str, list]]:
    """Extras that are curves (lists of (x, y) pairs), by key and seed: kept for the experiment's own figures."""
    def is_curve(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in v)

    keys = sorted({k for r in rows for k, v in r.get("extra", {}).items() if is_curve(v)})
    return {key: {str(r["seed"]): [[float(x), float(y)] for x, y in r["extra"][key]] for r in rows
                  if key in r.get("extra", {})} for key in keys}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def render_markdown(report: dict[str, Any], plot_name: str | None = None, figures: tuple[str, ...] = ()) -> str:
    lines = [f"# {report['experiment']}", "", f"**Claim.** {report['claim']}", "",
             f"**Metric.** {report['metric']} ({report['direction']} is better). "
             f"Budget `{report['budget']}`{': ' + report['budget_note'] if report['budget_note'] else ''}; "
             f"seeds {report['seeds']}.", "",
             "| arm | IQM | 95% CI | per seed |", "|---|---|---|---|"]
    for name, arm in report["arms"].items():
        ci = arm["ci95"] or [None, None]
        per_seed = ", ".join(_fmt(v) for v in arm["values"])
        lines.append(f"| {name} | {_fmt(arm['iqm'])} | [{_fmt(ci[0])}, {_fmt(ci[1])}] | {per_seed} |")
    lines += ["", "| comparison | claimed | effect | 95% CI | paired | verdict |", "|---|---|---|---|---|---|"]
    for c in report["comparisons"]:
        claimed = c.get("direction", report["direction"])
        if c.get("margin") is not None and c.get("equivalence"):
            claimed = f"within +-{_fmt(c['margin'])}"
        elif c.get("margin") is not None:
            claimed = f"not {'lower' if claimed == 'higher' else 'higher'} by > {_fmt(c['margin'])}"
        lines.append(f"| {c['label']} | {claimed} | {_fmt(c['effect'])} | [{_fmt(c['ci95'][0])}, "
                     f"{_fmt(c['ci95'][1])}] | {'yes' if c['paired'] else 'no'} | **{c['verdict']}** |")
    extras = sorted({k for arm in report["arms"].values() for k in arm.get("extra", {})})
    if extras:
        lines += ["", "Other metrics, IQM [95% CI] over seeds:", "",
                  "| arm | " + " | ".join(extras) + " |", "|---" * (len(extras) + 1) + "|"]
        for name, arm in report["arms"].items():
            cells = []
            for key in extras:
                e = arm.get("extra", {}).get(key)
                cells.append(f"{_fmt(e['iqm'])} [{_fmt(e['ci95'][0])}, {_fmt(e['ci95'][1])}]" if e else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Commit `{report['git_commit']}`, backend `{report['backend']}`, "
              f"wall time {report['wall_time_s']:.0f} s."]
    for kind, label in (("datasets", "Datasets"), ("models", "Base models")):
        if report.get(kind):
            lines += ["", f"{label} read (sha256 of their content): " + ", ".join(
                f"`{name}` {', '.join(d[:12] for d in ([h] if isinstance(h, str) else h))}"
                for name, h in report[kind].items()) + "."]
    lines += ["", "Reproduce:", "", "```",
              report["command"], "```"]
    if plot_name:
        lines += ["", f"![learning curves]({plot_name})"]
    for name in figures:
        lines += ["", f"![{Path(name).stem.split('.')[-1].replace('_', ' ')}]({name})"]
    return "\n".join(lines) + "\n"


def _interval_band(curves: list[list[tuple[float, float]]]) -> tuple[np.ndarray, ...] | None:
    curves = [np.asarray(c, dtype=np.float64) for c in curves if len(c) > 0]
    if not curves:
        return None
    xs = np.unique(np.concatenate([c[:, 0] for c in curves]))
    grid = np.stack([np.interp(xs, c[:, 0], c[:, 1]) for c in curves])  # seeds x points
    center = iqm(grid, axis=0)
    bands = np.array([bootstrap_ci(grid[:, j], resamples=500) for j in range(xs.size)])
    return xs, center, bands[:, 0], bands[:, 1]


MAX_PLOT_COLUMNS = 4


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparisons = report["comparisons"]
    cols = min(len(comparisons), MAX_PLOT_COLUMNS)
    rows = -(-len(comparisons) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(comparisons):]:
        ax.set_visible(False)
    for ax, comp in zip(axes.flat, comparisons):
        x_max = 0.0
        extra_metric = comp.get("metric", "value") != "value"
        if extra_metric or not any(_has_curve(report["arms"][comp[role]]) for role in ("method", "baseline")):
            # an end-of-run metric, or arms without learning curves: per-seed points and the IQM with its interval
            pair = []
            for i, role in enumerate(("method", "baseline")):
                arm = report["arms"][comp[role]]
                stats = arm["extra"][comp["metric"]] if extra_metric else arm
                pair.append(stats["values"])
                ax.scatter([i] * len(stats["values"]), stats["values"], alpha=0.6)
                ax.errorbar([i], [stats["iqm"]], yerr=[[stats["iqm"] - stats["ci95"][0]],
                                                       [stats["ci95"][1] - stats["iqm"]]], fmt="_", capsize=8)
            if comp.get("paired") and len(pair[0]) == len(pair[1]):  # one seed's two runs, joined
                for a, b in zip(*pair):
                    ax.plot([0, 1], [a, b], color="gray", alpha=0.4, linewidth=0.8)
            ax.set_xticks([0, 1], [comp["method"], comp["baseline"]])
            ax.set_xlim(-0.6, 1.6)
            ax.set_title(_wrap(f"{comp['label']}: {comp['verdict']}"), fontsize=9)
            ax.set_ylabel((comp.get("metric_label") or comp["metric"]) if extra_metric else
                          (comp.get("metric_label") or report.get("metric_label") or report["metric"]))
            continue
        for role in ("method", "baseline"):
            arm = report["arms"][comp[role]]
            band = _interval_band(list(arm["curves"].values()))
            if band is not None and band[0].size > 1:
                xs, center, low, high = band
                ax.plot(xs, center, label=f"{comp[role]} (IQM)")
                ax.fill_between(xs, low, high, alpha=0.25)
                x_max = max(x_max, float(xs[-1]))
            else:  # a baseline without a curve (e.g. a random policy): its final value as a line
                ci = arm["ci95"]
                ax.axhline(arm["iqm"], linestyle="--", color="gray", label=f"{comp[role]} (IQM)")
                ax.axhspan(ci[0], ci[1], color="gray", alpha=0.15)
        ax.set_title(_wrap(f"{comp['label']}: {comp['verdict']}"), fontsize=9)
        ax.set_xlabel(comp.get("curve_x") or report.get("curve_x", "step"))
        ax.set_ylabel(comp.get("metric_label") or report.get("metric_label") or report["metric"])
        ax.legend(loc="best", fontsize=8)
        if x_max:
            ax.set_xlim(0, x_max)
    fig.suptitle(f"{report['experiment']} [{report['budget']}], 95% bootstrap bands", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def _wrap(title: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(title, width))


def _has_curve(arm: dict[str, Any]) -> bool:
    return any(len(curve) > 1 for curve in arm.get("curves", {}).values())


def write_report(report: dict[str, Any], results_dir: str | Path) -> dict[str, Path]:
    folder = Path(results_dir)
    stem = report["experiment"] if report["budget"] == "full" else f"{report['experiment']}.{report['budget']}"
    paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
    atomic_write_json(paths["json"], report)
    plot_report(report, paths["png"])
    exp = EXPERIMENTS.get(report["experiment"]) if report["experiment"] in EXPERIMENTS else None
    for figure in exp.figures if exp is not None else ():
        paths[figure.__name__] = folder / f"{stem}.{figure.__name__}.png"
        figure(report, paths[figure.__name__])
    figures = tuple(p.name for key, p in paths.items() if key not in ("json", "md", "png"))
    atomic_write_text(paths["md"], render_markdown(report, paths["png"].name, figures))
    return paths


def write_benchmark(results_dir: str | Path, name: str, result: dict[str, Any], markdown: str,
                    plot: Callable[[dict[str, Any], Path], None]) -> dict[str, Path]:
    """A benchmark's results/<name>.json, .md and .png, each written atomically."""
    folder = Path(results_dir)
    paths = {"json": folder / f"{name}.json", "md": folder / f"{name}.md", "png": folder / f"{name}.png"}
    atomic_write_json(paths["json"], result)
    atomic_write_text(paths["md"], markdown)
    plot(result, paths["png"])
    return paths


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except OSError as err:
        raise PolicylabError(f"cannot read report {path}: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise PolicylabError(f"report {path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(report, dict):
        raise PolicylabError(f"report {path} is not a policylab results file (not a JSON object)")
    missing = [k for k in ("experiment", "arms", "comparisons", "budget") if k not in report]
    if missing:
        raise PolicylabError(f"report {path} is not a policylab results file (missing {', '.join(missing)})")
    return report
