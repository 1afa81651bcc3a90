"""``optimlab finetune``: one fine-tuning run, resumable, stored with the other results.

    optimlab finetune                                   # MiniLM on Rotten Tomatoes, AdamW, the recipe
    optimlab finetune --optimizer momentum --lr 0.03 --layer-decay 0.8 --autocast auto
    optimlab finetune --problem finetune-fashion

The run is :func:`optimlab.lab.running.runs.execute` of a :class:`~optimlab.lab.running.runs.RunConfig` (so the
same code as in sweeps), with a progress bar showing the loss and the last evaluation's
metrics, and a checkpoint written atomically every ``--checkpoint-every`` steps to
``<out>/checkpoints/<run key>.pt``. Kill it at any moment and run the same command again: it
goes on from the last checkpoint, and ends with exactly the result an uninterrupted run gives.
The finished run is saved in the results database, in the sweep ``finetune/<problem>`` unless
``--sweep`` names another, where ``optimlab runs`` lists it and ``optimlab report --sweep
finetune/<problem>`` draws it beside the other optimizers fine-tuned on the same problem; its checkpoint (the trained weights
and optimizer state) is then deleted unless ``--keep-checkpoint``.

The recipe's options (``--head-scale``, ``--layer-decay``, ``--clip``, ``--unfreeze``,
``--patience``, ``--accumulate``, ``--autocast``) become parameters of the problem spec
(:mod:`optimlab.lab.problems.finetune`), so runs with different recipes are different runs.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimlab.lab.problems.catalog import get_problem
from optimlab.lab.problems.problem import Problem
from optimlab.lab.running import checkpoint as checkpoints
from optimlab.lab.running.arguments import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    sweep_name,
)
from optimlab.lab.running.runs import RunConfig, RunResult, execute
from optimlab.lab.running.store import Store
from optimlab.lab.training.specs import format_spec, parse_spec
from optimlab.lab.training.zoo import fmt_lr

DEFAULT_PROBLEM = "finetune-sentiment"
DEFAULT_OPTIMIZER = "adamw"
#: Command-line options that set the recipe, as parameters of the problem spec.
RECIPE_OPTIONS = ("head_scale", "layer_decay", "clip", "unfreeze", "patience", "accumulate", "autocast")


@dataclass
class Outcome:
    """What :func:`finetune` did: the run's config and key, its result (None when only the stored
    one was reported), the stored row, the step it resumed from, and the wall-clock seconds."""

    config: RunConfig
    key: str
    result: RunResult | None
    stored: dict[str, Any] | None
    resumed_from: int
    wall: float


def problem_spec(problem: str, **recipe: Any) -> str:
    """``problem`` with the recipe options that are not None added to its parameters;
    ``autocast="auto"`` becomes "bf16" where this CPU computes bfloat16 natively, else "off"
    (the problem resolves it)."""
    name, params = parse_spec(problem, "problem")
    for key, value in recipe.items():
        if value is not None:
            params[key] = value
    return get_problem(format_spec(name, params) if params else name).name


def default_lr(problem: str, optimizer: str) -> float:
    """The problem's measured learning rate for ``optimizer``; ValueError (saying which are
    measured) if there is none."""
    spec = get_problem(problem)
    lr = spec.default_lr(optimizer)  # unknown optimizer names raise, listing the valid ones
    if lr is None:
        raise ValueError(f"no measured learning rate for {optimizer!r} on {spec.name!r} (measured: "
                         f"{', '.join(f'{k} {v:g}' for k, v in spec.lrs.items()) or 'none'}); give --lr")
    return lr


def finetune(problem: str, optimizer: str = DEFAULT_OPTIMIZER, lr: float | None = None, *, seed: int = 0,
             schedule: str | None = None, kwargs: dict[str, Any] | None = None, store: Store,
             checkpoint_dir: Path, checkpoint_every: int | None = None, restart: bool = False,
             keep_checkpoint: bool = False, progress: bool | None = None, sweep: str | None = None,
             threads: int | None = None, log: Any = print) -> Outcome:
    """Run (or resume, or report) one fine-tuning run and store it; see the module docstring."""
    spec: Problem = get_problem(problem)
    lr = default_lr(spec.name, optimizer) if lr is None else lr
    config = RunConfig.for_problem(spec, optimizer, lr, seed, schedule=schedule, kwargs=kwargs or {},
                                   stop_at_target=False)
    key = config.key()
    sweep = sweep or f"finetune/{spec.name}"
    path = Path(checkpoint_dir) / f"{key}.pt"
    started = time.perf_counter()
    checkpoints.remove_temporaries(path)  # left by a run killed while it saved a checkpoint
    if restart:
        path.unlink(missing_ok=True)
    elif key in store.done_keys():
        store.link(sweep, key, "finetune")
        stored = next(row for row in store.runs() if row["key"] == key)
        log(f"run {key} is already stored (use --restart to run it again)")
        return Outcome(config, key, None, stored, config.max_steps, time.perf_counter() - started)
    resumed_from = 0
    if path.exists():
        saved = checkpoints.load(path, key)
        resumed_from = int(saved["loop"]["steps"]) if saved is not None else 0
        log(f"resuming run {key} from step {resumed_from} ({path})")
    else:
        log(f"run {key}: {spec.description}")
    log(f"{optimizer} lr {fmt_lr(lr)}, {config.max_steps} steps of batch {config.batch_size}, seed {seed}")
    result = execute(config, progress=progress, threads=threads, checkpoint=path, checkpoint_every=checkpoint_every)
    wall = time.perf_counter() - started
    if result.stop_reason.value == "interrupted":
        log(f"interrupted: the checkpoint {path} keeps the run up to its last save; run the same command to resume")
        return Outcome(config, key, result, None, resumed_from, wall)
    store.save(config, result, sweep=sweep, phase="finetune")
    if not keep_checkpoint:
        path.unlink(missing_ok=True)
    stored = next(row for row in store.runs() if row["key"] == key)
    return Outcome(config, key, result, stored, resumed_from, wall)


def summary(outcome: Outcome) -> str:
    """Plain-language lines about a finished run."""
    row = outcome.stored or {}
    metric = row.get("metric", "accuracy")
    lines = [f"{row.get('problem', outcome.config.problem)}  {row.get('optimizer', outcome.config.optimizer)} "
             f"lr {fmt_lr(outcome.config.lr)}: {row.get('stop_reason')} after {row.get('steps')} steps"]

    def number(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    lines.append(f"  validation {metric}: best {number(row.get('best_valid'))}, final {number(row.get('final_valid'))}"
                 f"; test {metric} {number(row.get('test_metric'))}")
    seconds = row.get("seconds")
    lines.append(f"  training time {seconds:.1f} s (evaluation excluded)" if seconds is not None else "")
    if row.get("steps_to_target") is not None:
        lines.append(f"  reached the target {row.get('target'):g} at step {row['steps_to_target']} "
                     f"({row['seconds_to_target']:.1f} s)")
    return "\n".join(line for line in lines if line)


def add_parser(subparsers: Any, formatter_class: Any = argparse.ArgumentDefaultsHelpFormatter,
               paths: bool = True) -> argparse.ArgumentParser:
    """The ``finetune`` subcommand's parser (its handler is :func:`run_command`); ``paths``
    adds ``--db`` and ``--out`` (a caller with its own shared options leaves them out)."""
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a pretrained model (resumable; stored with the other runs)",
        description="Fine-tune a pretrained model on a fine-tuning problem with one optimizer and the fine-tuning "
                    "recipe (head at 10x lr, no decay for biases and norms, warm-up + linear decay, clipping), "
                    "with a progress bar and atomic checkpoints. Kill it and run the same command again: it resumes "
                    "where it was. The finished run is stored in the results database.",
        formatter_class=formatter_class)
    parser.add_argument("--problem", default=DEFAULT_PROBLEM,
                        help="problem spec, e.g. finetune-sentiment:train=500 or finetune-fashion")
    parser.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, help="optimizer name (as in compare)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="body learning rate (default: the measured one)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the new head and the batch order")
    parser.add_argument("--schedule", default=None, help="schedule spec (default: warmup-linear:warmup=0.1)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=None,
                        help="weight decay of the decaying parameters (default: the optimizer's)")
    parser.add_argument("--head-scale", type=positive_float, default=None,
                        help="head lr / body lr (problem default 10)")
    parser.add_argument("--layer-decay", type=positive_float, default=None,
                        help="layer-wise lr decay in (0, 1] (1: off)")
    parser.add_argument("--clip", type=non_negative_float, default=None,
                        help="gradient-norm cap (0: off; problem default 1)")
    parser.add_argument("--unfreeze", type=non_negative_int, default=None,
                        help="gradual unfreezing: steps per stage (0: off)")
    parser.add_argument("--patience", type=non_negative_int, default=None, help="early stopping: evaluations (0: off)")
    parser.add_argument("--accumulate", type=positive_int, default=None, help="micro-batches per optimizer step")
    parser.add_argument("--autocast", choices=("off", "bf16", "auto"), default="auto",
                        help="bfloat16 autocast of the forward passes; auto: where the CPU computes bf16 natively "
                             "(AVX512-BF16, AMX), else off")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=None,
                        help="steps between checkpoints (default: the evaluation interval)")
    parser.add_argument("--restart", action="store_true", help="discard a checkpoint or stored run, run again")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="keep the final checkpoint (trained weights) after storing the run")
    parser.add_argument("--sweep", type=sweep_name, default=None,
                        help="sweep the run is stored in (default: finetune/<problem>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if paths:
        parser.add_argument("--db", type=Path, default=Path("out") / "optimlab.sqlite", help="results database")
        parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (checkpoints/ inside)")
    return parser


def command_spec(args: argparse.Namespace) -> str:
    """The ``finetune`` command's problem spec: ``--problem`` with the recipe options applied."""
    return problem_spec(args.problem, **{name: getattr(args, name) for name in RECIPE_OPTIONS})


def run_command(args: argparse.Namespace, store: Store | None = None, spec: str | None = None) -> int:
    """Run the ``finetune`` subcommand; exit code 0 (done), 1 (failed: diverged), 130 (interrupted).
    ``spec``: :func:`command_spec` of ``args`` if the caller has it already."""
    spec = command_spec(args) if spec is None else spec
    kwargs = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    with (Store(args.db) if store is None else contextlib.nullcontext(store)) as store:
        outcome = finetune(spec, args.optimizer, args.lr, seed=args.seed, schedule=args.schedule, kwargs=kwargs,
                           store=store, checkpoint_dir=Path(args.out) / "checkpoints",
                           checkpoint_every=args.checkpoint_every, restart=args.restart,
                           keep_checkpoint=args.keep_checkpoint, progress=False if args.quiet else None,
                           sweep=args.sweep, threads=args.threads)
    if outcome.stored is None:
        return 130
    print(summary(outcome))
    sweep = args.sweep or f"finetune/{outcome.config.problem}"
    print(f"stored as run {outcome.key} in {args.db} (sweep {sweep!r}; `optimlab report --sweep {sweep}` "
          f"draws it); wall time {outcome.wall:.1f} s")
    return 1 if outcome.stored.get("diverged") else 0
