"""The claim ledger, `docs/methods.md`, written from `results/*.json` and each experiment's declared metadata.

Nothing in the ledger is typed by hand: a row's verdict, effects and intervals come from the committed
result, its paper, pillar, fidelity and caveats from the experiment module (`policylab.core.experiment`),
and numbers inside caveats are placeholders filled from the result (`{arm}`, `{arm/key}`, `{#k}`, and in the
baselines' evidence `{experiment:arm}` ...). `policylab ledger --check` fails when the committed file
differs from what the results and modules say.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from policylab.core.errors import PolicylabError
from policylab.core.experiment import Experiment
from policylab.core.registry import EXPERIMENTS
from policylab.core.report import load_report

# The reading list (shared/reference/methods.md), in its order; every id has a claim check of that id.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Language-model RL with verifiable rewards",
     ("lite_ppo", "bnpo", "bapo", "thr", "rec", "nft", "policy_cliff", "empg", "igpo", "ufo")),
    ("Preferences, inverse RL and reward models for language models",
     ("dpo_q", "iq_lm", "irl_llm", "rm_ensemble", "parl")),
    ("Offline RL",
     ("odice", "cdsa", "traj_weight", "tq_saco", "ssorl", "mbrcsl", "oppo", "obs_history", "rl_vlm_f", "hib",
      "iwocs")),
    ("Online RL and theory", ("mdpo", "sqirl")),
    ("Imitation and inverse RL", ("mamql", "irl_misspec", "ild")),
    ("Representation", ("karl",)),
)
READING_LIST = tuple(i for _, ids in SECTIONS for i in ids)

# The baselines every pillar needs: algorithms, not claims, so their evidence is the tests that pin them and
# the claim checks they are arms of. Numbers are placeholders filled from those results.
BASELINES: tuple[tuple[str, str, str, str], ...] = (
    ("ppo", "Schulman et al. 2017, Proximal Policy Optimization Algorithms", "rl",
     "`tests/rl/test_learning.py` (CartPole-v1 >= 475; Gaussian head on PointReach-v0), [quickstart]"
     "(../results/quickstart.md) (CartPole-v1 return {quickstart:ppo} vs random {quickstart:random-cartpole}), "
     "[throughput vs SB3](../results/online_throughput.md)"),
    ("sac", "Haarnoja et al. 2018, Soft Actor-Critic Algorithms and Applications", "rl",
     "`tests/rl/test_learning.py` (Pendulum-v1 > -250), [quickstart](../results/quickstart.md) (Pendulum-v1 "
     "return {quickstart:sac} vs random {quickstart:random-pendulum}), "
     "[throughput vs SB3](../results/online_throughput.md)"),
    ("td3", "Fujimoto et al. 2018, Addressing Function Approximation Error in Actor-Critic Methods", "rl",
     "`tests/rl/test_learning.py` (Pendulum-v1 > -250 in 15k steps), `tests/rl/test_components.py` (gradient "
     "isolation, every network moves), the learner of [iwocs](../results/iwocs.md)"),
    ("grpo", "Shao et al. 2024, DeepSeekMath (GRPO)", "lm",
     "`tests/lm/test_objective.py` (unbiased group std by hand, all-equal and single-response groups -> 0, "
     "on-policy clipped loss = REINFORCE gradient), `tests/lm/test_rlvr_trainer.py` (beats no-RL on held-out gcd "
     "pass@1 by a margin fixed in the test; G = 1 leaves the policy unchanged), [quickstart]"
     "(../results/quickstart.md) (held-out gcd accuracy {quickstart:grpo} vs the base's {quickstart:base-lm}), "
     "[throughput vs TRL](../results/lm_throughput.md)"),
    ("dapo", "Yu et al. 2025, DAPO", "lm",
     "clip-higher, token-mean, soft overlong penalty by hand, dynamic sampling keeps only mixed groups and "
     "regenerates (`tests/lm/`); arm of [lite_ppo](../results/lite_ppo.md)"),
    ("dr_grpo", "Liu et al. 2025, Understanding R1-Zero-like training (Dr. GRPO)", "lm",
     "group-mean advantage and the fixed-constant sum aggregation by hand (`tests/lm/test_objective.py`)"),
    ("gspo", "Zheng et al. 2025, Group Sequence Policy Optimization", "lm",
     "length-normalized sequence ratio, its gradient and the GSPO-token variant by hand "
     "(`tests/lm/test_objective.py`)"),
    ("bc", "Pomerleau 1991 / CORL's x%BC (Chen et al. 2021)", "offline",
     "`tests/offline/test_offline.py` (10%BC recovers the expert inside pendulum-mix10; BC alone stays near random "
     "there), the reference arm of [offline_baselines](../results/offline_baselines.md) (normalized "
     "{offline_baselines:bc.pendulum} / {offline_baselines:bc.idp} / "
     "{offline_baselines:bc.maze} on pendulum-mix5 / idp-medium-replay / maze2d-umaze)"),
    ("td3_bc", "Fujimoto & Gu 2021, A Minimalist Approach to Offline RL", "offline",
     "`tests/offline/test_offline.py` (offline TD3 without the BC term overestimates Q(s0, pi(s0)) and scores "
     "lower; TD3+BC beats random; bitwise resume), [offline_baselines](../results/offline_baselines.md) (vs BC "
     "{offline_baselines:#0}, {offline_baselines:#3}, {offline_baselines:#6})"),
    ("iql", "Kostrikov et al. 2022, Offline RL with Implicit Q-Learning", "offline",
     "`tests/offline/test_offline.py` (beats BC on pendulum-mix10 at 5k steps; expectile loss by hand), "
     "[quickstart](../results/quickstart.md) (pendulum-mix5 {quickstart:iql} vs BC {quickstart:bc}), "
     "[offline_baselines](../results/offline_baselines.md) (vs BC {offline_baselines:#1}, {offline_baselines:#4}, "
     "{offline_baselines:#7}; vs RCSL on maze2d-umaze {offline_baselines:#9})"),
    ("cql", "Kumar et al. 2020, Conservative Q-Learning (CQL(H), continuous)", "offline",
     "`tests/offline/test_cql.py` (the critic loss equals CORL's form on a fixed batch), "
     "`tests/offline/test_offline.py` (on expert data the penalty pushes Q of out-of-distribution actions down "
     "relative to offline SAC), [offline_baselines](../results/offline_baselines.md) (vs BC "
     "{offline_baselines:#2}, {offline_baselines:#5}, {offline_baselines:#8})"),
    ("rcsl", "Emmons et al. 2022 (RvS) / Zhou et al. 2024 (MBRCSL's RCSL)", "offline",
     "`tests/offline/test_rcsl.py` (returns-to-go by hand across episode boundaries, remaining target follows "
     "uneven live episodes, conditioning on the best return beats random and a median target on pendulum-mix10), "
     "arm of [offline_baselines](../results/offline_baselines.md) and [mbrcsl](../results/mbrcsl.md)"),
    ("dqn", "Mnih et al. 2015 / van Hasselt et al. 2016 (double DQN)", "rl",
     "`tests/offline/test_discrete.py` (double-DQN target by hand, hard target copy; beats random on CartPole-v1 "
     "in 10k steps); behaviour policy of the cartpole datasets"),
    ("dqn_offline", "double DQN on a fixed dataset (Schweighofer et al. 2022's off-policy baseline)", "offline",
     "`tests/offline/test_discrete.py`, arm of [tq_saco](../results/tq_saco.md)"),
    ("cql_discrete", "Kumar et al. 2020, CQL(H) for discrete actions", "offline",
     "`tests/offline/test_discrete.py` (conservative term by hand; alpha = 0 is DQN exactly), arm of "
     "[tq_saco](../results/tq_saco.md)"),
)

HEADER = """# The claim ledger

