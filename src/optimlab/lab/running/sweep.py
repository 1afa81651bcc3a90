"""Sweeps: optimizers x learning-rate grid x seeds, then the best learning rate with more seeds.

:func:`run_sweep` runs a :class:`SweepSpec` in two phases:

1. *grid*: every optimizer at every learning rate of its grid, with the spec's ``seeds``;
2. *best*: for each optimizer, its best learning rate (:func:`pick_best`) with ``best_seeds``
   more seeds, started as soon as that optimizer's grid is complete.

Every run is saved to the :class:`~optimlab.lab.running.store.Store` the moment it finishes. Before
running anything the sweep asks the store which runs it already has: runs of this sweep are
skipped, and runs another sweep stored (same config, same key) are linked rather than run again.
So a sweep that was interrupted, by Ctrl-C or by a kill, resumes where it stopped when started
again; finished runs are never redone.

With ``workers > 1`` runs execute in that many worker processes (``spawn``: a fresh
interpreter, no state shared with the caller), each with one torch thread: the models here are
small, and one thread per run on each core beats several threads fighting over the same cores.
Ctrl-C stops a sweep cleanly: runs not yet started are cancelled, runs in progress are
abandoned (their workers ended), and every finished run stays stored; the returned result has
``interrupted=True``. A sweep killed outright (SIGKILL, a crash) takes its workers with it
(:func:`die_with_parent`): none goes on running for nothing.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import ctypes
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from optimlab.lab.problems.catalog import get_problem
from optimlab.lab.problems.problem import Problem
from optimlab.lab.running.runs import RunConfig, RunResult, execute
from optimlab.lab.running.schedule_specs import canonical_schedule
from optimlab.lab.running.store import Store
from optimlab.lab.training.loop import StopReason
from optimlab.lab.training.zoo import CLASSIC, fmt_lr, get_optimizer

GRID, BEST = "grid", "best"
#: "Use the problem's value" for SweepSpec.batch_size and max_steps.
DEFAULT = "default"

#: ``callback(config, result, phase, reused)`` after every run that finishes or is found stored.
Callback = Callable[[RunConfig, RunResult | None, str, bool], None]


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep.

    ``lrs``: None (each optimizer's grid from the problem: ``grid_points`` log-spaced rates
    centred on the problem's measured rate, half a decade apart, or the optimizer's generic grid
    when the problem has none), one sequence shared by all optimizers, or a mapping optimizer ->
    sequence. ``seeds``: the grid's seeds; ``best_seeds``: the extra seeds for each optimizer's
    best rate. ``batch_size`` and ``max_steps``: ``"default"`` for the problem's (batch_size None
    is full batch). ``kwargs``: optimizer -> extra optimizer arguments. ``schedule``: a schedule
    spec (:mod:`optimlab.lab.running.schedule_specs`) applied to every run.
    """

    name: str
    problem: str
    optimizers: tuple[str, ...] = CLASSIC
    lrs: Sequence[float] | Mapping[str, Sequence[float]] | None = None
    grid_points: int = 3
    seeds: tuple[int, ...] = (0,)
    best_seeds: tuple[int, ...] = (1, 2)
    schedule: str | None = None
    batch_size: int | str | None = DEFAULT
    max_steps: int | str = DEFAULT
    kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stop_at_target: bool = True

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"SweepSpec: name must be a non-empty string, got {self.name!r}")
        fix("problem", get_problem(self.problem).name)
        optimizers = (self.optimizers,) if isinstance(self.optimizers, str) else tuple(self.optimizers)
        if not optimizers:
            raise ValueError("SweepSpec: optimizers must name at least one optimizer")
        for name in optimizers:
            get_optimizer(name)
        if len(set(optimizers)) != len(optimizers):
            raise ValueError(f"SweepSpec: optimizers repeat a name: {list(optimizers)}")
        fix("optimizers", optimizers)
        for name in ("seeds", "best_seeds"):
            seeds = tuple(getattr(self, name))
            bad = any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)
            if bad or len(set(seeds)) != len(seeds):
                raise ValueError(f"SweepSpec: {name} must be distinct ints >= 0, got {list(seeds)}")
            fix(name, seeds)
        if not self.seeds:
            raise ValueError("SweepSpec: seeds must hold at least one seed")
        if isinstance(self.grid_points, bool) or not isinstance(self.grid_points, int) or self.grid_points < 1:
            raise ValueError(f"SweepSpec: grid_points must be an int >= 1, got {self.grid_points!r}")
        fix("schedule", canonical_schedule(self.schedule))
        if self.lrs is not None:
            grids = self.lrs if isinstance(self.lrs, Mapping) else {name: self.lrs for name in optimizers}
            missing = [name for name in optimizers if name not in grids]
            if missing:
                raise ValueError(f"SweepSpec: lrs has no grid for {missing}; give one for each of {list(optimizers)}")
            fixed = {}
            for name in optimizers:
                grid = tuple(sorted({check_lr(lr) for lr in grids[name]}))  # exactly as given
                if not grid:
                    raise ValueError(f"SweepSpec: the learning-rate grid of {name!r} is empty")
                fixed[name] = grid
            fix("lrs", fixed if isinstance(self.lrs, Mapping) else fixed[optimizers[0]])
            if not isinstance(self.lrs, Mapping) and any(fixed[n] != self.lrs for n in optimizers):
                fix("lrs", fixed)
        unknown_kwargs = set(self.kwargs) - set(optimizers)
        if unknown_kwargs:
            raise ValueError(f"SweepSpec: kwargs for optimizers not in the sweep: {sorted(unknown_kwargs)}")
        fix("kwargs", {name: dict(self.kwargs[name]) for name in sorted(self.kwargs)})

    @property
    def problem_obj(self) -> Problem:
        return get_problem(self.problem)

    def grid(self, optimizer: str) -> tuple[float, ...]:
        """The learning rates of ``optimizer``'s grid."""
        if self.lrs is None:
            return self.problem_obj.lr_grid(optimizer, self.grid_points)
        return self.lrs[optimizer] if isinstance(self.lrs, Mapping) else tuple(self.lrs)

    def config(self, optimizer: str, lr: float, seed: int) -> RunConfig:
        return RunConfig.for_problem(self.problem_obj, optimizer, lr, seed,
                                     **({} if self.batch_size == DEFAULT else {"batch_size": self.batch_size}),
                                     **({} if self.max_steps == DEFAULT else {"max_steps": self.max_steps}),
                                     schedule=self.schedule, kwargs=self.kwargs.get(optimizer, {}),
                                     stop_at_target=self.stop_at_target)

    def grid_configs(self, optimizer: str) -> list[RunConfig]:
        return [self.config(optimizer, lr, seed) for lr in self.grid(optimizer) for seed in self.seeds]

    def best_configs(self, optimizer: str, lr: float) -> list[RunConfig]:
        return [self.config(optimizer, lr, seed) for seed in self.best_seeds if seed not in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        lrs = self.lrs if not isinstance(self.lrs, Mapping) else {k: list(v) for k, v in self.lrs.items()}
        return {"name": self.name, "problem": self.problem, "optimizers": list(self.optimizers),
                "lrs": list(lrs) if isinstance(lrs, tuple) else lrs, "grid_points": self.grid_points,
                "seeds": list(self.seeds), "best_seeds": list(self.best_seeds), "schedule": self.schedule,
                "batch_size": self.batch_size, "max_steps": self.max_steps, "kwargs": self.kwargs,
                "stop_at_target": self.stop_at_target,
                "grids": {name: list(self.grid(name)) for name in self.optimizers}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        return cls(**{k: v for k, v in data.items() if k != "grids"})


def check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"SweepSpec: learning rates must be positive finite numbers, got {lr!r}")
    return float(lr)


# -- summaries ------------------------------------------------------------------------------------

def median(values: Iterable[float | None]) -> float | None:
    """The median, counting None as +inf (a run that never got there); None if it is infinite
    or there are no values."""
    items = [math.inf if v is None else v for v in values]
    if not items:
        return None
    value = statistics.median(items)
    return None if math.isinf(value) or math.isnan(value) else value


def median_metric(values: Iterable[float | None]) -> float | None:
    """The median of the values that exist (None if none do)."""
    items = [v for v in values if v is not None]
    return statistics.median(items) if items else None


@dataclass(frozen=True)
class LrSummary:
    """One learning rate of one optimizer, over its runs (grid and best phase alike)."""

    lr: float
    runs: int
    diverged: float  # fraction of runs
    reached: float  # fraction of runs that reached the target
    steps_to_target: float | None  # median, a run that missed counting as infinite
    best_valid: float | None  # median over the runs that have one
    final_valid: float | None


@dataclass(frozen=True)
class OptimizerSummary:
    """One optimizer in a sweep: its best learning rate and the medians over that rate's seeds.

    ``best_lr`` is None when every rate diverged. ``diverged`` is the fraction of all its runs
    (every rate) that diverged: a measure of how touchy it is about the learning rate.
    """

    optimizer: str
    label: str
    best_lr: float | None
    seeds: tuple[int, ...]
    runs: int
    reached: float
    steps_to_target: float | None
    seconds_to_target: float | None
    best_valid: float | None
    final_valid: float | None
    test_metric: float | None
    diverged: float
    by_lr: tuple[LrSummary, ...]


@dataclass(frozen=True)
class SweepResult:
    """A sweep's outcome per optimizer, plus bookkeeping: ``ran`` runs executed now, ``reused``
    runs found stored, ``interrupted`` (Ctrl-C), ``complete`` (every planned run is stored)."""

    name: str
    problem: str
    metric: str
    higher_is_better: bool
    target: float
    optimizers: tuple[OptimizerSummary, ...]
    ran: int = 0
    reused: int = 0
    interrupted: bool = False
    complete: bool = True
    seconds: float = 0.0

    def summary(self, optimizer: str) -> OptimizerSummary:
        for item in self.optimizers:
            if item.optimizer == optimizer:
                return item
        raise KeyError(f"sweep {self.name!r} has no optimizer {optimizer!r}; it has "
                       f"{', '.join(o.optimizer for o in self.optimizers)}")

    def ranking(self, by: str = "steps") -> list[OptimizerSummary]:
        """Best first: more seeds reaching the target, then fewer median steps (``by="steps"``)
        or seconds (``by="seconds"``) to it, then a better median best validation metric;
        optimizers whose every rate diverged come last."""
        if by not in ("steps", "seconds"):
            raise ValueError(f"ranking: by must be 'steps' or 'seconds', got {by!r}")
        sign = -1 if self.higher_is_better else 1

        def key(item: OptimizerSummary) -> tuple:
            cost = item.steps_to_target if by == "steps" else item.seconds_to_target
            valid = math.inf if item.best_valid is None else sign * item.best_valid
            return (item.best_lr is None, -item.reached, math.inf if cost is None else cost, valid)

        return sorted(self.optimizers, key=key)


def lr_score(rows: Sequence[Mapping[str, Any]], higher_is_better: bool) -> tuple:
    """Sort key of one learning rate's runs (smaller is better): diverged rates last, then the
    fraction of runs reaching the target, the median steps to it, the median best validation
    metric (on the validation split throughout; the test split is never used to choose)."""
    diverged = any(r["diverged"] for r in rows)
    reached = sum(r["steps_to_target"] is not None for r in rows) / len(rows)
    steps = median(r["steps_to_target"] for r in rows)
    valid = median_metric(r["best_valid"] for r in rows)
    valid_key = math.inf if valid is None else (-valid if higher_is_better else valid)
    return (diverged, -reached, math.inf if steps is None else steps, valid_key)


def pick_best(rows: Sequence[Mapping[str, Any]], higher_is_better: bool) -> float | None:
    """The best learning rate among ``rows`` (run dicts with lr, diverged, steps_to_target,
    best_valid) by :func:`lr_score`; ties go to the smaller rate. A rate with a diverged run
    never wins; None when every rate has one."""
    by_lr: dict[float, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_lr.setdefault(row["lr"], []).append(row)
    candidates = sorted((lr_score(group, higher_is_better), lr) for lr, group in by_lr.items())
    if not candidates or candidates[0][0][0]:
        return None
    return candidates[0][1]


def summarize(store: Store, sweep: str) -> SweepResult:
    """The :class:`SweepResult` of the runs ``store`` holds for ``sweep`` (complete or not).

    The best rate is picked from the grid phase's runs only, as :func:`run_sweep` picked it:
    the extra seeds of the best phase would otherwise favour the rate that got them.
    """
    info = store.sweep(sweep)
    if info is None:
        raise KeyError(f"no sweep {sweep!r} in the store; sweeps: {', '.join(s['name'] for s in store.sweeps())}")
    rows = store.runs(sweep)
    problem = get_problem(info["problem"])
    spec = info["spec"] or {}
    names = list(spec.get("optimizers") or dict.fromkeys(r["optimizer"] for r in rows))
    summaries = []
    for name in names:
        mine = [r for r in rows if r["optimizer"] == name]
        grid_rows = [r for r in mine if r["phase"] in (GRID, None)]
        best = pick_best(grid_rows, problem.higher_is_better)
        at_best = [r for r in mine if r["lr"] == best]
        by_lr = []
        for lr in sorted({r["lr"] for r in mine}):
            group = [r for r in mine if r["lr"] == lr]
            by_lr.append(LrSummary(lr, len(group), sum(r["diverged"] for r in group) / len(group),
                                   sum(r["steps_to_target"] is not None for r in group) / len(group),
                                   median(r["steps_to_target"] for r in group),
                                   median_metric(r["best_valid"] for r in group),
                                   median_metric(r["final_valid"] for r in group)))
        label = get_optimizer(name).label
        summaries.append(OptimizerSummary(
            name, label, best, tuple(sorted(r["seed"] for r in at_best)), len(at_best),
            sum(r["steps_to_target"] is not None for r in at_best) / len(at_best) if at_best else 0.0,
            median(r["steps_to_target"] for r in at_best) if at_best else None,
            median(r["seconds_to_target"] for r in at_best) if at_best else None,
            median_metric(r["best_valid"] for r in at_best), median_metric(r["final_valid"] for r in at_best),
            median_metric(r["test_metric"] for r in at_best),
            sum(r["diverged"] for r in mine) / len(mine) if mine else 0.0, tuple(by_lr)))
    return SweepResult(sweep, problem.name, problem.metric, problem.higher_is_better, problem.target,
                       tuple(summaries))


# -- running ------------------------------------------------------------------------------------

def _init_worker(threads: int) -> None:
    # The parent handles Ctrl-C (it ends the workers); a worker that got SIGINT too would print
    # a traceback from wherever it was. It started with SIGINT blocked (held_interrupts), so a Ctrl-C
    # during its start-up is pending: ignoring SIGINT discards it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    die_with_parent()
    torch.set_num_threads(threads)


#: prctl(2) option: the signal this process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """End this worker process as soon as the sweep's process dies, even by SIGKILL, which leaves
    it no chance to end its workers (they would otherwise finish their runs for nothing, holding
    cores a resumed sweep needs).

    On Linux the kernel kills the worker at its parent's death (``prctl(PR_SET_PDEATHSIG)``; the
    parent is the thread that started the worker, here the sweep's, which lives as long as the
    pool). Everywhere, a thread also watches the parent's sentinel, a pipe the operating system
    closes when the parent dies: the portable way, which also covers a parent that died before
    prctl took effect.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no C library to call: the sentinel still works
            pass
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_closed, args=(parent.sentinel,), name="optimlab-parent-watch",
                         daemon=True).start()


