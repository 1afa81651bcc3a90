"""The ``optimlab`` command: compare optimizers on real problems and show why they behave as they do.

    optimlab compare         sweep optimizers x learning rates x seeds on a problem, write the report
    optimlab lr-find         learning-rate range test: loss vs lr plot and a suggested lr
    optimlab trajectories    paths of several optimizers on a 2-D test function (PNG, optional GIF)
    optimlab runs            list stored runs and sweeps, or export them to CSV / JSON
    optimlab report          (re)write the report of a stored sweep
    optimlab suite           every optimizer, tuned alike, on a suite of problems: profiles, scores, advice

Exit status: 0 success, 1 failure (missing data, unusable database, a run that failed),
2 usage error (bad option, unknown name: the message lists the valid ones), 130 Ctrl-C
(143 SIGTERM, which stops a command the same way).

The lab's modules that do the work (and matplotlib) are imported inside the commands that use them;
the argument types (:mod:`optimlab.lab.running.arguments`) are imported here, for the parser.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from optimlab.lab.running.arguments import (
    folder_name,
    lr_list,
    names_list,
    non_negative_int,
    positive_float,
    positive_int,
    specs_list,
    sweep_name,
)
from optimlab.lab.training.zoo import fmt_lr

DEFAULT_DB = Path("out") / "optimlab.sqlite"
DEFAULT_OUT = Path("out")
DEFAULT_PROBLEM = "mlp-mnist"


class UsageError(Exception):
    """A bad argument found after parsing (an unknown name): reported like argparse's, exit 2."""


class Failure(Exception):
    """The command could not do its work (missing data, unusable database): exit 1."""


# -- helpers -----------------------------------------------------------------------------------

def batch_size(text: str) -> int | str | None:
    """A batch size, 'full' (None: full batch), or 'problem' (the problem's own)."""
    if text == "problem":
        return text
    if text.strip().lower() in ("full", "none"):
        return None
    return positive_int(text)


