"""Sweeps: the grid and best phases, choosing the best rate, resume after a kill, Ctrl-C, workers."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import optimlab
from optimlab.lab.running.runs import RunConfig
from optimlab.lab.running.store import Store
from optimlab.lab.running.sweep import (
    BEST,
    GRID,
    SweepSpec,
    held_interrupts,
    median,
    pick_best,
    run_sweep,
    summarize,
)
from optimlab.lab.training.specs import UnknownNameError
from tests.processes import children, group, wait_until

SRC = str(Path(optimlab.__file__).resolve().parents[1])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.sqlite") as opened:
        yield opened


def cancer_spec(name: str = "s", **overrides) -> SweepSpec:
    settings = dict(name=name, problem="logreg-cancer", optimizers=("sgd", "adam"),
                    lrs={"sgd": [0.01, 0.1, 1.0], "adam": [1e-3, 1e-2]}, seeds=(0,), best_seeds=(1, 2),
                    max_steps=200)
    settings.update(overrides)
    return SweepSpec(**settings)


class Counter:
    """A callback that records what the sweep ran and what it found stored."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.ran: list[tuple[str, float, int, str]] = []
        self.reused: list[tuple[str, float, int, str]] = []
        self.stop_after = stop_after

    def __call__(self, config, result, phase, reused):
        (self.reused if reused else self.ran).append((config.optimizer, config.lr, config.seed, phase))
        if self.stop_after is not None and len(self.ran) == self.stop_after:
            raise KeyboardInterrupt  # as if Ctrl-C arrived right after this run was stored


# -- choosing the best learning rate -----------------------------------------------------------

def row(lr, steps=None, best=0.9, diverged=False):
    return {"lr": lr, "steps_to_target": steps, "best_valid": best, "diverged": diverged}


def test_pick_best_prefers_reaching_the_target_then_speed_then_validation():
    # Reaching the target beats a better best validation metric that missed it.
    assert pick_best([row(0.1, steps=None, best=0.99), row(0.01, steps=500, best=0.97)], True) == 0.01
    # Among rates that reach it: fewer steps.
    assert pick_best([row(0.1, steps=300), row(0.01, steps=500)], True) == 0.1
    # A rate where only some seeds reach it loses to one where all do.
    assert pick_best([row(0.1, 100), row(0.1, None), row(0.01, 900), row(0.01, 800)], True) == 0.01
    # None reach it: the best validation metric decides (lower is better here).
    assert pick_best([row(0.1, best=0.3), row(0.01, best=0.2)], False) == 0.01
    # Ties go to the smaller rate.
    assert pick_best([row(0.1, steps=100), row(0.01, steps=100)], True) == 0.01


def test_diverged_runs_never_win():
    rows = [row(1.0, steps=10, best=0.999), row(1.0, steps=None, diverged=True), row(0.1, steps=None, best=0.5)]
    assert pick_best(rows, True) == 0.1
    assert pick_best([row(1.0, diverged=True), row(0.1, diverged=True)], True) is None
    assert pick_best([], True) is None


def test_median_counts_missed_runs_as_infinite():
    assert median([100, 300, None]) == 300
    assert median([100, None, None]) is None
    assert median([100, 200]) == 150
    assert median([]) is None


# -- the spec ----------------------------------------------------------------------------------

def test_spec_grids():
    spec = cancer_spec()
    assert spec.grid("sgd") == (0.01, 0.1, 1.0) and spec.grid("adam") == (0.001, 0.01)
    shared = cancer_spec(lrs=[0.3, 0.1, 0.1])
    assert shared.grid("sgd") == shared.grid("adam") == (0.1, 0.3)
    default = cancer_spec(lrs=None)
    problem = default.problem_obj
    assert default.grid("adam") == problem.lr_grid("adam", 3)
    assert default.grid_configs("sgd")[0] == RunConfig.for_problem(problem, "sgd", default.grid("sgd")[0], 0,
                                                                    max_steps=200)
    assert [c.seed for c in spec.best_configs("sgd", 0.1)] == [1, 2]
    assert SweepSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("overrides, error, message", [
    (dict(optimizers=("sgd", "adamm")), UnknownNameError, "unknown optimizer 'adamm'; valid names: sgd, "),
    (dict(problem="nope"), UnknownNameError, "unknown problem 'nope'; valid names: "),
    (dict(seeds=()), ValueError, "seeds must hold at least one seed"),
    (dict(seeds=(0, 0)), ValueError, "seeds must be distinct ints >= 0, got [0, 0]"),
    (dict(lrs={"sgd": [0.1]}), ValueError, "lrs has no grid for ['adam']"),
    (dict(lrs=[0.1, -1]), ValueError, "learning rates must be positive finite numbers, got -1"),
    (dict(optimizers=()), ValueError, "optimizers must name at least one optimizer"),
    (dict(kwargs={"adagrad": {}}), ValueError, "kwargs for optimizers not in the sweep: ['adagrad']"),
    (dict(schedule="cosin"), UnknownNameError, "unknown schedule 'cosin'; valid names: constant, cosine"),
])
def test_spec_errors_name_the_problem(overrides, error, message):
    with pytest.raises(error) as caught:
        cancer_spec(**overrides)
    assert message in str(caught.value)


