"""Experiments and their reports: validation, seeds, IQM per arm, effects, verdicts, files."""

from __future__ import annotations

import json

import pytest

from policylab.core import report as report_module
from policylab.core.errors import ConfigError, PolicylabError
from policylab.core.experiment import ArmResult, Comparison, Experiment, check_budget
from policylab.core.report import build_report, load_report, render_markdown, write_report
from policylab.core.run import RunDir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run_arm(arm: str, seed: int, budget: str, run_dir: RunDir) -> ArmResult:
    return ArmResult(value=float(seed) + (10.0 if arm == "method" else 0.0))


def _experiment(**changes) -> Experiment:
    kwargs = dict(
        id="toy-claim",
        claim="method beats baseline",
        arms={"method": {"lr": 0.1}, "baseline": {"lr": 0.0}},
        comparisons=(Comparison("method", "baseline"),),
        metric="return",
        direction="higher",
        seeds={"quick": (3, 1, 7), "full": (0, 1, 2, 3)},
        run_arm=fake_run_arm,
        budgets_note={"quick": "a few steps"},
    )
    kwargs.update(changes)
    return Experiment(**kwargs)


def _rows(arm: str, seeds, values, with_curve: bool = True) -> list[dict]:
    rows = []
    for seed, value in zip(seeds, values, strict=True):
        curve = [[0.0, 0.0], [50.0, value / 2], [100.0, value]] if with_curve else []
        rows.append({"arm": arm, "seed": seed, "value": value, "curve": curve, "wall_s": 1.0})
    return rows


@pytest.fixture(autouse=True)
def _fixed_commit(monkeypatch):
    monkeypatch.setattr(report_module, "git_commit", lambda cwd=None: "abc123")


def _clear_win_results() -> list[dict]:
    # given out of seed order on purpose
    return (_rows("method", [2, 0, 3, 1], [11.0, 10.0, 13.0, 12.0])
            + _rows("baseline", [1, 3, 0, 2], [2.0, 4.0, 1.0, 3.0]))


def test_fake_run_arm_through_a_run_dir(tmp_path):
    exp = _experiment()
    run = RunDir(tmp_path, exp.id, "method", 2)
    assert exp.run_arm("method", 2, "quick", run) == ArmResult(12.0)
    assert exp.run_arm("baseline", 2, "quick", run).value == 2.0


def test_build_report_iqm_effect_and_verdict_when_method_clearly_wins():
    rep = build_report(_experiment(), "full", _clear_win_results(), wall_s=12.0, command="cmd")
    method, baseline = rep["arms"]["method"], rep["arms"]["baseline"]
    assert method["seeds"] == [0, 1, 2, 3]
    assert method["values"] == [10.0, 12.0, 11.0, 13.0]  # in seed order
    assert method["iqm"] == pytest.approx(11.5)  # middle two of 10, 11, 12, 13
    assert baseline["iqm"] == pytest.approx(2.5)
    assert method["ci95"][0] <= 11.5 <= method["ci95"][1]
    assert method["config"] == {"lr": 0.1}
    assert set(method["curves"]) == {"0", "1", "2", "3"}
    [comp] = rep["comparisons"]
    assert comp["paired"] is True
    # per-seed differences 9, 10, 8, 9 -> IQM of 9, 9
    assert comp["effect"] == pytest.approx(9.0)
    assert comp["ci95"][0] > 0
    assert comp["verdict"] == "reproduced"
    assert comp["label"] == "method vs baseline"
    assert rep["verdict"] == "reproduced"
    assert rep["seeds"] == [0, 1, 2, 3]
    assert rep["git_commit"] == "abc123"
    assert rep["command"] == "cmd"
    assert rep["budget"] == "full"
    assert rep["wall_time_s"] == 12.0


