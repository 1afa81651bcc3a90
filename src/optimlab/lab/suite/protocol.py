"""The suite's protocol: an equal tuning budget per track, then the best setting re-run with more seeds.

1. *Tuning*: every (workload, track) study gets ``n_trials`` trials over the track's search space,
   the first at the optimizer's own defaults (so every search starts from the same kind of point),
   from the tuning seed. The studies advance in rounds, one trial each, so a stopped suite has
   spent about the same budget on every track.
2. *Measurement*: the best trial's setting of each track (the *tuned* setting) and the optimizer's
   defaults untouched (the *self-tuning* track: no tuning at all) are run with the measurement
   seeds, seed by seed with the tracks interleaved, so a stretch of machine load falls on every
   track alike rather than on one. Each run is kept in the workload's ``runs`` study as soon as it
   ends (:func:`record_run`); one found there is not run again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna

from optimlab.lab import RunConfig
from optimlab.lab.suite.measure import Measurement, measured_run, objective_value
from optimlab.lab.suite.problems import Workload
from optimlab.lab.suite.storage import finished_trials, open_storage, open_study
from optimlab.lab.suite.studies import (
    RUN_ERRORS,
    median_pruner,
    objective_for,
    tpe_options,
    tuning_spec,
)
from optimlab.lab.suite.tracks import Track, clip_to, optimizer_kwargs
from optimlab.lab.suite.workers import run_trials, study_lock

SETTINGS = ("tuned", "default")


@dataclass(frozen=True)
class SuiteSpec:
    """What a suite runs: workloads x tracks, ``n_trials`` each, re-runs with ``seeds``."""

    name: str
    workloads: tuple[Workload, ...]
    tracks: tuple[Track, ...]
    n_trials: int
    seeds: tuple[int, ...]
    storage: str
    tuning_seed: int = 0

    def study_name(self, workload: Workload, track: Track) -> str:
        return f"{self.name}/{workload.problem}/{track.name}"

    def runs_study_name(self, workload: Workload) -> str:
        return f"{self.name}/{workload.problem}/runs"

    def units(self) -> int:
        """Trials and runs the whole suite does."""
        return len(self.workloads) * len(self.tracks) * (self.n_trials + len(SETTINGS) * len(self.seeds))

    def digest(self) -> str:
        text = json.dumps([[w.problem, w.budget] for w in self.workloads] + [t.to_dict() for t in self.tracks]
                          + [self.n_trials, list(self.seeds), self.tuning_seed], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


#: Studies opened by this process, by (storage, name): opening one costs several queries.
_opened: dict[tuple[str, str], optuna.Study] = {}


def tuning_study(spec: SuiteSpec, workload: Workload, track: Track) -> optuna.Study:
    name = spec.study_name(workload, track)
    if (spec.storage, name) in _opened:
        return _opened[spec.storage, name]
    study_spec = tuning_spec(spec.name, workload, track, spec.n_trials, spec.tuning_seed)
    storage = open_storage(spec.storage)
    # The defaults come first, queued once, by whichever process finds the study empty, under the
    # claim lock: a worker that joins the study as soon as it exists claims under that lock too, so
    # it finds them queued. A process that dies running them loses nothing: its trial is failed
    # and queued again with them (heartbeats, workers.fail_lost_trials).
    with study_lock(storage.engine, name):
        study = open_study(storage, name, study_spec, seed=spec.tuning_seed, pruner=median_pruner(study_spec),
                           tpe=tpe_options(spec.n_trials))
        if not study.get_trials(deepcopy=False):
            study.enqueue_trial(clip_to(track.search_space, track.defaults))
    _opened[spec.storage, name] = study
    return study


def runs_study(spec: SuiteSpec, workload: Workload) -> optuna.Study:
    name = spec.runs_study_name(workload)
    if (spec.storage, name) not in _opened:
        study_spec = {"kind": "runs", "suite": spec.name, "problem": workload.problem, "budget": workload.budget}
        _opened[spec.storage, name] = open_study(spec.storage, name, study_spec, seed=spec.tuning_seed)
    return _opened[spec.storage, name]


def best_values(study: optuna.Study) -> dict[str, float]:
    """The hyperparameters of the study's best complete trial (the earlier one on a tie)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"study {study.study_name!r} has no complete trial to take a setting from")
    return dict(min(complete, key=lambda t: (t.value, t.number)).params)


