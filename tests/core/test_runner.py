"""The experiment runner on every backend, and Ray's network exposure when started locally."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile

import pytest

from policylab.core.errors import ConfigError
from policylab.core.registry import EXPERIMENTS
from policylab.core.report import build_report, write_report
from policylab.core.runner import execute, ray_session, run_task
from policylab.experiments import selftest  # noqa: F401  (registers it)

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.fixture
def ray_alone():
    """One Ray test at a time on this machine, whichever xdist worker runs it.

    Two local Ray instances starting together race on Ray's shared auth-token file
    (~/.ray/auth_token), and a driver joining a cluster then waits forever for its GCS.
    """
    with open(os.path.join(tempfile.gettempdir(), "policylab-ray-tests.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_selftest(tmp_path, backend, workers):
    exp = EXPERIMENTS.get("selftest")
    results = execute(exp, "quick", exp.select_seeds("quick"), backend=backend, workers=workers,
                      runs_root=tmp_path / "runs", progress=False)
    return exp, results


def test_backends_agree_value_for_value(tmp_path):
    exp, serial = run_selftest(tmp_path, "local", 1)
    _, pool = run_selftest(tmp_path, "local", 2)
    key = lambda rs: [(r["arm"], r["seed"], r["value"]) for r in rs]
    assert key(serial) == key(pool)
    assert len(serial) == len(exp.arms) * 3
    report = build_report(exp, "quick", serial, wall_s=1.0, command="policylab run selftest --budget quick")
    assert report["verdict"] == "reproduced"  # UCB1 beats random by a wide margin at 500 pulls
    paths = write_report(report, tmp_path / "results")
    stored = json.loads(paths["json"].read_text())
    assert stored["command"] == "policylab run selftest --budget quick"
    assert stored["arms"]["ucb1"]["values"] == [r["value"] for r in serial if r["arm"] == "ucb1"]


@pytest.mark.xdist_group("ray")
@pytest.mark.timeout(240)
def test_ray_backend_matches_local_and_listens_on_loopback_only(tmp_path, ray_alone, monkeypatch):
    import psutil  # installed with the ray extra by `make test`; a missing one is a failure
    from ray._private import ray_constants

    # as if another package (verl) had imported Ray before policylab set its loopback-only variable
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)

    exp, local = run_selftest(tmp_path, "local", 1)
    with ray_session(workers=2) as ray:
        remote = ray.remote(num_cpus=1)(run_task)
        task = {"experiment": "selftest", "module": "policylab.experiments.selftest", "arm": "ucb1",
                "seed": 0, "budget": "quick", "runs_root": str(tmp_path / "ray-runs")}
        assert ray.get(remote.remote(task))["value"] == local[0]["value"]
        listening = []
        for proc in psutil.Process().children(recursive=True):
            try:
                conns = proc.net_connections(kind="inet")
            except psutil.Error:
                continue
            listening += [(proc.name(), c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
        assert listening, "found no Ray process listening at all: the check would prove nothing"
        exposed = [entry for entry in listening if entry[1] not in LOOPBACK]
        assert not exposed, f"Ray processes listen beyond loopback: {exposed}"
    # the same code path through `execute` (it starts and stops its own Ray)
    _, through_ray = run_selftest(tmp_path, "ray", 2)
    assert [(r["arm"], r["seed"], r["value"]) for r in through_ray] == \
        [(r["arm"], r["seed"], r["value"]) for r in local]


def test_bad_backend_workers_and_budget_are_refused(tmp_path):
    exp = EXPERIMENTS.get("selftest")
    with pytest.raises(ConfigError, match="backend = 'slurm'.*local, ray"):
        execute(exp, "quick", (0,), backend="slurm", runs_root=tmp_path)
    with pytest.raises(ConfigError, match="workers = 0"):
        execute(exp, "quick", (0,), workers=0, runs_root=tmp_path)
    with pytest.raises(ConfigError, match="budget = 'huge'.*quick, full"):
        execute(exp, "huge", (0,), runs_root=tmp_path)


@pytest.mark.xdist_group("ray")
@pytest.mark.timeout(240)
def test_ray_backend_joins_a_running_cluster_by_address(tmp_path, ray_alone):
    """`--address` takes the code path a real cluster takes: a head started by `ray start`."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # a loopback head for this test alone: no auth token, so it never touches ~/.ray/auth_token
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    # --block keeps `ray start` in the foreground and takes its processes down when it exits, so
    # the test stops its own head only, never another Ray on the machine (as `ray stop` would)
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, f"ray start exited with {head.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not open its port within 120 s"
                time.sleep(0.5)
        exp, local = run_selftest(tmp_path, "local", 1)
        joined = execute(exp, "quick", exp.select_seeds("quick"), backend="ray", workers=2,
                         address=f"127.0.0.1:{port}", runs_root=tmp_path / "cluster-runs", progress=False)
        assert [(r["arm"], r["seed"], r["value"]) for r in joined] == \
            [(r["arm"], r["seed"], r["value"]) for r in local]
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        pointer = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # left behind by --block
        if pointer.exists() and pointer.read_text().strip().endswith(f":{port}"):
            pointer.unlink()
