"""Bad input at the command line: one clear line, a non-zero exit, nothing damaged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policylab.cli import main

FAST_PPO = ["--steps", "512", "--num-envs", "2", "--rollout-steps", "64", "--epochs", "1"]


def fails(capsys, argv, pattern):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}, stderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("policylab: error: ")
    import re

    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def test_unknown_names_list_the_known_ones(capsys, tmp_path):
    fails(capsys, ["train", "ppp", "--runs-root", str(tmp_path)],
          r"unknown algorithm 'ppp'; did you mean 'ppo'\? known: (?=.*\bppo\b)(?=.*\bsac\b)(?=.*\btd3\b)")
    fails(capsys, ["train", "ppo", "--env", "CartPol-v1", "--runs-root", str(tmp_path)],
          r"unknown environment 'CartPol-v1'; did you mean 'CartPole-v1'")
    fails(capsys, ["run", "quickstrat", "--results", str(tmp_path)],
          r"unknown experiment 'quickstrat'; did you mean 'quickstart'\? known: .*quickstart")


def test_language_model_algorithms_take_tasks(capsys, tmp_path):
    fails(capsys, ["train", "grpo", "--task", "gdc", "--runs-root", str(tmp_path)],
          r"unknown task 'gdc'; did you mean 'gcd'\? known: between, count_bits, gcd, lcm")
    fails(capsys, ["train", "grpo", "--env", "CartPole-v1", "--runs-root", str(tmp_path)], r"use --task")
    fails(capsys, ["train", "ppo", "--task", "gcd", "--runs-root", str(tmp_path)], r"use --env")
    fails(capsys, ["train", "grpo", "--task", "gcd", "--advantage", "gpro", "--runs-root", str(tmp_path)],
          r"GRPOConfig.advantage = 'gpro' is not allowed: known advantage transforms: .*grpo")
    fails(capsys, ["lm", "pretrain", "--name", "huge"], r"unknown base model 'huge'.* known: tiny-gcd, tiny-mix")
    fails(capsys, ["lm", "pretrain", "--task", "gdc"], r"unknown task 'gdc'")


def test_offline_algorithms_take_datasets(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYLAB_DATA", str(tmp_path / "data"))
    fails(capsys, ["train", "bc", "--dataset", "pendulum-mx10", "--runs-root", str(tmp_path)],
          r"unknown dataset 'pendulum-mx10'; did you mean 'pendulum-mix10'")
    fails(capsys, ["train", "bc", "--env", "Pendulum-v1", "--runs-root", str(tmp_path)], r"use --dataset")
    fails(capsys, ["train", "ppo", "--dataset", "pendulum-mix10", "--runs-root", str(tmp_path)], r"use --env")
    fails(capsys, ["data", "info", "pendulum-mix5"], r"not built yet: run `policylab data build pendulum-mix5`")


def test_budgets_must_be_positive(capsys, tmp_path):
    fails(capsys, ["train", "ppo", "--steps", "0", "--runs-root", str(tmp_path)], r"--steps = 0 .* must be > 0")
    fails(capsys, ["train", "ppo", "--seconds", "-5", "--runs-root", str(tmp_path)], r"--seconds = -5.0 .* > 0")
    fails(capsys, ["run", "selftest", "--seeds", "0", "--results", str(tmp_path)], r"seeds = 0 .* between 1 and 1000")
    fails(capsys, ["run", "selftest", "--workers", "0", "--results", str(tmp_path)], r"workers = 0 .* >= 1")


def test_config_files_and_values_are_validated(capsys, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: 0.001\nepochs: [1, 2\n")
    fails(capsys, ["train", "ppo", "--config", str(broken), "--runs-root", str(tmp_path)],
          r"config file .*broken.yaml is not valid YAML: .* at line \d+")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"lr": 0.001,}')
    fails(capsys, ["train", "ppo", "--config", str(bad_json), "--runs-root", str(tmp_path)],
          r"bad.json is not valid JSON: .* line 1")
    negative = tmp_path / "negative.json"
    negative.write_text('{"lr": -1}')
    fails(capsys, ["train", "ppo", "--config", str(negative), "--runs-root", str(tmp_path)],
          r"PPOConfig.lr = -1.0 is not allowed: must be > 0")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("learning_rate: 0.1\n")
    fails(capsys, ["train", "ppo", "--config", str(unknown), "--runs-root", str(tmp_path)],
          r"unknown field 'learning_rate' .* known: .*lr")
    fails(capsys, ["train", "ppo", "--gamma", "1.5", "--runs-root", str(tmp_path)],
          r"PPOConfig.gamma = 1.5 is not allowed: must be >= 0 and <= 1")
    assert not (tmp_path / "ppo-CartPole-v1").exists() or not any((tmp_path / "ppo-CartPole-v1").rglob("*.pt"))


def test_checkpoint_of_another_algorithm_and_truncated_checkpoint(capsys, tmp_path):
    assert main(["train", "ppo", "--run-name", "shared", "--runs-root", str(tmp_path), *FAST_PPO]) == 0
    capsys.readouterr()
    folder = tmp_path / "shared" / "main" / "seed0" / "checkpoints"
    checkpoints = sorted(folder.glob("*.pt"))
    assert checkpoints
    before = {p: p.read_bytes() for p in checkpoints}
    fails(capsys, ["train", "sac", "--run-name", "shared", "--runs-root", str(tmp_path), "--steps", "300",
                   "--learning-starts", "100"],
          r"was written by algorithm 'ppo', cannot load it into 'sac'")
    assert {p: p.read_bytes() for p in sorted(folder.glob("*.pt"))} == before

    for path, data in before.items():
        path.write_bytes(data[: len(data) // 2])
    truncated = {p: p.read_bytes() for p in before}
    fails(capsys, ["train", "ppo", "--run-name", "shared", "--runs-root", str(tmp_path), *FAST_PPO],
          r"no loadable checkpoint in .*truncated or not a policylab checkpoint")
    assert {p: p.read_bytes() for p in before} == truncated


def test_unwritable_run_directory(capsys, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the runs root should be")
    fails(capsys, ["train", "ppo", "--runs-root", str(blocker), *FAST_PPO], r"cannot create run directory")
    assert blocker.read_text() == "a file where the runs root should be"


def test_bad_results_file(capsys, tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    fails(capsys, ["report", str(junk)], r"junk.json is not valid JSON")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    fails(capsys, ["report", str(other)], r"not a policylab results file \(missing experiment")
    fails(capsys, ["report", str(tmp_path / "missing.json")], r"cannot read report .*missing.json")


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "policylab", "train", "nope", "--runs-root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("policylab: error: unknown algorithm 'nope'")


def test_train_then_list_and_report_round_trip(capsys, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "selftest", "--budget", "quick", "--results", str(results),
                 "--runs-root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "reproduced" in out and "selftest.quick.json" in out
    png = results / "selftest.quick.png"
    png.unlink()
    assert main(["report", str(results / "selftest.quick.json")]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["list"]) == 0
    assert "quickstart" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--lr", "--epochs"])
def test_malformed_flag_values_exit_non_zero_without_traceback(tmp_path, flag):
    proc = subprocess.run([sys.executable, "-m", "policylab", "train", "ppo", flag, "abc",
                           "--runs-root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not any(Path(tmp_path).rglob("*.pt"))


def test_train_help_lists_the_algorithms_config_flags(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "sac", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "--steps" in out and "--init-alpha" in out and "--learning-starts" in out


def test_sigterm_stops_a_parallel_run_and_its_workers(tmp_path):
    import os
    import signal
    import time

    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "policylab", "run", "quickstart", "--budget", "quick",
                             "--workers", "2", "--results", str(tmp_path / "results"),
                             "--runs-root", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").rglob("metrics.jsonl")):  # a worker is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.2)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers left running: {[p.pid for p in alive]}"
