"""policylab's command line: list | train | run | report | ledger."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from policylab.core.errors import PolicylabError

# wide when piped, so that paths and verdicts are not wrapped mid-word in logs
console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=True)


def load_registries() -> None:
    """Import the packages whose modules register algorithms, environments and experiments, then plugins."""
    import policylab.catalog  # noqa: F401
    import policylab.experiments  # noqa: F401
    import policylab.lm  # noqa: F401
    import policylab.offline  # noqa: F401
    import policylab.rl  # noqa: F401
    from policylab.core.plugins import load_plugins

    load_plugins()


RUN_SPEC_KEYS = ("algo", "env", "task", "dataset", "steps", "seed", "seconds", "run_name", "runs_root", "config",
                 "evals", "eval_episodes", "checkpoints")
"""What a run spec file holds (a YAML/JSON file with an `algo` key); `config` maps the algorithm's fields."""
SCHEDULE_KEYS = ("evals", "eval_episodes", "checkpoints")


def _read_run_spec(path: str) -> tuple[dict, dict]:
    """(run settings, algorithm field overrides) from --config: a run spec (it has `algo`) or, as before, a
    mapping of algorithm fields only."""
    from policylab.core.config import load_overrides

    raw = load_overrides(path)
    if "algo" not in raw:
        return {}, raw
    unknown = [k for k in raw if k not in RUN_SPEC_KEYS]
    if unknown:
        raise PolicylabError(f"run spec {path}: unknown key {unknown[0]!r}; a run spec holds "
                             f"{', '.join(RUN_SPEC_KEYS)} (algorithm fields go under config:)")
    fields = raw.get("config") or {}
    if not isinstance(fields, dict):
        raise PolicylabError(f"run spec {path}: config must be a mapping of algorithm fields, got "
                             f"{type(fields).__name__}")
    return {k: v for k, v in raw.items() if k != "config"}, fields


def _list(args: argparse.Namespace) -> int:
    from policylab.core.registry import ALGORITHMS, DATASETS, EXPERIMENTS
    from policylab.envs.factory import known_env_ids

    what = args.what
    if what in ("all", "algorithms"):
        table = Table("algorithm", "pillar", "default env", "what it is", title="algorithms")
        for name in ALGORITHMS:
            spec = ALGORITHMS.get(name)
            table.add_row(name, spec.pillar, spec.default_env, spec.summary)
        console.print(table)
    if what in ("all", "experiments"):
        table = Table("experiment", "kind", "claim", title="experiments")
        for name in EXPERIMENTS:
            exp = EXPERIMENTS.get(name)
            table.add_row(name, exp.kind, exp.claim)
        console.print(table)
    if what in ("all", "datasets"):
        console.print(f"datasets: {', '.join(DATASETS.names()) or '(none yet)'}")
    if what == "environments":
        console.print("\n".join(known_env_ids()))
    return 0


def default_run_name(algo: str, env_id: object, offline: bool) -> str:
    """<algo>-<env, task or dataset stem>, with characters a run directory may not hold (the ':' of
    rg:<dataset>, the ',' of a task mix, a reasoning-gym config's '?', '=' and '&') as '_'."""
    where = Path(str(env_id)).stem if offline else str(env_id)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{algo}-{where}")