def test_build_report_is_unpaired_when_seeds_differ():
    results = (_rows("method", [0, 1, 2, 3], [10.0, 11.0, 12.0, 13.0])
               + _rows("baseline", [4, 5, 6, 7], [1.0, 2.0, 3.0, 4.0]))
    rep = build_report(_experiment(), "full", results, wall_s=1.0)
    [comp] = rep["comparisons"]
    assert comp["paired"] is False
    assert comp["effect"] == pytest.approx(9.0)  # 11.5 - 2.5
    assert comp["verdict"] == "reproduced"
    assert rep["seeds"] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_build_report_respects_experiment_paired_false():
    rep = build_report(_experiment(paired=False), "full", _clear_win_results(), wall_s=1.0)
    assert rep["comparisons"][0]["paired"] is False


def test_build_report_effect_sign_and_verdict_for_direction_lower():
    rep = build_report(_experiment(direction="lower"), "full", _clear_win_results(), wall_s=1.0)
    [comp] = rep["comparisons"]
    assert comp["effect"] == pytest.approx(9.0)  # the effect is method - baseline either way
    assert comp["verdict"] == "not reproduced"


def test_build_report_negative_effect_when_baseline_wins():
    results = (_rows("method", [0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
               + _rows("baseline", [0, 1, 2, 3], [5.0, 7.0, 6.0, 8.0]))
    rep = build_report(_experiment(), "full", results, wall_s=1.0)
    [comp] = rep["comparisons"]
    # differences -4, -5, -3, -4 -> IQM of -4, -4
    assert comp["effect"] == pytest.approx(-4.0)
    assert comp["ci95"][1] < 0
    assert rep["verdict"] == "not reproduced"


def test_build_report_inconclusive_on_overlapping_noise():
    results = (_rows("method", [0, 1, 2, 3], [1.0, 5.0, 2.0, 6.0])
               + _rows("baseline", [0, 1, 2, 3], [3.0, 2.0, 4.0, 3.0]))
    rep = build_report(_experiment(), "full", results, wall_s=1.0)
    assert rep["comparisons"][0]["ci95"][0] < 0 < rep["comparisons"][0]["ci95"][1]
    assert rep["verdict"] == "inconclusive"


def test_build_report_min_effect_is_respected():
    rep = build_report(_experiment(min_effect=20.0), "full", _clear_win_results(), wall_s=1.0)
    assert rep["verdict"] == "inconclusive"
    assert rep["min_effect"] == 20.0


def test_build_report_with_several_comparisons_gives_verdict_per_label():
    exp = _experiment(
        arms={"method": {}, "baseline": {}, "other": {}},
        comparisons=(Comparison("method", "baseline", "m-b"), Comparison("baseline", "method")),
    )
    rep = build_report(exp, "full", _clear_win_results() + _rows("other", [0], [5.0]), wall_s=1.0)
    assert rep["verdict"] == {"m-b": "reproduced", "baseline vs method": "not reproduced"}
    assert rep["arms"]["other"]["iqm"] == 5.0


def test_build_report_arm_without_results_has_no_iqm():
    exp = _experiment(arms={"method": {}, "baseline": {}, "unused": {}})
    rep = build_report(exp, "full", _clear_win_results(), wall_s=1.0)
    assert rep["arms"]["unused"]["iqm"] is None
    assert rep["arms"]["unused"]["ci95"] is None
    assert rep["arms"]["unused"]["values"] == []


def test_render_markdown_mentions_numbers_and_verdict():
    rep = build_report(_experiment(), "quick", _clear_win_results(), wall_s=3.0, command="run it")
    md = render_markdown(rep, "plot.png")
    assert md.startswith("# toy-claim\n")
    assert "| method | 11.5 |" in md
    assert "| baseline | 2.5 |" in md
    assert "**reproduced**" in md
    assert "Budget `quick`: a few steps" in md
    assert "Commit `abc123`" in md
    assert "![learning curves](plot.png)" in md


def test_write_report_writes_json_md_and_png(tmp_path):
    results = (_rows("method", [0, 1, 2, 3], [10.0, 12.0, 11.0, 13.0])
               + _rows("baseline", [0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], with_curve=False))
    rep = build_report(_experiment(), "quick", results, wall_s=2.0, command="c")
    paths = write_report(rep, tmp_path / "results")
    assert paths == {
        "json": tmp_path / "results" / "toy-claim.quick.json",
        "md": tmp_path / "results" / "toy-claim.quick.md",
        "png": tmp_path / "results" / "toy-claim.quick.png",
    }
    png = paths["png"].read_bytes()
    assert len(png) > 1000
    assert png.startswith(PNG_MAGIC)
    assert "![learning curves](toy-claim.quick.png)" in paths["md"].read_text()
    stored = json.loads(paths["json"].read_text())
    assert stored["verdict"] == "reproduced"
    assert stored["arms"]["method"]["iqm"] == pytest.approx(11.5)
    assert load_report(paths["json"]) == stored
    assert sorted(p.name for p in paths["json"].parent.iterdir()) == sorted(
        ["toy-claim.quick.json", "toy-claim.quick.md", "toy-claim.quick.png"]
    )


def test_write_report_full_budget_uses_the_bare_id(tmp_path):
    rep = build_report(_experiment(), "full", _clear_win_results(), wall_s=1.0)
    paths = write_report(rep, tmp_path)
    assert paths["json"].name == "toy-claim.json"
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)


def test_load_report_on_non_json_raises(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("this is not json\n")
    with pytest.raises(PolicylabError) as info:
        load_report(path)
    assert str(path) in str(info.value)
    assert "not valid JSON" in str(info.value)


def test_load_report_on_json_without_keys_raises(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"experiment": "x", "budget": "quick"}))
    with pytest.raises(PolicylabError) as info:
        load_report(path)
    assert "missing arms, comparisons" in str(info.value)