def run_config(workload: Workload, track: Track, values: dict[str, float], seed: int) -> RunConfig:
    lr, kwargs = optimizer_kwargs(track.optimizer, values)
    return RunConfig.for_problem(workload.problem, track.optimizer, lr, seed, max_steps=workload.budget,
                                 schedule=track.schedule_spec(workload.budget), kwargs=kwargs)


def run_key(track: Track, setting: str, seed: int) -> str:
    return f"{track.name}|{setting}|{seed}"


def record_run(study: optuna.Study, key: str, values: dict[str, float], config: RunConfig, measured: Measurement,
               workload: Workload) -> None:
    """Keep a measurement run as a complete trial of the ``runs`` study (one transaction)."""
    value = objective_value(workload.lab_problem, workload.budget, measured.steps_to_target, measured.best_valid)
    study.add_trial(optuna.trial.create_trial(
        value=value, user_attrs={"key": key, "values": values, "config": config.to_dict(),
                                 "measurement": measured.to_dict()}))


def stored_runs(study: optuna.Study) -> dict[str, dict[str, Any]]:
    return {t.user_attrs["key"]: t.user_attrs for t in study.get_trials(deepcopy=False)
            if t.state is optuna.trial.TrialState.COMPLETE and "key" in t.user_attrs}


def done_units(spec: SuiteSpec) -> int:
    done = 0
    for workload in spec.workloads:
        done += len(stored_runs(runs_study(spec, workload)))
        for track in spec.tracks:
            trials = tuning_study(spec, workload, track).get_trials(deepcopy=False)
            done += min(len(finished_trials(trials)), spec.n_trials)
    return done


def tune(spec: SuiteSpec) -> Iterator[int]:
    """Phase 1, in rounds; yields how many trials each step ran (for a progress bar). Workers
    (``--worker``) may take trials of the same studies meanwhile: each round claims what is left
    of it, and the last step waits for the trials others still run (taking over a lost one)."""
    studies = {(w.problem, t.name): tuning_study(spec, w, t) for w in spec.workloads for t in spec.tracks}
    objectives = {key: objective_for(study.user_attrs["spec"]) for key, study in studies.items()}
    for round_ in range(1, spec.n_trials + 1):
        for key, study in studies.items():
            yield run_trials(study, objectives[key], round_, wait=False)
    for key, study in studies.items():
        yield run_trials(study, objectives[key], spec.n_trials)


def measure(spec: SuiteSpec) -> Iterator[int]:
    """Phase 2: tuned and default settings with every seed, tracks interleaved; yields runs done."""
    studies = {w.problem: runs_study(spec, w) for w in spec.workloads}
    settings = {(w.problem, t.name): {"tuned": best_values(tuning_study(spec, w, t)),
                                      "default": dict(t.defaults)}
                for w in spec.workloads for t in spec.tracks}
    for seed in spec.seeds:
        for workload in spec.workloads:
            study = studies[workload.problem]
            done = stored_runs(study)
            for track in spec.tracks:
                for setting in SETTINGS:
                    key = run_key(track, setting, seed)
                    if key in done:
                        continue
                    values = settings[(workload.problem, track.name)][setting]
                    config = run_config(workload, track, values, seed)
                    record_run(study, key, values, config, measure_safely(config), workload)
                    yield 1


def measure_safely(config: RunConfig) -> Measurement:
    """A measurement run; a run that fails on its hyperparameters is a miss, kept with no steps."""
    try:
        return measured_run(config)
    except RUN_ERRORS as error:
        return Measurement(None, None, None, None, None, None, None, 0, True, f"error: {error}", [])