def checked(lookup: Callable[[str], Any], name: str) -> Any:
    """``lookup(name)``, turning an unknown name (KeyError / ValueError listing the valid ones) into a UsageError."""
    try:
        return lookup(name)
    except (KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        raise UsageError(message) from None


def open_store(path: Path, must_exist: bool = False):
    from optimlab.lab.running.store import Store, StoreError

    if must_exist and not path.exists():
        raise Failure(f"no results database at {path}; run `optimlab compare` first or pass --db")
    try:
        return Store(path)
    except StoreError as error:
        raise Failure(str(error)) from None


def print_table(rows: Sequence[dict[str, str]]) -> None:
    from optimlab.lab.report.sweep_report import text_table

    print(text_table(rows))


# -- compare -----------------------------------------------------------------------------------

def default_sweep_name(problem: str, settings: dict[str, Any]) -> str:
    """The default sweep name: ``compare-<problem>``, plus a digest of the settings that differ
    from the defaults, so that a sweep's runs share one set of settings and rerunning the same
    command resumes the same sweep."""
    import hashlib
    import json

    custom = {k: v for k, v in settings.items() if v is not None}
    base = f"compare-{problem}"
    if not custom:
        return base
    digest = hashlib.sha256(json.dumps(custom, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def cmd_compare(args: argparse.Namespace) -> int:
    from optimlab.lab.problems.catalog import get_problem
    from optimlab.lab.report.recommend import recommendation
    from optimlab.lab.report.sweep_report import goal_of, ranked_rows, write_report
    from optimlab.lab.running.schedule_specs import canonical_schedule
    from optimlab.lab.running.sweep import SweepSpec, run_sweep
    from optimlab.lab.training import zoo

    problem = checked(get_problem, args.problem)
    optimizers = names_list(args.optimizers) if args.optimizers else list(zoo.CLASSIC)
    for name in optimizers:
        checked(zoo.get_optimizer, name)
    schedule = checked(canonical_schedule, args.schedule) if args.schedule else None
    settings: dict[str, Any] = {
        "optimizers": optimizers if args.optimizers else None, "lrs": args.lrs, "points": args.points,
        "seeds": args.seeds, "extra_seeds": args.extra_seeds, "schedule": schedule, "max_steps": args.max_steps,
        "batch_size": args.batch_size}
    options: dict[str, Any] = {}
    if args.lrs is not None:
        options["lrs"] = args.lrs
    if args.points is not None:
        options["grid_points"] = args.points
    seeds = args.seeds or 1
    if args.seeds is not None:
        options["seeds"] = tuple(range(seeds))
    if args.extra_seeds is not None or args.seeds is not None:
        extra = 2 if args.extra_seeds is None else args.extra_seeds
        options["best_seeds"] = tuple(range(seeds, seeds + extra))
    if args.max_steps is not None:
        options["max_steps"] = args.max_steps
    if args.batch_size != "problem":
        options["batch_size"] = args.batch_size
    settings["batch_size"] = None if args.batch_size == "problem" else str(args.batch_size)
    name = args.sweep or default_sweep_name(problem.name, settings)
    try:
        spec = SweepSpec(name=name, problem=problem.name, optimizers=tuple(optimizers), schedule=schedule,
                         **options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    workers = args.workers or min(2, os.cpu_count() or 1)
    with open_store(args.db) as store:
        print(f"optimlab compare: {len(optimizers)} optimizers on {problem.name} ({problem.description}); "
              f"target: validation {problem.metric} {'>=' if problem.higher_is_better else '<='} "
              f"{problem.target:g}; sweep {spec.name!r} in {args.db}", flush=True)
        result = run_sweep(spec, store, workers=workers, progress=False if args.quiet else None)
        print(f"{result.ran} runs done now, {len(store.done_keys(spec.name))} stored for this sweep "
              f"({result.seconds:.0f} s)")
        runs = store.runs(spec.name)
        if not runs:
            raise Failure(f"sweep {spec.name!r} stored no runs")
        ranked = result.ranking()
        goal = goal_of(result, runs)
        print()
        print_table(ranked_rows(ranked, goal))
        print()
        for sentence in recommendation(ranked, goal):
            print(sentence)
        if result.interrupted:
            print(f"\ninterrupted: the finished runs are stored; run the same command again to resume sweep "
                  f"{spec.name!r}")
        if not args.no_report:
            index = write_report(store, spec.name, args.out / checked(folder_name, spec.name))
            print(f"\nreport: {index}")
    return interrupted_status() if result.interrupted else 0


# -- suite -------------------------------------------------------------------------------------

def storage_error(error: Exception, status: int) -> int:
    """A storage that cannot be used, told in one line: 2 for a bad ``--storage`` value, 1 for a
    study that cannot be used (made for another suite)."""
    print(f"optimlab suite: error: {error}", file=sys.stderr)
    return status


def cmd_suite(args: argparse.Namespace) -> int:
    from optimlab.lab.suite.storage import StorageError

    if args.worker:
        return cmd_suite_worker(args)
    from optimlab.lab.suite.setup import suite_spec

    try:
        spec, skipped = suite_spec("quick" if args.quick else "full", problems=specs_list(args.problems or ""),
                                   optimizers=names_list(args.optimizers) if args.optimizers else None,
                                   trials=args.trials, seeds=args.seeds, max_steps=args.max_steps, name=args.name,
                                   storage=args.storage, db=args.db)
    except StorageError as error:
        return storage_error(error, 2)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        return run_and_report(args, spec, skipped)
    except StorageError as error:
        return storage_error(error, 1)


def cmd_suite_worker(args: argparse.Namespace) -> int:
    """``optimlab suite --worker``: join the suite's tuning studies in the storage (those of suite
    ``--name``, or every suite's) and run their trials until their budgets are spent."""
    from optimlab.lab.suite import studies
    from optimlab.lab.suite.setup import suite_storage
    from optimlab.lab.suite.storage import StorageError
    from optimlab.lab.suite.workers import work, worker_name

    ignored = [option for option, value in (("--quick", args.quick), ("--problems", args.problems),
                                            ("--optimizers", args.optimizers), ("--trials", args.trials),
                                            ("--seeds", args.seeds), ("--max-steps", args.max_steps),
                                            ("--json", args.json), ("--jobs", args.jobs != 1)) if value]
    if ignored:
        raise UsageError(f"--worker: {', '.join(ignored)} cannot be given to a worker; expected only --storage, "
                         "--name, --db (a worker takes each study's settings from the storage; start one worker "
                         "per core)")
    try:
        url = suite_storage(args.storage, args.db)
    except StorageError as error:
        return storage_error(error, 2)

    def joins(name: str, spec: Any) -> bool:
        return studies.is_tuning(spec) and (args.name is None or spec.get("suite") == args.name)

    print(f"optimlab suite --worker {worker_name()}: joining {'suite ' + repr(args.name) if args.name else 'every suite'}"
          f" in {url}", flush=True)
    try:
        ran = work(url, studies.objective_for, studies.budget_of, pruner_of=studies.pruner_of, joins=joins,
                   wait_for_studies=args.wait)
    except StorageError as error:
        return storage_error(error, 1)
    print(f"{ran} trials run by this worker; no study it joined has budget left")
    return 0


def run_and_report(args: argparse.Namespace, spec: Any, skipped: dict[str, str]) -> int:
    from optimlab.lab.suite.export import json_summary, write_json
    from optimlab.lab.suite.report import write_suite_report
    from optimlab.lab.suite.runner import run_suite
    from optimlab.lab.suite.summary import summarize
    from optimlab.lab.suite.verdict import recommendations

    print(f"optimlab suite {spec.name!r}: {len(spec.workloads)} workloads x {len(spec.tracks)} tracks, "
          f"{spec.n_trials} trials each, seeds {', '.join(map(str, spec.seeds))}; storage {spec.storage}"
          + (f"; {args.jobs} jobs" if args.jobs > 1 else ""), flush=True)
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}")
    ran = run_suite(spec, progress=False if args.quiet else None, jobs=args.jobs)
    summary = summarize(spec)
    verdicts = recommendations(summary)
    print(f"{ran} trials and runs done now, {spec.units()} in the suite\n")
    scores = summary["profiles"]["tuned_steps"]["scores"]
    print_table([{"track": t, "score (tuned, steps)": f"{scores[t]:.3f}",
                  "score (self-tuning)": f"{summary['profiles']['self_tuning_steps']['scores'][t]:.3f}"}
                 for t in sorted(scores, key=lambda t: -scores[t])])
    print()
    for verdict in verdicts["workloads"]:
        print(verdict["text"])
    print("\n" + verdicts["overall"]["text"])
    if args.json is not None:
        print(f"\njson: {write_json(args.json, json_summary(summary, verdicts))}")
    if not args.no_report:
        print(f"report: {write_suite_report(summary, verdicts, args.out / spec.name, skipped)}")
    return 0


# -- lr-find -----------------------------------------------------------------------------------

def cmd_lr_find(args: argparse.Namespace) -> int:
    from optimlab.lab.problems.catalog import get_problem
    from optimlab.lab.report.lr_find import plot_range_test, range_test
    from optimlab.lab.training import zoo

    problem = checked(get_problem, args.problem)
    spec = checked(zoo.get_optimizer, args.optimizer)
    if args.lr_max <= args.lr_min:
        raise UsageError(f"--lr-max ({args.lr_max:g}) must be larger than --lr-min ({args.lr_min:g})")
    data = problem.load()
    model = problem.build_model(args.seed)
    size = problem.batch_size if args.batch_size == "problem" else args.batch_size
    test = range_test(model, problem.loss_fn, lambda params, lr: spec.make(params, lr), data.train,
                      lr_min=args.lr_min, lr_max=args.lr_max, steps=args.steps, batch_size=size, seed=args.seed,
                      penalty=problem.penalty, params=problem.optimizer_params(model, args.lr_min),
                      hooks=problem.loop_hooks(model), accumulate=problem.accumulate, autocast=problem.autocast)
    path = args.out / f"lr_find-{folder_name(problem.name)}-{spec.name}.png"
    loss = getattr(problem.loss_fn, "__name__", "loss").replace("_", " ")
    plot_range_test(test, path, f"Learning-rate range test: {spec.label} on {problem.name}",
                    f"training loss ({loss}, batch mean; {'full batch' if size is None else f'batches of {size}'})")
    print(f"{spec.label} on {problem.name}: {test.steps} steps from lr {test.lrs[0]:.2g} to {test.lrs[-1]:.2g} "
          f"(stopped: {test.stopped})")
    print(f"  lowest smoothed loss at lr {test.lr_min_loss:.3g}; steepest descent at lr {test.lr_steepest:.3g}")
    print(f"suggested lr: {test.suggested:.3g}  (the lowest-loss lr / 10)")
    print(f"plot: {path}")
    return 0


# -- trajectories ------------------------------------------------------------------------------

def parse_lr_overrides(items: Sequence[str], optimizers: Sequence[str]) -> tuple[float | None, dict[str, float]]:
    """``--lr`` values: a bare number for every optimizer, or ``name=value`` for one."""
    common, per = None, {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                common = positive_float(item)
                continue
            number = positive_float(value)
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"--lr {item!r}: {error}") from None
        if name.strip() not in optimizers:
            raise UsageError(f"--lr {item!r}: {name.strip()!r} is not among the optimizers drawn "
                             f"({', '.join(optimizers)})")
        per[name.strip()] = number
    return common, per


def cmd_trajectories(args: argparse.Namespace) -> int:
    from optimlab.lab.problems.functions2d import get_function
    from optimlab.lab.report.trajectories import (
        DEFAULT_OPTIMIZERS,
        DEFAULTS,
        animate_trajectories,
        plot_trajectories,
        run_trajectories,
    )
    from optimlab.lab.training import zoo

    function = checked(get_function, args.function)
    optimizers = names_list(args.optimizers) if args.optimizers else list(DEFAULT_OPTIMIZERS)
    specs = [checked(zoo.get_optimizer, name) for name in optimizers]
    steps_default, lrs_default = DEFAULTS.get(function.name, (300, {}))
    common, per = parse_lr_overrides(args.lr, optimizers)
    factories = {}
    for spec in specs:
        lr = per.get(spec.name, common if common is not None else lrs_default.get(spec.name))
        if lr is None:
            raise UsageError(f"no default learning rate for {spec.name} on {function.name}; "
                             f"pass --lr {spec.name}=VALUE")
        factories[f"{spec.name} lr={fmt_lr(lr)}"] = (lambda s, v: lambda params: s.make(params, v))(spec, lr)
    start = None
    if args.start:
        try:
            start = tuple(float(v) for v in args.start.split(","))
        except ValueError:
            start = ()
        if len(start) != 2 or not all(math.isfinite(v) for v in start):
            raise UsageError(f"--start must be two numbers 'x,y', got {args.start!r}")
    steps = args.steps or steps_default
    paths = run_trajectories(function, factories, start=start, steps=steps)
    png = plot_trajectories(function, paths, args.out / f"trajectories-{function.name}.png")
    for t in paths:
        x, y = t.points[-1]
        print(f"{t.label:<24} {t.stop_reason.value:<10} {t.steps:>6} steps  end ({x:.4g}, {y:.4g})  "
              f"f = {t.values[-1]:.4g}")
    print(f"plot: {png}")
    if args.gif:
        gif = animate_trajectories(function, paths, args.out / f"trajectories-{function.name}.gif",
                                   frames=args.frames)
        print(f"animation: {gif}")
    return 0


# -- runs and report ---------------------------------------------------------------------------

def cmd_runs(args: argparse.Namespace) -> int:
    from optimlab.lab.running.store import FORMATS

    with open_store(args.db, must_exist=True) as store:
        sweeps = store.sweeps()
        if args.sweep is not None and args.sweep not in {s["name"] for s in sweeps}:
            valid = ", ".join(s["name"] for s in sweeps) or "none stored"
            raise UsageError(f"unknown sweep {args.sweep!r}; valid names: {valid}")
        if args.export:
            fmt = args.format or args.export.suffix.lstrip(".").lower()
            if fmt not in FORMATS:
                raise UsageError(f"cannot tell the export format from {str(args.export)!r}; pass --format "
                                 f"({', '.join(FORMATS)})")
            path = store.export(args.export, fmt, sweep=args.sweep)
            print(f"exported {len(store.runs(sweep=args.sweep))} runs to {path} ({fmt})")
            return 0
        if args.sweeps or (args.sweep is None and args.problem is None and args.optimizer is None):
            print(f"{len(sweeps)} sweeps in {args.db}:")
            print_table([{"sweep": s["name"], "problem": s["problem"], "runs": str(s["runs"])} for s in sweeps]
                        if sweeps else [])
            if args.sweeps:
                return 0
            print()
        runs = store.runs(sweep=args.sweep, problem=args.problem, optimizer=args.optimizer)
        rows = [{"key": r["key"], "sweep": r["sweep"] or "", "problem": r["problem"], "optimizer": r["optimizer"],
                 "lr": fmt_lr(r["lr"]), "seed": str(r["seed"]), "stop": r["stop_reason"], "steps": str(r["steps"]),
                 "seconds": f"{r['seconds']:.2f}",
                 "to target": "" if r["steps_to_target"] is None else str(r["steps_to_target"]),
                 "best valid": fmt_metric(r["best_valid"]), "test": fmt_metric(r["test_metric"])}
                for r in runs]
        print(f"{len(rows)} runs:")
        print_table(rows)
    return 0


def fmt_metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def cmd_finetune(args: argparse.Namespace) -> int:
    from optimlab.lab.running import finetune_run
    from optimlab.lab.training.zoo import get_optimizer

    spec = checked(finetune_run.command_spec, args)
    checked(get_optimizer, args.optimizer)
    if args.lr is None:
        checked(lambda name: finetune_run.default_lr(spec, name), args.optimizer)
    with open_store(args.db) as store:
        return finetune_run.run_command(args, store, spec)


def cmd_report(args: argparse.Namespace) -> int:
    from optimlab.lab.report.sweep_report import write_report

    with open_store(args.db, must_exist=True) as store:
        sweeps = [s["name"] for s in store.sweeps()]
        if not sweeps:
            raise Failure(f"{args.db} holds no sweeps; run `optimlab compare` first")
        name = args.sweep or sweeps[-1]
        if name not in sweeps:
            raise UsageError(f"unknown sweep {name!r}; valid names: {', '.join(sweeps)}")
        index = write_report(store, name, args.out / checked(folder_name, name))
    print(f"report: {index}")
    return 0


# -- the parser --------------------------------------------------------------------------------

def add_paths(parser: argparse.ArgumentParser, db: bool = True) -> None:
    if db:
        parser.add_argument("--db", type=Path, default=DEFAULT_DB,
                            help=f"results database, an SQLite file (default: {DEFAULT_DB})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT}/)")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Help with each option's default, unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" not in text and action.option_strings and not any(action.default is v for v in
                                                                       (None, False, argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    from optimlab import __version__

    parser = argparse.ArgumentParser(
        prog="optimlab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare gradient-descent optimizers side by side on real problems.",
        epilog="Run `optimlab COMMAND --help` for a command's options. Exit status: 0 ok, 1 failure, "
               "2 usage error, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"optimlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    compare = commands.add_parser(
        "compare", formatter_class=Formatter, help="sweep optimizers x learning rates x seeds; write the report",
        description="Run every optimizer over a log-spaced learning-rate grid (phase 1), pick each one's best lr "
                    "on the validation split, re-run it with more seeds (phase 2), and write an HTML report with "
                    "plots, a ranked table and a recommendation. Runs are stored as they finish: run the same "
                    "command again to resume an interrupted sweep without redoing finished runs.")
    compare.add_argument("--problem", default=DEFAULT_PROBLEM,
                         help="problem spec, e.g. mlp-mnist, softmax-mnist, quadratic:cond=1000")
    compare.add_argument("--optimizers", default=None,
                         help="comma-separated optimizer names (default: the classic seven: sgd, momentum, "
                              "nesterov, adagrad, rmsprop, adam, adamw)")
    compare.add_argument("--lrs", type=lr_list, default=None,
                         help="learning-rate grid shared by all optimizers, comma-separated (default: a grid of "
                              "--points lrs per optimizer, centred on the problem's measured lr)")
    compare.add_argument("--points", type=positive_int, default=None,
                         help="grid points per optimizer, half a decade apart, when --lrs is not given "
                              "(default: 3)")
    compare.add_argument("--seeds", type=positive_int, default=None,
                         help="seeds per grid point, phase 1 (default: 1)")
    compare.add_argument("--extra-seeds", type=non_negative_int, default=None,
                         help="more seeds for each optimizer's best lr, phase 2 (default: 2)")
    compare.add_argument("--schedule", default=None,
                         help="learning-rate schedule spec, e.g. cosine, warmup-cosine:warmup=100")
    compare.add_argument("--max-steps", type=positive_int, default=None, help="step budget (default: the problem's)")
    compare.add_argument("--batch-size", type=batch_size, default="problem",
                         help="batch size or 'full' (default: the problem's)")
    compare.add_argument("--workers", type=positive_int, default=None,
                         help="worker processes (default: min(2, CPU cores))")
    compare.add_argument("--sweep", type=sweep_name, default=None,
                         help="sweep name in the database, and its report's folder under --out (default: derived "
                              "from the problem and settings)")
    compare.add_argument("--no-report", action="store_true", help="store the runs but write no report")
    compare.add_argument("--quiet", action="store_true", help="no progress bar")
    add_paths(compare)
    compare.set_defaults(handler=cmd_compare, command_parser=compare)

    lr_find = commands.add_parser(
        "lr-find", formatter_class=Formatter, help="learning-rate range test (Smith 2017): plot and suggestion",
        description="Train a fresh model while the learning rate grows exponentially from --lr-min to --lr-max, "
                    "stop when the smoothed loss exceeds 4x its best, plot loss vs lr and suggest an lr: the "
                    "lr of the lowest smoothed loss divided by 10.")
    lr_find.add_argument("--problem", default=DEFAULT_PROBLEM, help="problem spec")
    lr_find.add_argument("--optimizer", default="sgd", help="optimizer name")
    lr_find.add_argument("--lr-min", type=positive_float, default=1e-6, help="first learning rate")
    lr_find.add_argument("--lr-max", type=positive_float, default=10.0, help="last learning rate")
    lr_find.add_argument("--steps", type=positive_int, default=200, help="steps from --lr-min to --lr-max")
    lr_find.add_argument("--batch-size", type=batch_size, default="problem",
                         help="batch size or 'full' (default: the problem's)")
    lr_find.add_argument("--seed", type=non_negative_int, default=0, help="seed of the model and the batches")
    add_paths(lr_find, db=False)
    lr_find.set_defaults(handler=cmd_lr_find, command_parser=lr_find)

    traj = commands.add_parser(
        "trajectories", formatter_class=Formatter, help="optimizer paths on a 2-D function (PNG, optional GIF)",
        description="Run several optimizers from one start on a 2-D test function and draw their paths over its "
                    "contours (log-spaced levels).")
    traj.add_argument("--function", default="rosenbrock", help="rosenbrock, beale, saddle or rastrigin")
    traj.add_argument("--optimizers", default=None,
                      help="comma-separated optimizer names (default: sgd, momentum, adagrad, rmsprop, adam)")
    traj.add_argument("--lr", action="append", default=[], metavar="[NAME=]LR",
                      help="learning rate for all optimizers, or NAME=LR for one (repeatable; default: a "
                           "per-function choice that shows each optimizer's character)")
    traj.add_argument("--steps", type=positive_int, default=None, help="steps (default: per function)")
    traj.add_argument("--start", default=None, metavar="X,Y", help="start point (default: the function's)")
    traj.add_argument("--gif", action="store_true", help="also write an animated GIF")
    traj.add_argument("--frames", type=positive_int, default=60, help="GIF frames")
    add_paths(traj, db=False)
    traj.set_defaults(handler=cmd_trajectories, command_parser=traj)

    runs = commands.add_parser(
        "runs", formatter_class=Formatter, help="list stored runs and sweeps, or export them",
        description="List the sweeps and runs in the results database, or export runs to CSV (one row per run) "
                    "or JSON (runs with their configs and curves).")
    runs.add_argument("--sweep", default=None, help="only this sweep's runs")
    runs.add_argument("--problem", default=None, help="only this problem's runs")
    runs.add_argument("--optimizer", default=None, help="only this optimizer's runs")
    runs.add_argument("--sweeps", action="store_true", help="list the sweeps only")
    runs.add_argument("--export", type=Path, default=None, metavar="FILE", help="write the runs to FILE")
    runs.add_argument("--format", choices=("csv", "json"), default=None,
                      help="export format (default: from FILE's extension)")
    runs.add_argument("--db", type=Path, default=DEFAULT_DB, help="results database")
    runs.set_defaults(handler=cmd_runs, command_parser=runs)

    report = commands.add_parser("report", formatter_class=Formatter, help="(re)write a stored sweep's report",
                                 description="Write the HTML report of a sweep from the results database.")
    report.add_argument("--sweep", type=sweep_name, default=None,
                        help="sweep name, and its report's folder under --out (default: the latest)")
    add_paths(report)
    report.set_defaults(handler=cmd_report, command_parser=report)

    add_suite_parser(commands)

    from optimlab.lab.running.finetune_run import add_parser as add_finetune_parser

    finetune = add_finetune_parser(commands, formatter_class=Formatter, paths=False)
    add_paths(finetune)
    finetune.set_defaults(handler=cmd_finetune, command_parser=finetune)
    return parser


def add_suite_parser(commands: Any) -> None:
    suite = commands.add_parser(
        "suite", formatter_class=Formatter, help="every optimizer tuned alike on a suite of problems: profiles, "
                                                 "scores, a recommendation",
        description="Tune every optimizer of the registry, and AdamW + warm-up cosine as the baseline, with the same "
                    "number of Optuna trials on each workload (steps to a validation target), re-run each one's "
                    "best and default settings with more seeds, and write performance profiles, scores, "
                    "time-to-target tables with intervals and a recommendation (HTML report, --json). Trials "
                    "and runs are kept in the storage as they finish: run the same command again to resume.")
    suite.add_argument("--quick", action="store_true",
                       help="5 cheap workloads, 7 optimizers, 6 trials, 3 seeds (default: the full suite, every "
                            "optimizer, 20 trials, 10 seeds)")
    suite.add_argument("--problems", default=None, help="comma-separated problem specs (default: the mode's)")
    suite.add_argument("--optimizers", default=None,
                       help="comma-separated optimizer names, or 'all': every one the registry holds (default: "
                            "all; with --quick sgd, adagrad, rmsprop, adam, adamw, nadam, muon); the baseline, AdamW "
                            "+ warm-up cosine, always runs")
    suite.add_argument("--trials", type=positive_int, default=None, help="tuning trials per track and workload")
    suite.add_argument("--seeds", type=positive_int, default=None, help="seeds of the re-runs")
    suite.add_argument("--max-steps", type=positive_int, default=None,
                       help="step budget of every workload (default: each workload's)")
    suite.add_argument("--storage", default=None,
                       help="Optuna storage URL: sqlite:///file, postgresql://user@host:5432/db or mysql://... "
                            "(default: sqlite:/// the --db file)")
    suite.add_argument("--jobs", type=positive_int, default=1,
                       help="processes that run the workloads side by side, one torch thread each, the costliest "
                            "workloads first (default: 1); a suite stopped with one number of jobs resumes with any")
    suite.add_argument("--worker", action="store_true",
                       help="join the suite's tuning studies in --storage (suite --name, or every suite) and run "
                            "their trials until their budgets are spent; start it on each machine beside one "
                            "'optimlab suite --storage URL' that creates the studies, measures and reports")
    suite.add_argument("--wait", type=non_negative_int, default=600, metavar="SECONDS",
                       help="with --worker: how long to wait for a study to join (default: 600)")
    suite.add_argument("--name", type=sweep_name, default=None,
                       help="suite name: its studies' prefix and its report's folder under --out (default: from "
                            "the mode and the settings)")
    suite.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the summary as JSON to FILE")
    suite.add_argument("--no-report", action="store_true", help="write no HTML report")
    suite.add_argument("--quiet", action="store_true", help="no progress bar")
    add_paths(suite)
    suite.set_defaults(handler=cmd_suite, command_parser=suite)


def fail(parser: argparse.ArgumentParser, args: argparse.Namespace, message: str) -> NoReturn:
    """Report a usage error the way argparse does: the command's usage line, the message, exit 2."""
    getattr(args, "command_parser", parser).error(message)


#: The signal that interrupted the command (SIGTERM is turned into KeyboardInterrupt too).
interrupted_by = {"signal": int(signal.SIGINT)}


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill PID``) stop a command like Ctrl-C: a sweep then ends its worker
    processes and keeps its finished runs, instead of dying and leaving the workers running."""
    def handler(signum: int, frame: Any) -> None:
        interrupted_by["signal"] = signum
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def interrupted_status() -> int:
    """The conventional exit status of a command stopped by a signal: 128 + its number."""
    return 128 + interrupted_by["signal"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stop_on_sigterm()
    try:
        return args.handler(args)
    except UsageError as error:
        fail(parser, args, str(error))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return interrupted_status()  # 130 for Ctrl-C, 143 for SIGTERM
    except Failure as error:
        print(f"optimlab {args.command}: error: {error}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as error:  # damage the check on opening could not see, met while reading
        from optimlab.lab.running.store import unusable

        told = unusable(getattr(args, "db", "the results database"), error, untouched=False)
        print(f"optimlab {args.command}: error: {told}", file=sys.stderr)
        return 1
    except Exception as error:
        if not known_failure(error):
            raise
        print(f"optimlab {args.command}: error: {error}", file=sys.stderr)
        return 1


def known_failure(error: Exception) -> bool:
    """A failure the lab tells in one line of its own that names the file: data not installed or
    not what it should be, a checkpoint that is not one, a file that cannot be read or written."""
    from optimlab.lab.running.checkpoint import CheckpointError
    from optimlab.lab.training.data import DataFileError, DataNotFoundError

    return isinstance(error, (DataNotFoundError, DataFileError, CheckpointError, OSError))


if __name__ == "__main__":
    sys.exit(main())