Generated by `policylab ledger` from the committed results (`results/<id>.json`) and the metadata each
claim check declares in its module (`policylab/experiments/<id>.py`: paper, pillar, fidelity, caveats); do
not edit it by hand (`policylab ledger --check`, run by `make test`, fails when it differs). One row per
method of the reading list (`shared/reference/methods.md`). Status: *checked* (a `full` result is
committed), *implemented* (method and math tests landed, no `full` result yet).

A verdict is per comparison: **reproduced** (the 95% interval of the paired effect lies beyond the minimum
effect on the claimed side), **not reproduced** (it lies on the other side of 0), *inconclusive* (anything
else). Effects are method minus baseline, with their interval in brackets. These results use protocol v1
(3 to 5 seeds, percentile bootstrap over seeds); protocol v2 (`shared/design/claim-checks.md`) comes with
the claims-v2 issue. Fidelity: **faithful** (the paper's equations and defaults, checked against its official
code where that exists), **reconstructed** (some equations recovered from secondary sources), **stand-in** (a
component replaced), **scaled down** (architecture or budget reduced in a way that can change the result). A
"not reproduced" on a method that is not faithful refutes our variant, not the paper.
"""

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


class LedgerError(PolicylabError):
    pass


def fmt_number(x: float | None) -> str:
    """Three significant digits, no exponent for the magnitudes results have."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def fmt_effect(effect: float, low: float, high: float) -> str:
    """'+0.015 [0.010, 0.019]': the effect and its interval at one precision (that of the largest of the three)."""
    scale = max(abs(effect), abs(low), abs(high))
    decimals = 0 if scale == 0 else max(0, 2 - math.floor(math.log10(scale)))
    return f"{effect:+.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def _resolve(token: str, report: dict[str, Any] | None, reports: dict[str, dict[str, Any]], where: str) -> str:
    if ":" in token:
        exp_id, token = token.split(":", 1)
        if exp_id not in reports:
            raise LedgerError(f"{where}: placeholder {{{exp_id}:{token}}} names experiment {exp_id!r}, "
                              "which has no committed full result")
        report = reports[exp_id]
    if report is None:
        raise LedgerError(f"{where}: placeholder {{{token}}} needs a committed result")
    if token.startswith("#"):
        index = int(token[1:]) if token[1:].isdigit() else -1
        if not 0 <= index < len(report["comparisons"]):
            raise LedgerError(f"{where}: placeholder {{{token}}}: {report['experiment']} has comparisons "
                              f"#0..#{len(report['comparisons']) - 1}")
        c = report["comparisons"][index]
        return fmt_effect(c["effect"], *c["ci95"])
    arm, _, key = token.partition("/")
    if arm not in report["arms"]:
        raise LedgerError(f"{where}: placeholder {{{token}}}: {report['experiment']} has no arm {arm!r} "
                          f"(arms: {', '.join(report['arms'])})")
    stats = report["arms"][arm]
    if key:
        if key not in stats.get("extra", {}):
            raise LedgerError(f"{where}: placeholder {{{token}}}: arm {arm!r} of {report['experiment']} reported "
                              f"no {key!r} (extras: {', '.join(stats.get('extra', {})) or 'none'})")
        stats = stats["extra"][key]
    return fmt_number(stats["iqm"])


