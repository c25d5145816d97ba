"""Provenance of a result: which code (git commit, dirty or clean) and which dataset bytes it used."""

from __future__ import annotations

import subprocess

import pytest

from policylab.core import provenance
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.report import SMOKE_RUN, build_report, git_commit, render_markdown
from policylab.core.runner import execute


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    for rel in ("src/pkg/mod.py", "benchmarks/b.py", "pyproject.toml", "results/r.json", "docs/d.md", "tests/t.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_clean_commit_stays_clean_when_results_docs_and_tests_change(repo):
    head = git_commit(repo)
    assert len(head) == 40 and not head.endswith("-dirty")
    for rel in ("results/r.json", "docs/d.md", "tests/t.py"):
        (repo / rel).write_text("changed\n")
    (repo / "results" / "new.json").write_text("{}\n")
    assert git_commit(repo) == head


@pytest.mark.parametrize("change", ["src/pkg/mod.py", "benchmarks/b.py", "pyproject.toml",
                                    "src/pkg/untracked_new.py", "benchmarks/new/bench.py"])
def test_code_changes_tracked_or_untracked_make_it_dirty(repo, change):
    head = git_commit(repo)
    (repo / change).parent.mkdir(parents=True, exist_ok=True)
    (repo / change).write_text("y = 2\n")
    assert git_commit(repo) == head + "-dirty"
    assert git_commit(repo / "docs") == head + "-dirty"  # from a subfolder, the paths are the top's


def test_ignored_files_under_src_do_not_make_it_dirty(repo):
    (repo / ".gitignore").write_text("__pycache__/\n")
    _git(repo, "add", ".gitignore")
    _git(repo, "commit", "-q", "-m", "ignore")
    head = git_commit(repo)
    (repo / "src" / "pkg" / "__pycache__").mkdir()
    (repo / "src" / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"\0")
    assert git_commit(repo) == head


def test_git_commit_outside_git_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_merge_datasets_keeps_conflicting_hashes():
    merged = provenance.merge_datasets([{"a": "1", "b": "2"}, {"a": "1"}, {"b": "3"}])
    assert merged == {"a": "1", "b": ["2", "3"]}


def _arm_reading_a_dataset(arm: str, seed: int, budget: str, run) -> ArmResult:
    provenance.record_dataset(f"data-{arm}", f"{seed:064d}")
    if arm == "method":
        provenance.record_model("base-method", "f" * 64)
    return ArmResult(float(seed) + (5.0 if arm == "method" else 0.0))


def _experiment() -> Experiment:
    return Experiment(id="provenance-toy", claim="c", arms={"method": {}, "baseline": {}},
                      comparisons=(Comparison("method", "baseline"),), metric="m", direction="higher",
                      seeds={"quick": (0,), "full": (0, 1, 2)}, run_arm=_arm_reading_a_dataset)


def test_every_dataset_read_by_a_task_reaches_the_report(tmp_path, monkeypatch):
    from policylab.core.registry import EXPERIMENTS

    exp = _experiment()
    monkeypatch.setitem(EXPERIMENTS._entries, exp.id, exp)
    results = execute(exp, "full", (0, 1), runs_root=tmp_path, progress=False)
    one = "0" * 63 + "1"
    assert [r["datasets"] for r in results if r["arm"] == "method"] == [{"data-method": "0" * 64},
                                                                        {"data-method": one}]
    report = build_report(exp, "full", results, wall_s=1.0, command="cmd", commit="abc")
    assert report["datasets"] == {"data-baseline": ["0" * 64, one], "data-method": ["0" * 64, one]}
    assert report["models"] == {"base-method": "f" * 64}
    assert "`data-method` 000000000000" in render_markdown(report)
    assert "Base models read (sha256 of their content): `base-method` ffffffffffff" in render_markdown(report)


def test_one_seed_is_a_smoke_run_without_a_verdict(tmp_path, monkeypatch):
    from policylab.core.registry import EXPERIMENTS

    exp = _experiment()
    monkeypatch.setitem(EXPERIMENTS._entries, exp.id, exp)
    results = execute(exp, "quick", (0,), runs_root=tmp_path, progress=False)
    report = build_report(exp, "quick", results, wall_s=1.0, command="cmd", commit="abc")
    assert report["comparisons"][0]["effect"] == 5.0  # the numbers are still there
    assert report["verdict"] == SMOKE_RUN


def test_loading_a_dataset_records_its_hash(tmp_path):
    import numpy as np

    from policylab.data import Episode, load_dataset, save_dataset

    rng = np.random.default_rng(0)
    T = 4
    ep = Episode(rng.normal(size=(T + 1, 3)).astype(np.float32), rng.normal(size=(T, 2)).astype(np.float32),
                 rng.normal(size=T).astype(np.float32), np.eye(T, dtype=bool)[-1], np.zeros(T, dtype=bool))
    path = save_dataset(tmp_path / "toy-set", [ep], {"env_id": "Toy-v0", "ref_min_score": 0.0, "ref_max_score": 1.0})
    provenance.clear_datasets_read()
    load_dataset(path)
    import hashlib

    [(name, digest)] = provenance.datasets_read().items()
    assert name == "toy-set"
    assert digest == hashlib.sha256((tmp_path / "toy-set.parquet").read_bytes()).hexdigest()


def test_loading_a_base_model_records_its_hash(tmp_path):
    import hashlib

    import torch

    from policylab.core.config import to_dict
    from policylab.lm.policy import TinyGPT, TinyGPTConfig
    from policylab.lm.pretrain import FORMAT, load_base

    cfg = TinyGPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, d_model=8)
    path = tmp_path / "tiny-test-0123456789.pt"
    torch.save({"format": FORMAT, "model_config": to_dict(cfg), "state_dict": TinyGPT(cfg).state_dict(),
                "tokenizer": {"charset": "abcdefgh"}, "meta": {}}, path)
    provenance.clear_inputs_read()
    load_base(path)
    assert provenance.inputs_read()["models"] == {"tiny-test-0123456789": hashlib.sha256(path.read_bytes()).hexdigest()}
