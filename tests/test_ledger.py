"""The claim ledger is generated: the committed docs/methods.md is what the results and modules give."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from policylab.cli import load_registries, main
from policylab.core.experiment import FIDELITY
from policylab.core.registry import EXPERIMENTS
from policylab.ledger import (
    READING_LIST,
    LedgerError,
    check_ledger,
    claim_checks,
    fill,
    fmt_effect,
    fmt_number,
    headline,
    load_results,
    render_ledger,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS, LEDGER = ROOT / "results", ROOT / "docs" / "methods.md"

load_registries()


def test_committed_ledger_is_the_generated_one():
    diff = check_ledger(LEDGER, RESULTS)
    assert not diff, "docs/methods.md is stale; run `policylab ledger`:\n" + "\n".join(diff[:20])


def test_ledger_check_command_fails_on_a_hand_edit(tmp_path, capsys):
    edited = tmp_path / "methods.md"
    edited.write_text(LEDGER.read_text().replace("| checked |", "| checked (6 of 12) |", 1))
    assert main(["ledger", "--check", "--out", str(edited), "--results", str(RESULTS)]) == 1
    assert "differs" in capsys.readouterr().err
    assert main(["ledger", "--out", str(edited), "--results", str(RESULTS)]) == 0
    assert main(["ledger", "--check", "--out", str(edited), "--results", str(RESULTS)]) == 0
    assert edited.read_text() == LEDGER.read_text()


def test_every_reading_list_method_declares_its_metadata():
    groups = claim_checks()
    assert len(READING_LIST) == 32 and len(set(READING_LIST)) == 32
    for method in READING_LIST:
        for exp in groups[method]:
            assert exp.paper and exp.pillar in ("lm", "offline", "rl", "irl", "vision"), exp.id
            labels = [x.strip() for x in exp.fidelity.split(",")]
            assert labels and all(label in FIDELITY for label in labels), exp.id


def test_headline_counts_what_the_json_says():
    reports = load_results(RESULTS)
    for exp_id, report in reports.items():
        verdicts = [c["verdict"] for c in report["comparisons"]]
        if len(verdicts) > 1:
            assert headline(report).startswith(f"{verdicts.count('reproduced')} of {len(verdicts)} reproduced"), exp_id


def test_matches_or_on_par_only_for_a_margin_comparison():
    # the words claim equivalence: the prose a module declares may use them only when one of its comparisons
    # has a margin declared before the run (a comparison's label states the paper's claim, not our verdict)
    reports = load_results(RESULTS)
    for checks in claim_checks().values():
        for exp in checks:
            prose = f"{exp.caveats} {exp.fidelity_note}"
            if re.search(r"\bmatch(es|ed)?\b|\bon par\b", prose, flags=re.IGNORECASE):
                margins = [c for c in reports.get(exp.id, {}).get("comparisons", []) if c.get("equivalence")]
                assert margins, f"{exp.id}'s caveats say 'matches' / 'on par' without an equivalence margin"


def _toy_report() -> dict:
    return json.loads((RESULTS / "mamql.json").read_text())


def test_placeholders_are_filled_from_the_result_or_refused():
    report = _toy_report()
    arm = next(iter(report["arms"]))
    key = next(iter(report["arms"][arm]["extra"]))
    iqm = report["arms"][arm]["iqm"]
    assert fill(f"value {{{arm}}}", report, {}, "t") == f"value {fmt_number(iqm)}"
    assert fill(f"{{{arm}/{key}}}", report, {}, "t") == fmt_number(report["arms"][arm]["extra"][key]["iqm"])
    c = report["comparisons"][1]
    assert fill("{#1}", report, {}, "t") == fmt_effect(c["effect"], *c["ci95"])
    assert fill("{mamql:#1}", None, {"mamql": report}, "t") == fmt_effect(c["effect"], *c["ci95"])
    for bad in ("{no-such-arm}", f"{{{arm}/no-such-key}}", "{#99}", "{nothere:#0}"):
        with pytest.raises(LedgerError):
            fill(bad, report, {}, "t")


def test_number_formats():
    assert fmt_number(-737.24) == "-737"
    assert fmt_number(0.01532) == "0.0153"
    assert fmt_number(12.345) == "12.3"
    assert fmt_number(0) == "0"
    assert fmt_effect(0.0153, 0.0102, 0.0189) == "+0.0153 [0.0102, 0.0189]"
    assert fmt_effect(-69.3, -97.1, -31.9) == "-69.3 [-97.1, -31.9]"
    assert fmt_effect(102.4, 39.0, 183.2) == "+102 [39, 183]"


def test_a_changed_result_changes_its_row(tmp_path):
    for path in RESULTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    report = copy.deepcopy(_toy_report())
    report["comparisons"][0]["verdict"] = "not reproduced"
    (tmp_path / "mamql.json").write_text(json.dumps(report))
    before, after = render_ledger(RESULTS), render_ledger(tmp_path)
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert len(changed) == 1 and changed[0].startswith("| mamql |")


def test_every_claim_result_names_a_registered_check():
    for exp_id in load_results(RESULTS):
        assert exp_id in EXPERIMENTS