def test_bad_optimizer_kwargs_fail_before_any_run(store):
    spec = cancer_spec(kwargs={"adam": {"momentum": 0.9}})
    with pytest.raises(ValueError, match="optimizer 'adam' with kwargs {'momentum': 0.9}: .*momentum"):
        run_sweep(spec, store)
    assert store.runs() == []


# -- running in this process -------------------------------------------------------------------

def test_grid_then_best_rate_with_more_seeds(store):
    calls = Counter()
    result = run_sweep(cancer_spec(), store, callback=calls)
    grid = [c for c in calls.ran if c[3] == GRID]
    assert sorted((o, lr) for o, lr, _, _ in grid) == [("adam", 0.001), ("adam", 0.01), ("sgd", 0.01),
                                                       ("sgd", 0.1), ("sgd", 1.0)]
    rows = store.runs("s")
    assert len(rows) == 5 + 2 * 2 and result.ran == 9 and result.reused == 0
    assert result.complete and not result.interrupted
    for name in ("sgd", "adam"):
        summary = result.summary(name)
        expected = pick_best([r for r in rows if r["optimizer"] == name and r["phase"] == GRID], True)
        assert summary.best_lr == expected
        best_rows = [r for r in rows if r["optimizer"] == name and r["lr"] == expected]
        assert sorted(r["seed"] for r in best_rows) == [0, 1, 2] == list(summary.seeds)
        assert {r["phase"] for r in best_rows if r["seed"] > 0} == {BEST}
        assert summary.runs == 3 and summary.reached == 1.0
        assert summary.steps_to_target == median(r["steps_to_target"] for r in best_rows)
        assert summary.test_metric == sorted(r["test_metric"] for r in best_rows)[1]
        assert [lr.lr for lr in summary.by_lr] == list(cancer_spec().grid(name))
    assert result.metric == "accuracy" and result.target == 0.98 and result.higher_is_better
    assert [o.optimizer for o in result.ranking()] == sorted(
        ["sgd", "adam"], key=lambda n: (result.summary(n).steps_to_target, -result.summary(n).best_valid))
    # The best phase of an optimizer starts as soon as its own grid is done.
    phases = [(o, phase) for o, _, _, phase in calls.ran]
    assert phases.index(("sgd", BEST)) < phases.index(("adam", GRID))
    # Summarizing the store later gives the same answer.
    assert summarize(store, "s").optimizers == result.optimizers


def test_a_finished_sweep_runs_nothing_again_and_others_reuse_its_runs(store):
    run_sweep(cancer_spec(), store)
    before = {r["key"]: r["finished"] for r in store.runs("s")}
    calls = Counter()
    again = run_sweep(cancer_spec(), store, callback=calls)
    assert calls.ran == [] and again.ran == 0 and again.complete
    assert {r["key"]: r["finished"] for r in store.runs("s")} == before
    # Another sweep over part of the same configs links the stored runs instead of running them.
    other = Counter()
    result = run_sweep(cancer_spec("other", optimizers=("sgd",), lrs={"sgd": [0.1, 0.3]}), store, callback=other)
    assert [(o, lr) for o, lr, _, phase in other.reused if phase == GRID] == [("sgd", 0.1)]
    assert [(o, lr) for o, lr, _, phase in other.ran if phase == GRID] == [("sgd", 0.3)]
    assert result.reused >= 1 and store.run(cancer_spec().config("sgd", 0.1, 0).key())["sweep"] == "s"


def test_changing_a_spec_keeps_the_sweep_exactly_the_new_spec(store):
    run_sweep(cancer_spec(best_seeds=(1,)), store)
    narrower = cancer_spec(lrs={"sgd": [0.1, 1.0], "adam": [1e-2]}, best_seeds=(1,))
    run_sweep(narrower, store)
    grid_lrs = {(r["optimizer"], r["lr"]) for r in store.runs("s") if r["phase"] == GRID}
    assert grid_lrs == {("sgd", 0.1), ("sgd", 1.0), ("adam", 0.01)}
    assert len(store.runs()) >= 5  # the runs that left the sweep are still stored


