"""Run a suite end to end: tune, measure, with one progress bar (ETA) over every trial and run."""

from __future__ import annotations

import itertools
import sys
from typing import Any

from optimlab.lab.suite.protocol import SuiteSpec, done_units, measure, tune


def progress_bar(total: int, initial: int, enabled: bool | None) -> Any:
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, initial=initial, unit="run", desc="suite", disable=disable, dynamic_ncols=True)


def run_suite(spec: SuiteSpec, *, progress: bool | None = None) -> int:
    """Run what the storage does not hold yet; returns how many trials and runs ran now.

    Ctrl-C (KeyboardInterrupt) stops it between runs or inside one; everything finished is
    stored, and running the same suite again continues from there. Every workload's data is
    loaded first: a data set that is not installed is an error before anything runs."""
    for workload in spec.workloads:  # missing data fails now, not hours into the suite
        workload.lab_problem.load()
    total, done = spec.units(), done_units(spec)
    ran = 0
    with progress_bar(total, done, progress) as bar:
        for count in itertools.chain(tune(spec), measure(spec)):
            ran += count
            bar.update(count)
    return ran
