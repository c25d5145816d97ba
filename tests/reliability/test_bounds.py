"""Nothing unbounded: worker counts are capped and told, seeds are bounded, workers die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import policylab.experiments  # noqa: F401,E402 (registers selftest)
from policylab.core.errors import ConfigError
from policylab.core.experiment import MAX_SEEDS
from policylab.core.registry import EXPERIMENTS
from policylab.core.runner import bound_workers


def test_workers_are_capped_at_the_tasks_and_the_cores(capsys):
    assert bound_workers(100_000, 4, "ray") == 4
    assert "workers = 100000 capped at 4 (4 tasks)" in capsys.readouterr().err
    cores = os.cpu_count() or 1
    assert bound_workers(100_000, 10_000, "local") == min(cores, 10_000)
    assert f"capped at {cores} ({cores} CPU core" in capsys.readouterr().err
    assert bound_workers(1, 4, "local") == 1 and capsys.readouterr().err == ""
    with pytest.raises(ConfigError, match="workers = 0 is not allowed"):
        bound_workers(0, 4, "local")


def test_seed_counts_are_bounded():
    exp = EXPERIMENTS.get("selftest")
    for count in (0, -1, MAX_SEEDS + 1, 10**11):
        with pytest.raises(ConfigError, match=f"seeds = {count} is not allowed: must be between 1 and {MAX_SEEDS}"):
            exp.select_seeds("quick", count)
    assert len(exp.select_seeds("quick", 7)) == 7


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


SLOW_EXPERIMENT = """
import time
from policylab.core.experiment import ArmResult, Comparison, Experiment
from policylab.core.registry import EXPERIMENTS

def run_arm(arm, seed, budget, run):
    time.sleep(120)  # busy: a worker that only reads its task pipe between tasks would not notice the parent die
    return ArmResult(0.0)

EXPERIMENTS.add("slow-toy", Experiment(id="slow-toy", claim="c", arms={"a": {}, "b": {}},
    comparisons=(Comparison("a", "b"),), metric="m", direction="higher",
    seeds={"quick": (0, 1), "full": (0, 1)}, run_arm=run_arm))
"""

DRIVER = """
import sys
import slow_toy
from policylab.core.registry import EXPERIMENTS
from policylab.core.runner import execute
execute(EXPERIMENTS.get("slow-toy"), "quick", (0, 1), workers=2, runs_root=sys.argv[1], progress=False)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_busy_workers_die_when_their_parent_is_killed(tmp_path):
    (tmp_path / "slow_toy.py").write_text(SLOW_EXPERIMENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "runs")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, workers = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            # spawn starts a resource tracker too; the pool's workers are the children running spawn_main
            workers = [c for c in _children(proc.pid) if b"spawn_main" in open(f"/proc/{c}/cmdline", "rb").read()]
            if len(workers) == 2 and all((tmp_path / "runs" / "slow-toy-quick" / arm).is_dir() for arm in "ab"):
                break  # both workers are inside their task
            time.sleep(0.1)
        assert len(workers) == 2, "the pool's workers never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        alive = [w for w in workers if _alive(w)]
        for w in alive:
            os.kill(w, signal.SIGKILL)
        assert not alive, "workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_an_unreachable_ray_address_fails_within_its_timeout(tmp_path):
    # a loopback port where nothing listens: Ray's own client would keep retrying
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "policylab", "run", "selftest", "--budget", "quick",
                             "--backend", "ray", "--address", "127.0.0.1:1", "--results", str(tmp_path),
                             "--runs-root", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in result.stderr
    assert time.monotonic() - start < 60
