"""The overoptimization figure (Gao et al. 2023; Coste et al. 2024): gold and proxy score against KL from the
initial policy, one colour per arm, gold solid on the left axis and proxy dashed on the right (the proxy is on
its own normalized scale). A report figure: `Experiment(figures=(overoptimization,))`.

It reads the arms' `extra_curves` named `<setting>_gold_curve` and `<setting>_proxy_curve` (lists of (KL, score)
per seed), one panel per setting; seeds are averaged point by point (the same evaluation points in every seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from policylab.core.atomic import atomic_write

PANEL_TITLES = {"bon_clean": "best-of-n, clean labels", "bon_noisy": "best-of-n, 25% label noise",
                "rl": "RL (RLOO + KL penalty), 25% label noise"}


def mean_curve(by_seed: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
    length = min(len(c) for c in by_seed.values())
    points = np.array([c[:length] for c in by_seed.values()], dtype=float)  # [seeds, points, 2]
    return points[..., 0].mean(0), points[..., 1].mean(0)


def overoptimization(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = sorted({key.removesuffix("_gold_curve") for arm in report["arms"].values()
                       for key in arm.get("extra_curves", {}) if key.endswith("_gold_curve")})
    fig, axes = plt.subplots(1, max(len(settings), 1), figsize=(6 * max(len(settings), 1), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, setting in zip(axes.flat, settings):
        proxy_ax = ax.twinx()
        for i, (name, arm) in enumerate(report["arms"].items()):
            curves = arm.get("extra_curves", {})
            if f"{setting}_gold_curve" not in curves:
                continue
            colour = colours[i % len(colours)]
            ax.plot(*mean_curve(curves[f"{setting}_gold_curve"]), color=colour, marker="o", ms=3, label=f"{name} gold")
            if f"{setting}_proxy_curve" in curves:
                proxy_ax.plot(*mean_curve(curves[f"{setting}_proxy_curve"]), color=colour, ls="--", alpha=0.7,
                              label=f"{name} proxy")
        ax.set_title(PANEL_TITLES.get(setting, setting), fontsize=10)
        ax.set_xlabel("KL from the initial policy (nats; KL_BoN for best-of-n)")
        ax.set_ylabel("gold score (solid)")
        proxy_ax.set_ylabel("proxy score, normalized (dashed)")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{report['experiment']} [{report['budget']}]: gold and proxy against KL, mean over seeds "
                 f"{report['seeds']}", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path