def test_an_optimizer_that_always_diverges_gets_no_best_rate(store):
    spec = SweepSpec("d", "linreg", optimizers=("sgd", "adam"), lrs={"sgd": [0.5, 1.0], "adam": [0.0316]},
                     best_seeds=(1,))
    result = run_sweep(spec, store)
    sgd = result.summary("sgd")
    assert sgd.best_lr is None and sgd.diverged == 1.0 and sgd.runs == 0 and sgd.steps_to_target is None
    assert all(lr.diverged == 1.0 for lr in sgd.by_lr)
    assert result.ranking()[-1].optimizer == "sgd" and result.complete
    assert len(store.runs("d", optimizer="sgd")) == 2  # no best phase


def test_ctrl_c_in_process_keeps_finished_runs_and_resumes(store):
    calls = Counter(stop_after=3)
    result = run_sweep(cancer_spec(), store, callback=calls)
    assert result.interrupted and not result.complete and result.ran == 3
    stored = store.done_keys("s")
    assert len(stored) == 3
    rest = Counter()
    result = run_sweep(cancer_spec(), store, callback=rest)
    assert result.complete and len(rest.ran) == 9 - 3
    assert not stored & {cancer_spec().config(o, lr, seed).key() for o, lr, seed, _ in rest.ran}


def test_progress_bar(store, capsys):
    run_sweep(cancer_spec(optimizers=("sgd",), best_seeds=()), store, progress=True)
    assert "3/3" in capsys.readouterr().err


# -- worker processes, kills and Ctrl-C ------------------------------------------------------------

SCRIPT = """
import json
import signal
import sys
import threading
from pathlib import Path

from optimlab.lab.running.store import Store
from optimlab.lab.running.sweep import SweepSpec, run_sweep


def pause_after(count, marker):
    # Once `count` runs are stored, write `marker` and wait for the test's signal (a Ctrl-C ends
    # the wait with KeyboardInterrupt): the sweep cannot end first, however slowly the test runs.
    stored = []

    def callback(config, result, phase, reused):
        if not reused:
            stored.append(config)
        if len(stored) == count and not Path(marker).exists():
            Path(marker).write_text(str(count))
            threading.Event().wait(300)

    return callback


if __name__ == "__main__":
    # A shell starts a background job with SIGINT ignored, and Python keeps it ignored: give this
    # sweep Ctrl-C's default, as in a terminal, however the test suite itself was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    db, workers, spec, count, marker = sys.argv[1:]
    with Store(db) as store:
        result = run_sweep(SweepSpec(**json.loads(spec)), store, workers=int(workers),
                           callback=pause_after(int(count), marker))
    print("interrupted", result.interrupted, "complete", result.complete, "ran", result.ran, flush=True)
"""

#: 6 grid runs and 2 best-phase runs of a small MLP, each to the end of its budget.
KILL_SPEC = dict(name="k", problem="mlp-digits", optimizers=["sgd", "adam"],
                 lrs={"sgd": [0.03, 0.1, 0.3], "adam": [0.001, 0.003, 0.01]}, seeds=[0], best_seeds=[1],
                 stop_at_target=False)


def kill_spec(max_steps: int) -> SweepSpec:
    return SweepSpec(**KILL_SPEC, max_steps=max_steps)


def start_sweep(tmp_path: Path, workers: int, spec: dict, pause_after: int) -> tuple[subprocess.Popen, Path]:
    """The sweep ``spec`` in a new process (leading its own process group), paused once
    ``pause_after`` runs are stored; returns the process and its database, once it is paused."""
    script = tmp_path / "sweep_script.py"
    script.write_text(SCRIPT)
    db, marker = tmp_path / "runs.sqlite", tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, str(script), str(db), str(workers), json.dumps(spec),
                                str(pause_after), str(marker)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until(lambda: marker.exists() or process.poll() is not None, f"{pause_after} runs stored")
    except BaseException:
        process.kill()
        raise
    if process.poll() is not None:
        pytest.fail(f"the sweep ended before {pause_after} runs were stored: {process.communicate()}")
    return process, db