def fill(text: str, report: dict[str, Any] | None, reports: dict[str, dict[str, Any]], where: str) -> str:
    """Replace every placeholder in `text` by the number it names; an unknown one is an error, never left in."""
    return _PLACEHOLDER.sub(lambda m: _resolve(m.group(1), report, reports, where), text)


def headline(report: dict[str, Any]) -> str:
    verdicts = [c["verdict"] for c in report["comparisons"]]
    n, hits, misses = len(verdicts), verdicts.count("reproduced"), verdicts.count("not reproduced")
    if n == 1:
        return verdicts[0]
    text = f"{hits} of {n} reproduced"
    return text + (f", {misses} not reproduced" if misses else "")


def _comparisons(report: dict[str, Any]) -> str:
    parts = []
    for c in report["comparisons"]:
        v = c["verdict"]
        shown = f"**{v}**" if v in ("reproduced", "not reproduced") else v
        margin = ""
        if c.get("margin") is not None:
            kind = "equivalence" if c.get("equivalence") else "non-inferiority"
            margin = f", {kind} margin {fmt_number(c['margin'])}"
        parts.append(f"{c['label']} {fmt_effect(c['effect'], *c['ci95'])}{margin}: {shown}")
    return "; ".join(parts)


def _setting(report: dict[str, Any]) -> str:
    commit = str(report.get("git_commit", "unknown"))
    short = commit[:7] + (", dirty tree" if commit.endswith("-dirty") else "")
    note = report.get("budget_note") or f"budget {report['budget']}"
    return f"{note}; seeds {', '.join(map(str, report['seeds']))}; commit `{short}`"