def test_load_report_on_missing_file_raises(tmp_path):
    with pytest.raises(PolicylabError, match="cannot read report"):
        load_report(tmp_path / "absent.json")


@pytest.mark.parametrize("content", ["5", "null", '"experiment arms comparisons budget"'])
def test_load_report_on_scalar_json_raises_policylab_error(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(PolicylabError):
        load_report(path)


def test_experiment_rejects_unknown_arm_in_comparison():
    with pytest.raises(ConfigError) as info:
        _experiment(comparisons=(Comparison("method", "ghost"),))
    assert str(info.value) == "experiment toy-claim: comparison names unknown arm 'ghost'"


def test_experiment_rejects_bad_direction():
    with pytest.raises(ConfigError, match="direction = 'up'"):
        _experiment(direction="up")


@pytest.mark.parametrize(
    ("seeds", "missing"),
    [({"quick": (0,)}, "full"), ({"full": (0,)}, "quick"), ({"quick": (), "full": (1,)}, "quick")],
)
def test_experiment_requires_seeds_for_every_budget(seeds, missing):
    with pytest.raises(ConfigError, match=f"no seeds fixed for budget '{missing}'"):
        _experiment(seeds=seeds)


def test_select_seeds_prefix_and_extension():
    exp = _experiment()
    assert exp.select_seeds("quick") == (3, 1, 7)
    assert exp.select_seeds("quick", 2) == (3, 1)
    assert exp.select_seeds("quick", 3) == (3, 1, 7)
    assert exp.select_seeds("quick", 5) == (3, 1, 7, 8, 9)
    assert exp.select_seeds("full", 1) == (0,)
    assert exp.seeds["quick"] == (3, 1, 7)  # the fixed list is not changed by extending


@pytest.mark.parametrize("count", [0, -2])
def test_select_seeds_refuses_non_positive_count(count):
    with pytest.raises(ConfigError, match=f"seeds = {count} is not allowed"):
        _experiment().select_seeds("quick", count)


def test_select_seeds_refuses_unknown_budget():
    with pytest.raises(ConfigError, match="budget = 'medium' is not allowed"):
        _experiment().select_seeds("medium")
    assert check_budget("full") == "full"


def _with_extra(rows: list[dict], key: str, values: dict[int, float]) -> list[dict]:
    return [{**r, "extra": {key: values[r["seed"]]}} for r in rows]


def test_comparison_reading_an_extra_metric_with_its_own_direction(tmp_path):
    exp = _experiment(comparisons=(Comparison("method", "baseline", "main"),
                                   Comparison("method", "baseline", "noise", metric="noise", direction="lower")))
    results = (_with_extra(_rows("method", [0, 1, 2, 3], [10.0, 12.0, 11.0, 13.0]), "noise",
                           {0: 1.0, 1: 1.1, 2: 0.9, 3: 1.0})
               + _with_extra(_rows("baseline", [0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0]), "noise",
                             {0: 3.0, 1: 3.2, 2: 2.9, 3: 3.1}))
    rep = build_report(exp, "full", results, wall_s=1.0)
    noise = rep["comparisons"][1]
    assert noise["metric"] == "noise" and noise["direction"] == "lower"
    assert noise["effect"] == pytest.approx(-2.05)  # paired differences -2, -2.1, -2, -2.1
    assert rep["verdict"] == {"main": "reproduced", "noise": "reproduced"}
    assert "| noise | lower |" in render_markdown(rep)
    assert write_report(rep, tmp_path)["png"].read_bytes().startswith(PNG_MAGIC)


def test_comparison_on_a_missing_extra_metric_names_it():
    exp = _experiment(comparisons=(Comparison("method", "baseline", metric="noise"),))
    with pytest.raises(PolicylabError, match="noise"):
        build_report(exp, "full", _clear_win_results(), wall_s=1.0)


def test_comparison_direction_is_validated():
    with pytest.raises(ConfigError, match="direction"):
        _experiment(comparisons=(Comparison("method", "baseline", direction="up"),))


def test_arms_without_curves_are_plotted_as_per_seed_points(tmp_path, monkeypatch):
    """No learning curve on either side: one errorbar per arm at x = 0 and 1, not lines over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.axes

    calls = []
    original = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, *a, **k: calls.append((list(x), list(y))) or original(self, x, y, *a, **k))
    results = (_rows("method", [0, 1, 2], [10.0, 12.0, 11.0], with_curve=False)
               + _rows("baseline", [0, 1, 2], [1.0, 2.0, 3.0], with_curve=False))
    rep = build_report(_experiment(), "quick", results, wall_s=1.0)
    path = report_module.plot_report(rep, tmp_path / "p.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [x for x, _ in calls] == [[0], [1]]
    assert calls[0][1] == [pytest.approx(rep["arms"]["method"]["iqm"])]


def test_curve_extras_reach_the_experiments_own_figures(tmp_path, monkeypatch):
    from policylab.core.registry import EXPERIMENTS

    monkeypatch.setattr(EXPERIMENTS, "_entries", dict(EXPERIMENTS._entries))  # the toy entry leaves with the test
    seen = {}

    def gold_vs_kl(report, path):
        seen["curves"] = report["arms"]["method"]["extra_curves"]
        path.write_bytes(PNG_MAGIC)

    exp = _experiment(id="toy-figures", figures=(gold_vs_kl,))
    EXPERIMENTS.add(exp.id, exp)
    rows = _clear_win_results()
    for row in rows:
        row["extra"] = {"kl": 0.5, "gold_curve": [(0.0, 1.0), (0.5, float(row["seed"]))]}
    report = build_report(exp, "full", rows, 1.0, "test")
    assert report["arms"]["method"]["extra_curves"]["gold_curve"]["2"] == [[0.0, 1.0], [0.5, 2.0]]
    assert set(report["arms"]["method"]["extra"]) == {"kl"}  # curves are not summarized as numbers
    paths = write_report(report, tmp_path)
    assert paths["gold_vs_kl"].name == "toy-figures.gold_vs_kl.png" and paths["gold_vs_kl"].read_bytes() == PNG_MAGIC
    assert seen["curves"]["gold_curve"].keys() == {"0", "1", "2", "3"}
    assert "![gold vs kl](toy-figures.gold_vs_kl.png)" in paths["md"].read_text()
