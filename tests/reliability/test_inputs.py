"""One clear line, never a traceback: damaged files and bad command-line input name what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from policylab.cli import main


def policylab(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policylab", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("policylab: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("flag", ["--dataset", "--run-name", "--config", "--env"])
def test_empty_strings_are_refused_not_read_as_the_default(flag, capsys):
    algo = "iql" if flag == "--dataset" else "ppo"
    assert main(["train", algo, flag, ""]) == 2
    err = capsys.readouterr().err
    assert f"{flag} '' is not allowed" in err


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_seeds_share_one_range_in_every_pillar(seed, capsys):
    for algo in ("ppo", "iql", "grpo"):
        assert main(["train", algo, "--seed", seed, "--steps", "1"]) == 2
        err = capsys.readouterr().err
        assert f"--seed = {seed} is not allowed: must be an integer from 0 to 4294967295" in err, err


def test_a_missing_dataset_file_says_no_such_file(tmp_path, capsys):
    missing = tmp_path / "nope.parquet"
    assert main(["train", "iql", "--dataset", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "known:" not in err


def test_an_unknown_flag_is_one_line_with_the_closest_flag():
    line = one_line_error(policylab("train", "ppo", "--learning-rat", "0.1", "--steps", "1"))
    assert "unknown flag --learning-rat for ppo" in line
    line = one_line_error(policylab("train", "ppo", "--lr_typo", "0.1", "--steps", "1"))
    assert "did you mean --lr" in line


def test_an_unwritable_results_folder_fails_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(policylab("run", "selftest", "--budget", "quick", "--results", str(blocker / "sub"),
                                    "--runs-root", str(tmp_path / "runs"), timeout=60))
    assert "--results" in line and "cannot be written" in line
    assert not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.parametrize("content", ["null", "42", '"text"', "[1, 2]"])
def test_a_dataset_sidecar_that_is_not_an_object(tmp_path, content):
    from policylab.core.errors import PolicylabError
    from policylab.data import load_dataset

    (tmp_path / "d.json").write_text(content)
    (tmp_path / "d.parquet").write_bytes(b"")
    with pytest.raises(PolicylabError, match="not an object of metadata fields"):
        load_dataset(tmp_path / "d")
    json.loads(content)  # the content itself is valid JSON: the check is about its shape