def _exit_when_closed(sentinel: Any) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)  # no clean-up: the parent that would use this worker's result is gone


#: The signals that stop a sweep (KeyboardInterrupt): Ctrl-C, and SIGTERM where the command line
#: makes it one.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Hold a Ctrl-C (or a SIGTERM handled as one) back while the pool starts worker processes,
    and deliver it right after.

    Raised in the middle of ``submit``, the KeyboardInterrupt could land between a worker's start
    and the pool's record of it: a worker the pool never ends, that the interpreter then waits for
    at exit, forever. Held, it is delivered where the sweep handles it. SIGINT is also blocked
    meanwhile, which the new workers inherit (so a Ctrl-C sent to the whole process group cannot
    kill one with a traceback before its initializer ignores SIGINT) and so do the pool's threads
    started now (so a later SIGINT always reaches the main thread, the one that acts on it).
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets KeyboardInterrupt
        yield
        return
    held: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in INTERRUPTS}
    previous = {signum: handler for signum, handler in previous.items() if callable(handler)}  # Python's
    for signum in previous:
        signal.signal(signum, lambda number, frame: held.append(number))
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGINT pending meanwhile arrives now
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)  # to the handler it was meant for


def _work(config: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run one config in a worker process; plain dicts cross the process boundary."""
    started = time.time()
    return execute(RunConfig.from_dict(config)).to_dict(), started


@dataclass
class _Plan:
    """The sweep's bookkeeping while it runs."""

    spec: SweepSpec
    store: Store
    callback: Callback | None
    grid_left: dict[str, set[str]] = field(default_factory=dict)  # optimizer -> grid keys not stored yet
    queue: deque = field(default_factory=deque)
    total: int = 0
    ran: int = 0
    reused: int = 0

    def start(self) -> None:
        stored = self.store.done_keys(self.spec.name)
        # Runs of an earlier version of this sweep (other rates, seeds, optimizers, or a problem
        # whose definition changed, hence other keys) leave it, so that its runs are exactly
        # the current spec's. They stay stored, and come back by key if the spec does.
        wanted = set()
        for name in self.spec.optimizers:
            for lr in self.spec.grid(name):
                wanted.update(c.key() for c in [*self.spec.grid_configs(name), *self.spec.best_configs(name, lr)])
        if stored - wanted:
            self.store.unlink(self.spec.name, stored - wanted)
            stored &= wanted
        for name in self.spec.optimizers:
            configs = self.spec.grid_configs(name)
            self.total += len(configs) + len(self.spec.best_configs(name, 1.0))
            self.grid_left[name] = set()
            for config in configs:
                if not self.settled(config, GRID, stored):
                    self.grid_left[name].add(config.key())
                    self.queue.append((config, GRID))
        for name in self.spec.optimizers:
            if not self.grid_left[name]:
                self.grid_done(name, stored)

    def settled(self, config: RunConfig, phase: str, stored: set[str]) -> bool:
        """Whether ``config`` needs no run: stored for this sweep, or stored by another (linked)."""
        key = config.key()
        if key in stored:
            return True
        if self.store.has(key):
            self.store.link(self.spec.name, key, phase)
            self.reused += 1
            if self.callback is not None:
                self.callback(config, None, phase, True)
            return True
        return False

    def finished(self, config: RunConfig, phase: str, result: RunResult, started: float) -> None:
        self.store.save(config, result, sweep=self.spec.name, phase=phase, started=started)
        self.ran += 1
        if self.callback is not None:
            self.callback(config, result, phase, False)
        if phase == GRID:
            left = self.grid_left[config.optimizer]
            left.discard(config.key())
            if not left:
                self.grid_done(config.optimizer, self.store.done_keys(self.spec.name))

    def grid_done(self, optimizer: str, stored: set[str]) -> None:
        """Queue the best phase of ``optimizer`` (first in line: its summary completes soonest)."""
        rows = self.store.runs(self.spec.name, optimizer=optimizer)
        best = pick_best([r for r in rows if r["phase"] == GRID], self.spec.problem_obj.higher_is_better)
        keep = set() if best is None else {c.key() for c in self.spec.best_configs(optimizer, best)}
        stale = {r["key"] for r in rows if r["phase"] == BEST and r["key"] not in keep}
        if stale:  # best-phase runs of a rate that is no longer the best
            self.store.unlink(self.spec.name, stale)
        planned = len(self.spec.best_configs(optimizer, 1.0))
        if best is None:
            self.total -= planned
            return
        for config in reversed(self.spec.best_configs(optimizer, best)):
            if not self.settled(config, BEST, stored):
                self.queue.appendleft((config, BEST))


def run_sweep(spec: SweepSpec, store: Store, *, workers: int = 1, progress: bool | None = None,
              callback: Callback | None = None, threads: int = 1) -> SweepResult:
    """Run ``spec``'s grid and best phases, saving each run to ``store`` as it finishes.

    ``workers``: 1 runs in this process; more runs in that many spawned worker processes.
    ``threads``: torch threads per run (set in each worker; in this process, set for the
    sweep and restored after). ``progress``: a tqdm bar over the runs on stderr (None: when
    stderr is a terminal). ``callback(config, result, phase, reused)`` is called after every
    run (``result`` None when the run was found stored by another sweep).

    Returns :func:`summarize` of the stored runs with this call's counts; on Ctrl-C, what is
    stored so far with ``interrupted=True``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"run_sweep: workers must be an int >= 1, got {workers!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"run_sweep: threads must be an int >= 1, got {threads!r}")
    check_kwargs(spec)
    began = time.perf_counter()
    store.save_sweep(spec.name, spec.problem, spec.to_dict())
    plan = _Plan(spec, store, callback)
    bar = None
    interrupted = False
    try:
        plan.start()
        bar = sweep_bar(plan, progress)
        if workers == 1:
            run_here(plan, threads, bar)
        else:
            run_pool(plan, workers, threads, bar)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    result = summarize(store, spec.name)
    complete = not interrupted and len(store.done_keys(spec.name)) >= plan.total
    return SweepResult(**{**result.__dict__, "ran": plan.ran, "reused": plan.reused, "interrupted": interrupted,
                          "complete": complete, "seconds": time.perf_counter() - began})


def default_workers() -> int:
    """Worker processes worth starting here: the CPU cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_kwargs(spec: SweepSpec) -> None:
    """Build each optimizer once on a dummy parameter: bad kwargs fail now, not in every run."""
    for name in spec.optimizers:
        try:
            get_optimizer(name).make([torch.zeros(1, requires_grad=True)], spec.grid(name)[0],
                                     **spec.kwargs.get(name, {}))
        except (TypeError, ValueError) as error:
            raise ValueError(f"SweepSpec: optimizer {name!r} with kwargs {spec.kwargs.get(name, {})}: "
                             f"{error}") from None


def sweep_bar(plan: _Plan, progress: bool | None) -> Any:
    """A tqdm bar over the sweep's runs, starting at the runs already stored."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    initial = max(0, plan.total - len(plan.queue) - pending_best(plan))
    return tqdm(total=plan.total, initial=initial, unit="run", desc=plan.spec.name, dynamic_ncols=True)


def pending_best(plan: _Plan) -> int:
    """Best-phase runs not queued yet (their optimizer's grid is not complete)."""
    return sum(len(plan.spec.best_configs(name, 1.0)) for name, left in plan.grid_left.items() if left)


def note(bar: Any, plan: _Plan, config: RunConfig, result: RunResult) -> None:
    if bar is None:
        return
    outcome = result.stop_reason.value if result.steps_to_target is None else f"target @ {result.steps_to_target}"
    bar.total = plan.total  # an optimizer whose every rate diverged has no best phase
    bar.set_postfix_str(f"{config.optimizer} lr={fmt_lr(config.lr)} seed={config.seed}: {outcome}", refresh=False)
    bar.update(1)


def run_here(plan: _Plan, threads: int, bar: Any) -> None:
    """Run the plan in this process, one run at a time."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        while plan.queue:
            config, phase = plan.queue.popleft()
            started = time.time()
            result = execute(config)
            if result.stop_reason is StopReason.INTERRUPTED:
                raise KeyboardInterrupt
            plan.finished(config, phase, result, started)
            note(bar, plan, config, result)
    finally:
        torch.set_num_threads(previous)


def run_pool(plan: _Plan, workers: int, threads: int, bar: Any) -> None:
    """Run the plan in ``workers`` spawned processes, keeping at most two runs per worker in
    flight so that a best phase queued meanwhile goes ahead of the remaining grid."""
    context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,))
    running: dict[futures.Future, tuple[RunConfig, str]] = {}
    try:
        while plan.queue or running:
            with held_interrupts():  # submit starts the workers
                while plan.queue and len(running) < 2 * workers:
                    config, phase = plan.queue.popleft()
                    running[pool.submit(_work, config.to_dict())] = (config, phase)
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in done:
                config, phase = running.pop(future)
                data, started = future.result()
                result = RunResult.from_dict(data)
                plan.finished(config, phase, result, started)
                note(bar, plan, config, result)
    except BaseException:
        # Ctrl-C or a failed run: cancel what has not started and end the workers now (the runs
        # in progress are lost; they were not stored, so a resumed sweep runs them again).
        for future in running:
            future.cancel()
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