def _train(args: argparse.Namespace, rest: list[str]) -> int:
    import tyro

    from policylab.core.config import from_dict, validate, validation_deferred
    from policylab.core.registry import ALGORITHMS
    from policylab.core.run import RunDir
    from policylab.core.seeding import check_seed, set_threads
    from policylab.envs.factory import check_env_id

    _refuse_empty(args, "env", "task", "dataset", "run_name", "config", "runs_root")
    settings, overrides = _read_run_spec(args.config) if args.config else ({}, {})
    if args.log is not None:
        from policylab.core.tracking import parse

        os.environ["POLICYLAB_LOG"] = ",".join(parse(args.log, "--log")) or "none"
    for key in ("algo", "env", "task", "dataset", "steps", "seed", "seconds", "run_name", "runs_root"):
        if getattr(args, key) is None and key in settings:  # flags override the file
            setattr(args, key, settings[key])
    args.seed = 0 if args.seed is None else args.seed
    args.runs_root = args.runs_root or "runs"
    if args.help or not args.algo:
        print(args.train_help)
        if not args.algo:
            print(f"algorithms: {', '.join(ALGORITHMS.names())}")
            return 0 if args.help else 2
        tyro.cli(ALGORITHMS.get(args.algo).config, args=["--help"], prog=f"policylab train {args.algo} [config flags]")
    spec = ALGORITHMS.get(args.algo)
    multiturn = False
    if spec.pillar == "lm":
        from policylab.lm.multiturn import MULTITURN_ENVS, EnvConfig

        multiturn = issubclass(spec.config, EnvConfig)
    if multiturn:
        if args.task or args.dataset:
            raise PolicylabError(f"{args.algo} plays a multi-turn environment: use --env "
                                 f"({', '.join(MULTITURN_ENVS.names())})")
        env_id = args.env or spec.default_env
        MULTITURN_ENVS.get(env_id)  # unknown names fail here, listing the known ones
    elif spec.pillar == "lm":
        from policylab.lm.tasks import get_task

        if args.env or args.dataset:
            raise PolicylabError(f"{args.algo} trains on a task, not an environment: use --task (e.g. --task gcd)")
        env_id = args.task or spec.default_env
        get_task(env_id)  # unknown task names fail here, listing the known ones
    elif spec.pillar == "offline":
        from policylab.catalog import build_dataset
        from policylab.core.registry import DATASETS

        if args.env or args.task:
            raise PolicylabError(f"{args.algo} learns from a dataset: use --dataset (e.g. --dataset pendulum-mix10)")
        dataset = args.dataset or spec.default_env
        if dataset in DATASETS:
            env_id = str(build_dataset(dataset))  # built from its fixed seeds when missing
        elif Path(dataset).with_suffix(".parquet").exists():
            env_id = dataset
        elif "/" in dataset or dataset.endswith((".parquet", ".json")):
            raise PolicylabError(f"--dataset {dataset!r}: no such file ({Path(dataset).with_suffix('.parquet')} "
                                 "does not exist)")
        else:
            DATASETS.get(dataset)  # fails listing the known datasets
    else:
        if args.task or args.dataset:
            raise PolicylabError(f"{args.algo} trains on an environment: use --env")
        env_id = check_env_id(args.env or spec.default_env)
    steps = spec.default_steps if args.steps is None else args.steps
    if steps <= 0:
        raise PolicylabError(f"--steps = {steps} is not allowed: must be > 0")
    if args.seconds is not None and args.seconds <= 0:
        raise PolicylabError(f"--seconds = {args.seconds} is not allowed: must be > 0")
    check_seed(args.seed, "--seed")
    _refuse_unknown_flags(spec.config, rest, args.algo)
    schedule = {k: settings[k] for k in SCHEDULE_KEYS if k in settings}
    if schedule:
        import inspect

        accepted = inspect.signature(spec.train).parameters
        refused = [k for k in schedule if k not in accepted]
        if refused:
            raise PolicylabError(f"run spec {args.config}: {args.algo} takes no {refused[0]!r} (its trainer accepts "
                                 f"{', '.join(k for k in SCHEDULE_KEYS if k in accepted) or 'none of them'})")
        for key, value in schedule.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicylabError(f"run spec {args.config}: {key} = {value!r} is not allowed: must be an integer "
                                     ">= 0")
    base = spec.config()
    if overrides:
        base = from_dict(spec.config, overrides, base=base, source=args.config)
    with validation_deferred():  # tyro would wrap our one-line error in a panel
        cfg = _parse_config_flags(tyro, spec.config, rest, base, args.algo)
    cfg = validate(cfg)
    set_threads()
    name = args.run_name or default_run_name(args.algo, env_id, spec.pillar == "offline")
    run = RunDir(args.runs_root, name, "main", args.seed)
    if args.fresh:
        run.clear()
    from policylab.core.atomic import atomic_write_json
    from policylab.core.config import to_dict

    if spec.pillar == "offline":
        where = {"dataset": args.dataset or spec.default_env}
    else:
        where = {"task" if spec.pillar == "lm" and not multiturn else "env": env_id}
    resolved = {"algo": args.algo, **where, "steps": steps, "seed": args.seed, "seconds": args.seconds,
                "run_name": name, "runs_root": args.runs_root, **schedule, "config": _jsonable(to_dict(cfg))}
    atomic_write_json(run.path / "run.json", {k: v for k, v in resolved.items() if v is not None})
    summary = spec.train(cfg, env_id=env_id, seed=args.seed, steps=steps, run=run,
                         max_seconds=args.seconds, progress=None, **schedule)
    table = Table("", "value", title=f"{args.algo} on {env_id}, seed {args.seed}")
    table.add_row("updates", str(summary["steps"]))
    if "env_steps" in summary:
        table.add_row("environment steps", str(summary["env_steps"]))
    if "samples" in summary:
        table.add_row("sampled responses", str(summary["samples"]))
    for key, value in summary.get("initial_eval", {}).items():
        table.add_row(f"{key} (before)", f"{value:.4g}")
    for key, value in summary["eval"].items():
        table.add_row(key, f"{value:.4g}")
    table.add_row("run directory", str(run.path))
    console.print(table)
    return 0


