"""Catalog datasets: built from fixed seeds, cached, skipped when valid, rebuilt when damaged."""

import pytest

from policylab.catalog import build_dataset, dataset_path
from policylab.cli import main
from policylab.data import load_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.mark.slow
def test_pendulum_mixture_is_built_once_and_rebuilt_when_damaged(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("POLICYLAB_DATA", str(data_dir))
    assert main(["data", "build", "pendulum-mix10"]) == 0  # trains the SAC expert (about a minute)
    path = dataset_path("pendulum-mix10")
    data = load_dataset(path)
    meta = data.metadata
    assert data.num_episodes == 200 and len(data) == 40_000 and meta["expert_episodes"] == 20
    assert data.timeouts.sum() == 200 and data.terminals.sum() == 0  # Pendulum only truncates
    assert meta["ref_max_score"] > -400 and meta["ref_min_score"] < -1000  # the expert really is one
    returns = data.episode_returns()
    assert (returns[:20] > -600).float().mean() >= 0.9 and (returns[20:] < -600).float().mean() >= 0.9
    assert (data_dir / "behaviour" / "pendulum-sac.pt").exists()
    stamp = path.stat().st_mtime_ns
    build_dataset("pendulum-mix10")
    assert path.stat().st_mtime_ns == stamp  # valid: not rebuilt
    path.write_bytes(path.read_bytes()[:100])
    build_dataset("pendulum-mix10")
    assert load_dataset(path).metadata["sha256"] == meta["sha256"]  # rebuilt, bitwise the same
    assert main(["data", "info", "pendulum-mix10"]) == 0
    assert "normalized score" in capsys.readouterr().out
    runs = data_dir / "runs"
    assert main(["train", "bc", "--dataset", "pendulum-mix10", "--steps", "50", "--runs-root", str(runs),
                 "--hidden", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert "eval/normalized_score" in out and (runs / "bc-pendulum-mix10" / "main" / "seed0" / "config.json").exists()


def _tiny_recipe(version: int = 1, jitter: float = 0.0):
    import numpy as np

    from policylab.catalog.datasets import DatasetRecipe
    from policylab.data import Episode, save_dataset

    def build(path, progress):
        rng = np.random.default_rng(0)
        T = 5
        obs = rng.normal(size=(T + 1, 2)).astype(np.float32) + np.float32(jitter)
        ep = Episode(obs, rng.normal(size=(T, 1)).astype(np.float32), rng.normal(size=T).astype(np.float32),
                     np.eye(T, dtype=bool)[-1], np.zeros(T, dtype=bool))
        save_dataset(path.with_suffix(""), [ep], {"env_id": "Toy-v0", "ref_min_score": 0.0, "ref_max_score": 1.0,
                                                  "builder_version": version})

    return DatasetRecipe("tiny-rebuild", "Toy-v0", "a tiny dataset for the rebuild messages", build, version)


def test_a_damaged_cached_dataset_is_rebuilt_and_says_so(tmp_path, monkeypatch, capsys):
    from policylab.core.registry import DATASETS

    monkeypatch.setenv("POLICYLAB_DATA", str(tmp_path))
    monkeypatch.setitem(DATASETS._entries, "tiny-rebuild", _tiny_recipe())
    path = build_dataset("tiny-rebuild")
    assert capsys.readouterr().err == ""  # a first build is no rebuild
    path.write_bytes(path.read_bytes()[:50])
    build_dataset("tiny-rebuild")
    err = capsys.readouterr().err
    assert "dataset tiny-rebuild in the cache is unusable" in err and "rebuilding it from its recipe" in err
    assert "the same bytes as the copy it replaced" in err
    # a recipe whose bytes change (here on purpose) is reported as such
    monkeypatch.setitem(DATASETS._entries, "tiny-rebuild", _tiny_recipe(jitter=1e-6))
    path.write_bytes(b"")
    build_dataset("tiny-rebuild")
    assert "other bytes than the copy it replaced" in capsys.readouterr().err
