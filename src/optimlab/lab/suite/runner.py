"""Run a suite end to end: tune, measure, with one progress bar (ETA) over every trial and run.

With ``jobs`` > 1 the workloads are shared out to that many processes (one torch thread each):
each process runs whole workloads, tuning and measurement, the costliest first, so the last to
finish is a cheap one. They write to the suite's storage as one process would (the same study
names, the same claim lock), so the result is the one-process suite's, and a stopped suite
resumes with any number of jobs.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import sys
from typing import Any

from optimlab.lab.suite.protocol import SuiteSpec, done_units, measure, tune

#: How often the parent of several jobs reads the storage to move a shown progress bar (seconds):
#: a reading looks at every study, about a second of CPU time for a suite of 150 studies.
POLL_SECONDS = 30.0


def progress_bar(total: int, initial: int, enabled: bool | None) -> Any:
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, initial=initial, unit="run", desc="suite", disable=disable, dynamic_ncols=True)


def run_suite(spec: SuiteSpec, *, progress: bool | None = None, jobs: int = 1) -> int:
    """Run what the storage does not hold yet, in ``jobs`` processes; returns how many trials and
    runs ran now.

    Ctrl-C (KeyboardInterrupt) stops it between runs or inside one; everything finished is
    stored, and running the same suite again continues from there. Every workload's data is
    loaded first: a data set that is not installed is an error before anything runs."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"run_suite: jobs must be an int >= 1, got {jobs!r}")
    for workload in spec.workloads:  # missing data fails now, not hours into the suite
        workload.lab_problem.load()
    total, done = spec.units(), done_units(spec)
    with progress_bar(total, done, progress) as bar:
        if jobs == 1 or len(spec.workloads) == 1:
            ran = 0
            for count in itertools.chain(tune(spec), measure(spec)):
                ran += count
                bar.update(count)
            return ran
        return run_in_processes(spec, jobs, bar)


def one_workload_each(spec: SuiteSpec) -> list[SuiteSpec]:
    """The suite cut into one-workload suites of the same name (so the same studies), costliest first."""
    ordered = sorted(spec.workloads, key=lambda w: -w.step_seconds * w.budget)
    return [dataclasses.replace(spec, workloads=(workload,)) for workload in ordered]


def run_in_processes(spec: SuiteSpec, jobs: int, bar: Any) -> int:
    """Each workload in one of ``jobs`` spawned processes, which die with this one even if it is
    killed; the bar follows the storage."""
    parts = one_workload_each(spec)
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(jobs, len(parts))) as pool:
        results = [pool.apply_async(run_part, (part,)) for part in parts]
        pending = list(results)
        while pending:
            pending[0].wait(POLL_SECONDS)
            for result in pending:
                if result.ready() and not result.successful():
                    result.get()  # a part's error stops the suite now, not when its turn to be read comes
            pending = [result for result in pending if not result.ready()]
            if not bar.disable:
                bar.update(done_units(spec) - bar.n)
        ran = sum(result.get() for result in results)
    bar.update(done_units(spec) - bar.n)
    return ran


def run_part(spec: SuiteSpec) -> int:
    import torch

    from optimlab.lab.running.sweep import die_with_parent

    die_with_parent()
    torch.set_num_threads(1)
    return run_suite(spec, progress=False)
