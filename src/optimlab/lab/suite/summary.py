"""From the storage to the numbers: per workload and track, the tuned and default settings'
steps and seconds to the target with intervals, the performance profiles and the scores.

Everything here reads the studies; nothing runs. Seconds to the target are the robust ones
(median step time x steps, :mod:`~optimlab.lab.suite.measure`). A measurement is *noisy* when
the median step time of one track varies by more than :data:`NOISE_SPREAD` x over its seeds (the
same work per step, so the machine's load made the difference) or the wall time exceeds the CPU
time by :data:`NOISE_LOAD` x; seconds profiles leave out every workload with a noisy
measurement, and the report shows the flag instead of ranking on it.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from optimlab.lab.suite import stats
from optimlab.lab.suite.measure import Measurement, load_ratio
from optimlab.lab.suite.problems import Workload
from optimlab.lab.suite.protocol import (
    SETTINGS,
    SuiteSpec,
    run_key,
    runs_study,
    stored_runs,
    tuning_study,
)
from optimlab.lab.suite.storage import finished_trials

NOISE_SPREAD = 1.5
NOISE_LOAD = 1.5


def interval(values: list[float]) -> dict[str, float | None]:
    """Mean and 95% interval of positive quantities (the interval's low end clipped at 0)."""
    if not values:
        return {"mean": None, "low": None, "high": None}
    mean, low, high = stats.mean_interval(values)
    return {"mean": mean, "low": None if low is None else max(low, 0.0), "high": high}


def setting_summary(measurements: list[Measurement], values: dict[str, float]) -> dict[str, Any]:
    """One setting's runs over the seeds: counts, steps / seconds / CPU seconds to the target
    (mean and 95% interval over the seeds that reached it, median counting misses as inf)."""
    steps = [m.steps_to_target for m in measurements]
    reached = [m for m in measurements if m.steps_to_target is not None]
    step_times = [m.median_step_wall for m in measurements if m.median_step_wall]
    spread, load = stats.spread(step_times), load_ratio(measurements)
    noisy = (spread is not None and spread > NOISE_SPREAD) or (load is not None and load > NOISE_LOAD)
    return {
        "values": values, "seeds": len(measurements), "reached": len(reached),
        "steps_per_seed": steps,
        "steps": {**interval([float(m.steps_to_target) for m in reached]),
                  "median": stats.median_with_misses(steps) if steps else math.inf},
        "seconds": {**interval([m.wall_to_target for m in reached if m.wall_to_target is not None]),
                    "median": stats.median_with_misses([m.wall_to_target for m in measurements]) if steps else math.inf},
        "cpu_seconds": interval([m.cpu_to_target for m in reached if m.cpu_to_target is not None]),
        "step_time_spread": spread, "wall_over_cpu": load, "noisy": bool(noisy),
        "best_valid": [m.best_valid for m in measurements],
    }


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The study's finished trials (a lost trial that was run again counts once: its retry)."""
    rows = []
    for trial in finished_trials(study.get_trials(deepcopy=False)):
        measured = trial.user_attrs.get("measurement", {})
        rows.append({"number": trial.number, "state": trial.state.name, "value": trial.value,
                     "params": dict(trial.params), "best_valid": measured.get("best_valid"),
                     "steps_to_target": measured.get("steps_to_target"),
                     "diverged": bool(measured.get("diverged", "error" in trial.user_attrs))})
    return rows


def workload_summary(spec: SuiteSpec, workload: Workload) -> dict[str, Any]:
    runs = stored_runs(runs_study(spec, workload))
    problem = workload.lab_problem
    tracks = {}
    for track in spec.tracks:
        entry: dict[str, Any] = {"trials": trial_rows(tuning_study(spec, workload, track))}
        for setting in SETTINGS:
            found = [runs[run_key(track, setting, s)] for s in spec.seeds if run_key(track, setting, s) in runs]
            measurements = [Measurement.from_dict(r["measurement"]) for r in found]
            curves = [r["measurement"]["curve"] for r in found]
            entry[setting] = {**setting_summary(measurements, found[0]["values"] if found else {}), "curves": curves}
        tracks[track.name] = entry
    return {"problem": workload.problem, "budget": workload.budget, "metric": problem.metric,
            "higher_is_better": problem.higher_is_better, "target": problem.target,
            "description": problem.description, "tracks": tracks}


def profiles_and_scores(workloads: dict[str, Any], tracks: list[str]) -> dict[str, Any]:
    """Profiles (steps and seconds, tuned; steps, self-tuning) and each track's score in each."""
    def times(setting: str, unit: str, skip: set[str]) -> dict[str, dict[str, float]]:
        return {t: {w: data["tracks"][t][setting][unit]["median"] for w, data in workloads.items() if w not in skip}
                for t in tracks}

    noisy = {w for w, data in workloads.items() if any(data["tracks"][t]["tuned"]["noisy"] for t in tracks)}
    out: dict[str, Any] = {"taus": stats.TAUS.tolist(), "noisy_workloads": sorted(noisy)}
    for name, setting, unit, skip in (("tuned_steps", "tuned", "steps", set()),
                                      ("tuned_seconds", "tuned", "seconds", noisy),
                                      ("self_tuning_steps", "default", "steps", set())):
        profiles = stats.performance_profiles(times(setting, unit, skip))
        out[name] = {"profiles": {t: p.tolist() for t, p in profiles.items()},
                     "scores": {t: stats.profile_score(p) for t, p in profiles.items()}}
    return out


def summarize(spec: SuiteSpec) -> dict[str, Any]:
    """Everything the report and the JSON show, as plain data."""
    workloads = {w.problem: workload_summary(spec, w) for w in spec.workloads}
    tracks = [t.name for t in spec.tracks]
    return {"suite": spec.name, "storage": spec.storage, "n_trials": spec.n_trials, "seeds": list(spec.seeds),
            "tracks": {t.name: {"label": t.label, "optimizer": t.optimizer, "schedule": t.schedule,
                                "search_space": {k: list(v) for k, v in t.search_space.items()}}
                       for t in spec.tracks},
            "workloads": workloads, "profiles": profiles_and_scores(workloads, tracks)}