def test_resume_after_the_sweep_is_killed(tmp_path):
    process, db = start_sweep(tmp_path, workers=1, spec={**KILL_SPEC, "max_steps": 400}, pause_after=2)
    process.send_signal(signal.SIGKILL)  # no chance to clean up: a crash, a power cut, kill -9
    process.wait(timeout=30)
    with Store(db) as store:
        before = {r["key"]: (r["finished"], r["steps"]) for r in store.runs("k")}
        assert len(before) == 2
        # Every stored run is whole: its curve is there, from step 0 to its last step.
        for key, (_, steps) in before.items():
            assert [p["step"] for p in store.curve(key)][::len(store.curve(key)) - 1] == [0, steps]
        calls = Counter()
        result = run_sweep(kill_spec(400), store, callback=calls)
        assert result.complete and not result.interrupted
        after = {r["key"]: (r["finished"], r["steps"]) for r in store.runs("k")}
    assert len(after) == 8 and len(calls.ran) == 8 - 2 and result.ran == len(calls.ran)
    assert {key: after[key] for key in before} == before  # finished runs were not redone


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to find the worker processes")
def test_ctrl_c_with_workers_stops_promptly_and_resumes(tmp_path):
    process, db = start_sweep(tmp_path, workers=2, spec={**KILL_SPEC, "max_steps": 600}, pause_after=1)
    workers = children(process.pid)
    assert workers, "the sweep should run in worker processes"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "interrupted True complete False ran 1" in out, out + err
    assert "Traceback" not in err, err
    wait_until(lambda: not group(process.pid), "the workers to end with the sweep", limit=10)
    with Store(db) as store:
        assert len(store.done_keys("k")) == 1
        calls = Counter()
        result = run_sweep(kill_spec(600), store, callback=calls)
    assert result.complete and len(calls.ran) == 8 - 1


@pytest.mark.slow  # the faults tier kills compare --workers 2 and checks that no process is left too
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to find the worker processes")
def test_workers_die_with_a_killed_sweep(tmp_path):
    # One run diverges at once and is stored; the other two would each take minutes: killed with
    # the sweep, their workers must end now, not when their runs are done.
    spec = dict(name="k", problem="mlp-digits", optimizers=["sgd", "adam"], lrs={"sgd": [1e6], "adam": [1e-3, 3e-3]},
                seeds=[0], best_seeds=[], max_steps=100_000, stop_at_target=False)
    process, _ = start_sweep(tmp_path, workers=2, spec=spec, pause_after=1)
    assert len(children(process.pid)) >= 2, "the sweep should run in worker processes"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    wait_until(lambda: not group(process.pid), "the workers to die with the sweep", limit=10)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupts_are_held_while_workers_start_and_delivered_after(signum):
    # Inside, a Ctrl-C (or a SIGTERM the command line makes one) is held, not raised where a worker
    # is half started, and a process started there inherits SIGINT blocked; on leaving, the held
    # signal goes to its handler.
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: caught.append(number))
    # Python's Ctrl-C handler, as an interactive run has it (a job a shell starts in the
    # background begins with SIGINT ignored, and then no Ctrl-C could arrive at all).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with held_interrupts():
            signal.raise_signal(signum)
            child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
            blocked = next(line for line in Path(f"/proc/{child.pid}/status").read_text().splitlines()
                           if line.startswith("SigBlk:"))
            child.communicate(b"")
            assert caught == []
    except KeyboardInterrupt:
        caught.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        handler_after = signal.signal(signal.SIGINT, previous_int)
    assert caught == [signum]
    assert int(blocked.split()[1], 16) & (1 << (signal.SIGINT - 1)), blocked
    assert handler_after is signal.default_int_handler


@pytest.mark.slow  # the faults tier compares a resumed compare --workers 2 with one process's run too
def test_workers_give_the_same_results_as_one_process(tmp_path):
    spec = cancer_spec()
    with Store(tmp_path / "one.sqlite") as one, Store(tmp_path / "two.sqlite") as two:
        a = run_sweep(spec, one, workers=1)
        b = run_sweep(spec, two, workers=2)
        assert b.ran == a.ran == 9 and b.complete

        def essentials(store):
            return {r["key"]: (r["steps"], r["steps_to_target"], r["best_valid"], r["test_metric"], r["phase"])
                    for r in store.runs("s")}

        assert essentials(one) == essentials(two)
        key = next(iter(essentials(one)))
        assert [p["valid_metric"] for p in one.curve(key)] == [p["valid_metric"] for p in two.curve(key)]
    assert [(o.optimizer, o.best_lr) for o in a.optimizers] == [(o.optimizer, o.best_lr) for o in b.optimizers]


def test_run_sweep_checks_its_arguments(store):
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        run_sweep(cancer_spec(), store, workers=0)
    with pytest.raises(ValueError, match="threads must be an int >= 1, got 1.5"):
        run_sweep(cancer_spec(), store, threads=1.5)
    with pytest.raises(KeyError, match="no sweep 'nope' in the store"):
        summarize(store, "nope")


def test_summary_of_unknown_optimizer(store):
    result = run_sweep(cancer_spec(optimizers=("sgd",), best_seeds=()), store)
    with pytest.raises(KeyError, match="has no optimizer 'adam'; it has sgd"):
        result.summary("adam")
    with pytest.raises(ValueError, match="by must be 'steps' or 'seconds', got 'time'"):
        result.ranking(by="time")
    assert math.isfinite(result.seconds)
