"""From the command's options to a :class:`~optimlab.lab.suite.protocol.SuiteSpec`: the modes'
defaults, the choice of workloads and tracks, the suite's name and the default storage."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from optimlab.lab.suite.problems import FULL, QUICK, Workload, workload
from optimlab.lab.suite.protocol import SuiteSpec
from optimlab.lab.suite.storage import storage_url
from optimlab.lab.suite.tracks import BASELINE, Track, registry_tracks

#: mode -> (workloads, tuning trials per track and workload, measurement seeds)
MODES = {"quick": (QUICK, 6, 3), "full": (FULL, 20, 10)}
#: ``--quick``'s optimizers (with the baseline): the classics, NAdam and Muon; the full suite
#: (and ``--optimizers all``) takes every one the registry holds. Muon and L-BFGS steps cost the
#: most; the quick set keeps Muon, the newest idea, and leaves L-BFGS to the full suite.
QUICK_OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "muon")


def choose_tracks(names: Sequence[str] | None) -> tuple[list[Track], dict[str, str]]:
    """The registry's tracks (or those named; the baseline always), and the skipped with why."""
    tracks, skipped = registry_tracks()
    if names is None:
        return tracks, skipped
    known = {t.name: t for t in tracks}
    for name in names:
        if name in skipped:
            raise ValueError(f"--optimizers: {name!r} cannot run in the lab: {skipped[name]}")
        if name not in known:
            raise ValueError(f"--optimizers: unknown optimizer {name!r}; expected some of {', '.join(known)}")
    chosen = [t for t in tracks if t.name in names or t.name == BASELINE]
    return chosen, {k: v for k, v in skipped.items() if k in names}


def suite_spec(mode: str, *, problems: Sequence[str] | None = None, optimizers: Sequence[str] | None = None,
               trials: int | None = None, seeds: int | None = None, max_steps: int | None = None,
               name: str | None = None, storage: str | None = None, db: Path = Path("out/optimlab.sqlite"),
               ) -> tuple[SuiteSpec, dict[str, str]]:
    """The suite the options describe, and the registry optimizers it leaves out (with why)."""
    if mode not in MODES:
        raise ValueError(f"suite mode must be one of {sorted(MODES)}, got {mode!r}")
    workloads, default_trials, default_seeds = MODES[mode]
    chosen: tuple[Workload, ...] = (tuple(workload(p, max_steps) for p in problems) if problems else
                                    tuple(workload(w.problem, max_steps or w.budget) for w in workloads))
    if optimizers is None and mode == "quick":
        optimizers = QUICK_OPTIMIZERS
    tracks, skipped = choose_tracks(None if optimizers is not None and list(optimizers) == ["all"] else optimizers)
    n_trials = trials or default_trials
    spec = SuiteSpec("", chosen, tuple(tracks), n_trials, tuple(range(1, 1 + (seeds or default_seeds))),
                     suite_storage(storage, db))
    return dataclasses.replace(spec, name=name or f"suite-{mode}-{spec.digest()}"), skipped


def suite_storage(storage: str | None, db: Path) -> str:
    """The storage URL of ``--storage``, checked (:func:`~optimlab.lab.suite.storage.storage_url`
    raises a one-line StorageError), or the project's SQLite file ``db`` (the suite's studies
    beside the lab's runs)."""
    db = Path(db).resolve()
    if storage is None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return storage_url(storage, db)
