"""Run an experiment's arms x seeds on a backend: local (serial or a process pool) or Ray.

Every backend runs the same task function, so a sweep on a laptop and on a Ray cluster differ
only in where `run_task` executes. Workers get one torch thread each.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from policylab.core.errors import ConfigError, PolicylabError
from policylab.core.experiment import Experiment, check_budget
from policylab.core.provenance import clear_inputs_read, inputs_read
from policylab.core.registry import EXPERIMENTS
from policylab.core.run import RunDir, progress_bar
from policylab.core.seeding import set_threads

BACKENDS = ("local", "ray")


def make_tasks(exp: Experiment, budget: str, seeds: Iterable[int], runs_root: str | Path) -> list[dict]:
    module = exp.run_arm.__module__
    return [{"experiment": exp.id, "module": module, "arm": arm, "seed": seed, "budget": budget,
             "runs_root": str(runs_root)} for seed in seeds for arm in exp.arms]


def run_task(task: dict) -> dict[str, Any]:
    """Run one (arm, seed); importable by name so process pools and Ray can ship it."""
    set_threads()
    importlib.import_module(task["module"])  # registers the experiment in this process
    exp: Experiment = EXPERIMENTS.get(task["experiment"])
    # one folder per budget: a full run must never resume from a quick run's checkpoints
    run = RunDir(task["runs_root"], f"{exp.id}-{task['budget']}", task["arm"], task["seed"])
    start = time.perf_counter()
    clear_inputs_read()
    result = exp.run_arm(task["arm"], task["seed"], task["budget"], run)
    return {"arm": task["arm"], "seed": task["seed"], **asdict(result),
            "wall_s": time.perf_counter() - start, "run_dir": str(run.path), **inputs_read()}


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies, even by SIGKILL (Linux; a no-op elsewhere).

    A worker never outlives the command that started it: no orphans holding memory and run directories."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _init_worker() -> None:
    die_with_parent()
    set_threads()


def bound_workers(workers: int, tasks: int, backend: str) -> int:
    """Workers the run uses: at most one per task, and on the local backend at most one per core; says so."""
    if workers < 1:
        raise ConfigError(f"workers = {workers} is not allowed: must be >= 1")
    limit, why = tasks, f"{tasks} task{'s' if tasks != 1 else ''}"
    cores = os.cpu_count() or 1
    if backend == "local" and cores < limit:
        limit, why = cores, f"{cores} CPU core{'s' if cores != 1 else ''}"
    if workers > limit:
        print(f"policylab: workers = {workers} capped at {limit} ({why})", file=sys.stderr)
        return max(limit, 1)
    return workers


def _run_local(tasks: list[dict], workers: int, on_done: Callable[[dict], None]) -> list[dict]:
    if workers == 1:
        results = []
        for task in tasks:
            results.append(run_task(task))
            on_done(results[-1])
        return results
    results = []
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
    try:
        for result in pool.imap_unordered(run_task, tasks):
            results.append(result)
            on_done(result)
        pool.close()
    except BaseException:
        pool.terminate()  # an interrupted run takes its workers down with it; checkpoints remain
        raise
    finally:
        pool.join()
    return results


# Ray's node IP decides where its gRPC servers and agents listen. With clusters disabled (the
# switch Ray uses on macOS and Windows) a local Ray takes 127.0.0.1 and every process it starts
# listens on loopback alone; tests/core/test_runner.py checks that. It must be set before `import ray`.
_RAY_LOCAL_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


RAY_CONNECT_TIMEOUT_S = 10.0
"""How long `--address` may take to accept a connection before the run fails (Ray itself would wait on)."""


def check_reachable(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail with one line when nothing listens at a Ray address's host:port within `timeout` seconds."""
    hostport = address.split("://")[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"address = {address!r} is not allowed: must be host:port (e.g. 127.0.0.1:6379) or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise PolicylabError(f"cannot reach a Ray cluster at {address} within {timeout:g} s "
                             f"({err.strerror or type(err).__name__}); is `ray start --head` running there?") from None


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def ray_session(workers: int, address: str | None = None) -> Iterator[Any]:
    """Start Ray on loopback with `workers` CPUs (or join `address`); shut down what we started."""
    local = not address or _is_loopback(address)
    if local:  # a driver joining a loopback head must also take 127.0.0.1 as its node address
        os.environ.update(_RAY_LOCAL_ONLY)
    try:
        import ray
    except ImportError:
        raise PolicylabError("backend 'ray' needs Ray: pip install 'policylab[ray]'") from None
    if local:  # Ray reads the variable when first imported; a package that imported it earlier (verl) came first
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    if ray.is_initialized():
        yield ray
        return
    if address and address != "auto":
        check_reachable(address)
    if address:
        ray.init(address=address, log_to_driver=False, **({"_node_ip_address": "127.0.0.1"} if local else {}))
    else:
        # address="local": a new Ray of our own, even where a `ray start` cluster runs on this machine
        ray.init(address="local", num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_ray(tasks: list[dict], workers: int, address: str | None,
             on_done: Callable[[dict], None]) -> list[dict]:
    with ray_session(workers, address) as ray:
        remote = ray.remote(num_cpus=1)(run_task)
        pending = [remote.remote(task) for task in tasks]
        results = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            results.append(ray.get(done[0]))
            on_done(results[-1])
        return results


def execute(exp: Experiment, budget: str, seeds: Iterable[int], backend: str = "local",
            workers: int = 1, address: str | None = None, runs_root: str | Path = "runs",
            progress: bool | None = None) -> list[dict]:
    check_budget(budget)
    if backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r} is not allowed: must be one of {', '.join(BACKENDS)}")
    tasks = make_tasks(exp, budget, seeds, runs_root)
    workers = bound_workers(workers, len(tasks), backend)
    with progress_bar(progress) as bar:
        job = bar.add_task(f"{exp.id} [{budget}]", total=len(tasks), rate="")

        def on_done(result: dict) -> None:
            bar.update(job, advance=1, rate=f"last: {result['arm']} seed{result['seed']} = {result['value']:.4g}")

        if backend == "local":
            results = _run_local(tasks, workers, on_done)
        else:
            results = _run_ray(tasks, workers, address, on_done)
    return sorted(results, key=lambda r: (list(exp.arms).index(r["arm"]), r["seed"]))