def _check_text(exp: Experiment, report: dict[str, Any] | None, reports: dict[str, dict[str, Any]]) -> str:
    if report is None:
        return f"{exp.id}: no full result committed yet"
    setting = _setting(report)
    if exp.pillar == "offline" and "datasets" not in report:
        setting += "; its datasets' hashes were not recorded (a run before results recorded them)"
    text = (f"[{headline(report)}](../results/{exp.id}.md) ({setting}): {_comparisons(report)}.")
    if exp.caveats:
        text += " " + fill(exp.caveats.strip(), report, reports, f"experiment {exp.id} caveats")
    if exp.fidelity != "faithful" and any(c["verdict"] == "not reproduced" for c in report["comparisons"]):
        text += f" A 'not reproduced' here refutes this {exp.fidelity or 'unrated'} variant, not the paper."
    return text


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _fidelity(exp: Experiment) -> str:
    if not exp.fidelity:
        return "not stated"
    return exp.fidelity + (f": {exp.fidelity_note}" if exp.fidelity_note else "")


def _method_row(method_id: str, checks: list[Experiment], reports: dict[str, dict[str, Any]]) -> str:
    own = checks[0]
    texts = []
    for i, exp in enumerate(checks):
        text = _check_text(exp, reports.get(exp.id), reports)
        texts.append(text if i == 0 else f"Follow-up `{exp.id}`: {text}")
    status = "checked" if method_id in reports else "implemented"
    rerun = ", ".join(f"`policylab run {e.id} --budget full`" for e in checks)
    return (f"| {method_id} | {_cell(own.paper)} | {own.pillar} | {_cell(_fidelity(own))} | {status} | "
            f"{_cell(' '.join(texts))} | {rerun} |")


def load_results(results_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every committed full-budget claim result, by experiment id."""
    reports = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        if path.stem.count(".") or path.stem not in EXPERIMENTS:
            continue  # quick-budget files and benchmarks are not ledger rows
        report = load_report(path)
        if report["budget"] == "full":
            reports[report["experiment"]] = report
    return reports


def claim_checks() -> dict[str, list[Experiment]]:
    """Reading-list id -> its claim checks, the method's own first, then its follow-ups in registry order."""
    groups: dict[str, list[Experiment]] = {}
    for name in EXPERIMENTS:
        exp = EXPERIMENTS.get(name)
        if exp.kind != "claim":
            continue
        groups.setdefault(exp.method or exp.id, []).append(exp)
    for key, checks in groups.items():
        checks.sort(key=lambda e: (e.id != key, e.id))
        if checks[0].id != key:
            raise LedgerError(f"follow-up {checks[0].id!r} names method {key!r}, which has no claim check of its own")
    return groups


def render_ledger(results_dir: str | Path = "results") -> str:
    reports = load_results(results_dir)
    groups = claim_checks()
    missing = [i for i in READING_LIST if i not in groups]
    if missing:
        raise LedgerError(f"reading-list methods without a claim check: {', '.join(missing)}")
    table_head = ["| id | paper | pillar | fidelity | status | verdict | rerun |", "|---|---|---|---|---|---|---|"]
    lines = [HEADER]
    for title, ids in SECTIONS:
        lines += [f"## {title}", "", *table_head]
        lines += [_method_row(i, groups[i], reports) for i in ids]
        lines.append("")
    others = [k for k in groups if k not in READING_LIST]
    if others:
        lines += ["## Claim checks of the baselines", "", *table_head]
        lines += [_method_row(i, groups[i], reports) for i in sorted(others)]
        lines.append("")
    lines += ["## Baselines", "", "| id | paper | pillar | status | evidence |", "|---|---|---|---|---|"]
    for algo, paper, pillar, evidence in BASELINES:
        filled = fill(evidence, None, reports, f"baseline {algo} evidence")
        lines.append(f"| {algo} | {_cell(paper)} | {pillar} | implemented | {_cell(filled)} |")
    return "\n".join(lines) + "\n"


def check_ledger(path: str | Path, results_dir: str | Path = "results") -> list[str]:
    """The lines where the committed ledger differs from the regenerated one (empty when it is current)."""
    import difflib

    path = Path(path)
    current = path.read_text() if path.exists() else ""
    fresh = render_ledger(results_dir)
    return [line for line in difflib.unified_diff(current.splitlines(), fresh.splitlines(), str(path),
                                                   "regenerated", lineterm="", n=0)]
