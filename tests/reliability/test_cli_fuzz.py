"""Fuzzing `policylab train` with hypothesis (fixed seed, bounded examples): every combination of good and bad
values either trains or fails with exactly one `policylab: error:` line and exit 2, never a traceback."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policylab.cli import main

VALUES = {
    "--lr": ["0.001", "0", "-1", "nan", "inf", "1e308", "abc", ""],
    "--num-envs": ["1", "2", "0", "-3", "100000000000", "2.5", ""],
    "--hidden": [["8"], ["8", "8"], ["0"], ["-1"], ["100000"], ["16384"] * 8, [""]],
    "--gamma": ["0.99", "1.5", "-0.1", "nan"],
    "--seed": ["0", "7", "-1", "4294967296", "1180591620717411303424", "x"],
    "--run-name": ["ok", "", "../escape", "a/b", ".hidden"],
    "--env": ["CartPole-v1", "", "NoSuchEnv-v0"],
    "--minibatch-size": ["8", "0", "1000000000"],
    "--seconds": ["5", "0", "-2", "nan"],
    "--no-such-flag": ["1"],
}

_counter = itertools.count()


def fuzz(values: dict, examples: int, at_most: int):
    """Hypothesis at a fixed seed: up to `at_most` of the flags, each with one of its listed values."""
    flags = st.dictionaries(st.sampled_from(sorted(values)), st.just(None), max_size=at_most).flatmap(
        lambda chosen: st.fixed_dictionaries({flag: st.sampled_from(values[flag]) for flag in chosen}))

    def decorate(test):
        return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])(
            given(flags=flags)(test))
    return decorate


@fuzz(VALUES, examples=150, at_most=4)
def test_train_accepts_or_refuses_in_one_line(tmp_path_factory, capsys, flags):
    root = tmp_path_factory.mktemp(f"fuzz{next(_counter)}")
    argv = ["train", "ppo", "--steps", "16", "--rollout-steps", "8", "--epochs", "1", "--runs-root", str(root)]
    for flag, value in flags.items():
        argv += [flag, *(value if isinstance(value, list) else [value])]
    argv += ["--seconds", "20"] if "--seconds" not in flags else []
    _holds_to_one_line(argv, capsys)


RUN_VALUES = {
    "--budget": ["quick", "full", "", "huge"],
    "--seeds": ["1", "2", "0", "-4", "100000000000", "x"],
    "--workers": ["1", "0", "-1", "100000", "two"],
    "--backend": ["local", "slurm", ""],
    "--results": ["", "/proc/nope", None],
    "--runs-root": ["", None],
    "--address": ["", "nohostport"],
}


@fuzz(RUN_VALUES, examples=40, at_most=3)
def test_run_accepts_or_refuses_in_one_line(tmp_path_factory, capsys, flags):
    root = tmp_path_factory.mktemp(f"fuzzrun{next(_counter)}")
    flags = {"--budget": "quick", "--seeds": "1", "--results": str(root), "--runs-root": str(root / "runs"), **flags}
    argv = ["run", "selftest"]
    for flag, value in flags.items():
        argv += [flag, str(root / "out") if value is None else value]
    _holds_to_one_line(argv, capsys)


def _holds_to_one_line(argv: list[str], capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals (e.g. an int flag given 'x')
        code = exit_.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err[-1500:])
    assert "Traceback" not in err, (argv, err[-1500:])
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("policylab: error: "), (argv, err[-1500:])
