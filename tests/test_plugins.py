"""Plugins: the docs' example package, installed into the venv, reaches `policylab list`, `train` and the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policylab.core import plugins

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "policylab-a2c"


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_plugin(tmp_path):
    proc = pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(EXAMPLE))
    assert proc.returncode == 0, proc.stderr[-2000:]
    yield
    pip("uninstall", "-y", "policylab-a2c")


def policylab_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policylab", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


@pytest.mark.xdist_group("plugin-install")
def test_an_installed_plugin_is_listed_trained_and_usable_from_python(installed_plugin, tmp_path):
    listed = policylab_cli("list", "algorithms", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "a2c" in listed.stdout and "advantage actor-critic" in listed.stdout
    trained = policylab_cli("train", "a2c", "--steps", "400", "--runs-root", str(tmp_path / "runs"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "runs" / "a2c-CartPole-v1" / "main" / "seed0" / "summary.json").exists()
    program = ("import policylab\n"
               "agent = policylab.agent_class('a2c')('CartPole-v1', seed=0).learn(400)\n"
               "agent = type(agent).load(agent.save('a2c.pt'))\n"
               "print(type(agent).__name__, agent.predict([0.0, 0.0, 0.0, 0.0]))\n")
    used = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert used.returncode == 0, used.stderr[-2000:]
    assert used.stdout.startswith("A2C ")


def test_a_broken_plugin_is_skipped_with_one_line(monkeypatch, capsys):
    class Point:
        def __init__(self, name, value, target):
            self.name, self.value, self._target = name, value, target

        def load(self):
            if isinstance(self._target, Exception):
                raise self._target
            return self._target

    calls = []
    points = [Point("broken", "nowhere.module", ImportError("No module named 'nowhere'")),
              Point("fine", "fine:setup", lambda: calls.append("fine"))]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points if group == plugins.GROUP else [])
    monkeypatch.setattr(plugins, "_loaded", None)
    loaded = plugins.load_plugins()
    assert loaded == {"broken": "ImportError: No module named 'nowhere'", "fine": None}
    assert calls == ["fine"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plugin 'broken' (nowhere.module) failed to load" in err
    assert plugins.load_plugins() is loaded and calls == ["fine"]  # once per process