def _jsonable(values: dict) -> dict:
    """Config values as JSON writes them back (tuples as lists), so a run spec file can hold them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _refuse_empty(args: argparse.Namespace, *names: str) -> None:
    """An empty value must not silently mean the default (a run trained on another dataset than asked)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not str(value).strip():
            raise PolicylabError(f"--{name.replace('_', '-')} {value!r} is not allowed: give a value or leave the "
                                 "flag out for the default")


def _refuse_unknown_flags(config: type, rest: list[str], algo: str) -> None:
    """One line naming an unknown config flag and the closest known one, instead of tyro's panel."""
    import dataclasses
    import difflib

    known = set()
    for f in dataclasses.fields(config):
        for name in {f.name, f.name.replace("_", "-")}:
            known |= {f"--{name}", f"--no-{name}", f"--no_{name}"}
    for token in rest:
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            close = difflib.get_close_matches(flag, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise PolicylabError(f"unknown flag {flag} for {algo}{hint} (`policylab train {algo} --help` lists "
                                 "its flags)")


def _parse_config_flags(tyro, config: type, rest: list[str], base, algo: str):
    """tyro's parse of the config flags; a value it cannot read becomes one line, not its help panel."""
    import contextlib
    import io

    panel = io.StringIO()
    try:
        with contextlib.redirect_stderr(panel), contextlib.redirect_stdout(panel):
            return tyro.cli(config, args=rest, default=base, prog=f"policylab train {algo}")
    except SystemExit as exit_:
        if not exit_.code:
            print(panel.getvalue(), end="")  # --help: the panel is what was asked for
            raise
        flags = " ".join(rest)
        raise PolicylabError(f"cannot read the config flags `{flags}` for {algo}: {_panel_reason(panel.getvalue())} "
                             f"(`policylab train {algo} --help` lists each flag and its type)") from None


def _panel_reason(text: str) -> str:
    """The gist of a tyro error panel: its lines without box drawing, joined, the usage lines left out."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip(" │╭╮╰╯─━┃┏┓┗┛|-").strip()
        if line and not line.startswith(("usage:", "For full helptext", "policylab train")):
            lines.append(line)
    return "; ".join(lines[:4])[:300] or "tyro refused them"


def _check_writable(folder: str, flag: str) -> None:
    """Fail before the work, not after it, when an output folder cannot be written."""
    import tempfile

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as err:
        raise PolicylabError(f"{flag} {folder!r} cannot be written: {err.strerror or err}") from None


def _lm(args: argparse.Namespace) -> int:
    from policylab.core.seeding import set_threads
    from policylab.lm.pretrain import BASE_MODELS, base_model_path, load_base, pretrain
    from policylab.lm.tasks import get_task

    set_threads()
    recipe = BASE_MODELS.get(args.name)
    changes = {k: v for k, v in (("task", args.task), ("seed", args.seed), ("max_steps", args.steps),
                                 ("target_pass", args.target_pass)) if v is not None}
    if changes:
        get_task(changes.get("task", getattr(recipe, "env_task", recipe.task)))
        if hasattr(recipe, "env") and "task" in changes:  # a multi-turn recipe: the task its retry questions use
            changes["env_task"] = changes.pop("task")
        recipe = recipe.replace(**changes)
    label = args.name if not changes else recipe
    path = pretrain(label, progress=None, force=args.force)
    _, _, meta = load_base(path)
    table = Table("", "value", title=f"base model {args.name}" + (" (modified recipe)" if changes else ""))
    table.add_row("file", str(base_model_path(label)))
    table.add_row("task", getattr(recipe, "env", None) or recipe.task)
    table.add_row("updates", f"{meta['steps']} (stopped by {meta['stopped_by']})")
    table.add_row("validation pass rate (greedy)", f"{meta['val_pass']:.3f}")
    for key, value in meta["test"].items():
        table.add_row(f"test {key}", f"{value:.3f}")
    console.print(table)
    if "greedy_acc" in meta["test"] and not 0.1 <= meta["test"]["greedy_acc"] <= 0.6:
        console.print(f"note: held-out pass rate {meta['test']['greedy_acc']:.2f} is outside 10-60%; "
                      "RL experiments want room above the base")
    return 0


def _data(args: argparse.Namespace) -> int:
    from policylab.catalog import build_dataset, dataset_path
    from policylab.core.registry import DATASETS
    from policylab.core.seeding import set_threads
    from policylab.data import load_dataset
    from policylab.data.measures import trajectory_quality

    set_threads()
    if args.data_command == "list":
        table = Table("dataset", "env", "built", "what it is", title="datasets")
        for name in DATASETS:
            recipe = DATASETS.get(name)
            table.add_row(name, recipe.env_id, "yes" if dataset_path(name).exists() else "", recipe.description)
        console.print(table)
        return 0
    DATASETS.get(args.name)  # unknown names fail here, listing the known ones
    if args.data_command == "build":
        path = build_dataset(args.name, force=args.force, progress=None)
        console.print(f"{args.name}: {path}")
        return 0
    path = dataset_path(args.name)
    if not path.exists():
        raise PolicylabError(f"dataset {args.name} is not built yet: run `policylab data build {args.name}`")
    data = load_dataset(path)
    meta = data.metadata
    returns = data.episode_returns().numpy()
    table = Table("", "value", title=f"dataset {args.name}")
    table.add_row("file", str(path))
    table.add_row("env", meta["env_id"])
    table.add_row("episodes / transitions", f"{data.num_episodes} / {len(data)}")
    table.add_row("terminations / truncations", f"{int(data.terminals.sum())} / {int(data.timeouts.sum())}")
    table.add_row("episode return mean [min, max]", f"{returns.mean():.1f} [{returns.min():.1f}, {returns.max():.1f}]")
    table.add_row("reference min / max", f"{meta['ref_min_score']:.1f} / {meta['ref_max_score']:.1f}")
    table.add_row("normalized score of the mean return", f"{float(data.normalized_score(returns.mean())):.1f}")
    measures = meta.get("measures")
    if measures:  # computed at build time against the suite's replay dataset (data/measures.py)
        table.add_row("TQ / SACo / lSACo", f"{measures['tq']:.3f} / {measures['saco']:.3f} / {measures['lsaco']:.3f} "
                                           f"(reference: {meta['measure_reference']['dataset']})")
    else:
        tq = trajectory_quality(float(returns.mean()), meta["ref_min_score"], meta["ref_max_score"])
        table.add_row("TQ (against the references)", f"{tq:.3f}; SACo needs a replay reference (cartpole-* have one)")
    for key in ("kind", "expert_percent", "behaviour"):
        if key in meta:
            table.add_row(key, str(meta[key]))
    console.print(table)
    return 0


def _print_report(report: dict, paths: dict[str, Path]) -> None:
    table = Table("arm", "IQM", "95% CI", "per seed", title=f"{report['experiment']} [{report['budget']}]")
    for name, arm in report["arms"].items():
        table.add_row(name, f"{arm['iqm']:.4g}", f"[{arm['ci95'][0]:.4g}, {arm['ci95'][1]:.4g}]",
                      ", ".join(f"{v:.4g}" for v in arm["values"]))
    console.print(table)
    verdicts = Table("comparison", "effect", "95% CI", "verdict")
    for c in report["comparisons"]:
        verdicts.add_row(c["label"], f"{c['effect']:.4g}", f"[{c['ci95'][0]:.4g}, {c['ci95'][1]:.4g}]", c["verdict"])
    console.print(verdicts)
    for kind, path in paths.items():
        console.print(f"{kind:>4}: {path}")


def _run(args: argparse.Namespace) -> int:
    from policylab.core.registry import EXPERIMENTS
    from policylab.core.report import build_report, git_commit, write_report
    from policylab.core.runner import execute

    if args.all_claims:
        names = [n for n in EXPERIMENTS if EXPERIMENTS.get(n).kind == "claim"]
        if not names:
            console.print("no claim checks are registered yet")
            return 0
    elif args.experiment:
        names = [args.experiment]
    else:
        raise PolicylabError("run needs an experiment name or --all-claims; `policylab list experiments` lists them")
    _refuse_empty(args, "results", "runs_root", "address")
    _check_writable(args.results, "--results")
    _check_writable(args.runs_root, "--runs-root")
    command = shlex.join(["policylab", *sys.argv[1:]])
    for name in names:
        exp = EXPERIMENTS.get(name)
        seeds = exp.select_seeds(args.budget, args.seeds)
        start, commit = time.perf_counter(), git_commit()  # the code that runs, even if the tree changes later
        results = execute(exp, args.budget, seeds, backend=args.backend, workers=args.workers,
                          address=args.address, runs_root=args.runs_root)
        report = build_report(exp, args.budget, results, time.perf_counter() - start, command, args.backend,
                              commit)
        _print_report(report, write_report(report, args.results))
    return 0


def _report(args: argparse.Namespace) -> int:
    from policylab.core.report import load_report, write_report

    report = load_report(args.results_json)
    _print_report(report, write_report(report, Path(args.results_json).parent))
    return 0


def _ledger(args: argparse.Namespace) -> int:
    from policylab.core.atomic import atomic_write_text
    from policylab.ledger import check_ledger, render_ledger

    if args.check:
        diff = check_ledger(args.out, args.results)
        if diff:
            shown = "\n".join(diff[:40]) + (f"\n... {len(diff) - 40} more lines" if len(diff) > 40 else "")
            print(f"policylab: error: {args.out} differs from the ledger the results give; run `policylab ledger`"
                  f"\n{shown}", file=sys.stderr)
            return 1
        console.print(f"{args.out} is current")
        return 0
    atomic_write_text(Path(args.out), render_ledger(args.results))
    console.print(f"wrote {args.out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with policylab's error format: one line, exit 2 (argparse prints its usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"policylab: error: {message} (`{self.prog} --help` lists the arguments)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="policylab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list algorithms, experiments, environments or datasets")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "algorithms", "experiments", "environments", "datasets"])
    p = sub.add_parser("train", help="train one algorithm; extra --flags set its config fields", add_help=False,
                       epilog="Config flags follow the algorithm name, e.g. `policylab train ppo --lr 0.001`; "
                              "`policylab train ppo --help` lists them.")
    p.add_argument("-h", "--help", action="store_true", help="show this help and the algorithm's config flags")
    parser.train_parser = p  # its help is printed above the algorithm's config flags
    p.add_argument("algo", nargs="?")
    p.add_argument("--env", default=None, help="environment id (default: the algorithm's)")
    p.add_argument("--steps", type=int, default=None,
                   help="environment steps (online RL, default 100000), updates (language models, default 200) "
                        "or gradient steps (offline, default 10000)")
    p.add_argument("--task", default=None, help="task or task mix for language-model algorithms (default: mix)")
    p.add_argument("--dataset", default=None, help="dataset name or file for offline algorithms (built when missing)")
    p.add_argument("--seconds", type=float, default=None, help="optional wall-clock budget")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--run-name", default=None)
    p.add_argument("--runs-root", default=None, help="where run directories go (default runs)")
    p.add_argument("--config", default=None,
                   help="a run spec (YAML/JSON with algo, env or dataset, steps, seed, evals, checkpoints and "
                        "config: {fields}; each run writes its own as run.json) or a file of config fields only")
    p.add_argument("--fresh", action="store_true", help="start the run over instead of resuming or reporting it")
    p.add_argument("--log", default=None, help="trackers beside metrics.jsonl: a comma list of tensorboard, wandb, "
                                               "mlflow, or none (default: tensorboard when installed)")
    p = sub.add_parser("run", help="run an experiment (claim check) and write its report")
    p.add_argument("experiment", nargs="?")
    p.add_argument("--all-claims", action="store_true", help="run every registered claim check")
    p.add_argument("--budget", default="full", choices=["quick", "full"])
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the experiment's list)")
    p.add_argument("--backend", default="local", choices=["local", "ray"])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--address", default=None, help="Ray cluster address (default: start Ray locally)")
    p.add_argument("--results", default="results")
    p.add_argument("--runs-root", default="runs")
    p = sub.add_parser("lm", help="language-model tools: `lm pretrain` builds a base model")
    lm_sub = p.add_subparsers(dest="lm_command", required=True)
    p = lm_sub.add_parser("pretrain", help="supervised warm start of the tiny GPT into a cached base model")
    p.add_argument("--name", default="tiny-mix",
                   help="base-model recipe (tiny-mix, tiny-gcd, tiny-retry, tiny-search, ...)")
    p.add_argument("--task", default=None, help="task or mix, e.g. gcd or gcd,lcm or mix (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="most updates (stops earlier at the target pass rate)")
    p.add_argument("--target-pass", type=float, default=None, help="validation pass rate that ends training")
    p.add_argument("--force", action="store_true", help="retrain even when the cached model exists")
    p = sub.add_parser("data", help="offline datasets: list, build <id>, info <id>")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    data_sub.add_parser("list", help="the named datasets and whether they are built")
    p = data_sub.add_parser("build", help="build a named dataset from its fixed seeds (skipped when valid)")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="rebuild even when a valid copy exists")
    p = data_sub.add_parser("info", help="size, returns and reference scores of a built dataset")
    p.add_argument("name")
    p = sub.add_parser("report", help="re-render a results JSON into its markdown table and plot")
    p.add_argument("results_json")
    p = sub.add_parser("ledger", help="write the claim ledger (docs/methods.md) from results/*.json")
    p.add_argument("--check", action="store_true", help="fail when the committed ledger differs from the results")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="docs/methods.md")
    return parser


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # so that `kill` cleans up like Ctrl-C
    parser = build_parser()
    # `train` passes unknown flags on to the algorithm's config (tyro); other commands reject them
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        args.train_help = parser.train_parser.format_help()
    if rest and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        load_registries()
        if args.command == "list":
            return _list(args)
        if args.command == "train":
            return _train(args, rest)
        if args.command == "run":
            return _run(args)
        if args.command == "lm":
            return _lm(args)
        if args.command == "data":
            return _data(args)
        if args.command == "ledger":
            return _ledger(args)
        return _report(args)
    except PolicylabError as err:
        print(f"policylab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("policylab: interrupted; the newest checkpoint is kept, rerun the command to resume", file=sys.stderr)
        return 130
