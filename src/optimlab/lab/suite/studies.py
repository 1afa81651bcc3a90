"""The suite's tuning studies: what they are made of, and their objective rebuilt from a spec.

One study per (workload, track), kept in an Optuna RDB storage by :mod:`.storage` and worked on,
by one process or several, through :mod:`.workers`. A study's ``spec`` (:func:`tuning_spec`) says
everything that determines its trials; :func:`objective_for`, :func:`pruner_of` and
:func:`tpe_options` rebuild the rest from it, so a process that knows only the storage URL (the
``--worker`` mode) works on the same search as the suite that made the study.

The sampler is TPE with its draws seeded per trial (:class:`.storage.TrialSeededSampler`).
Hopeless trials are pruned by a median pruner on intermediate scores
(:func:`~optimlab.lab.suite.measure.objective_value` of the best metric so far).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna

from optimlab.lab import RunConfig
from optimlab.lab.suite.measure import measured_run, objective_value
from optimlab.lab.suite.problems import Workload
from optimlab.lab.suite.tracks import Track, optimizer_kwargs

#: Failures a trial's run may end with that are results of its hyperparameters, not bugs: an
#: optimizer refusing a value, a step that needs what the loop cannot give (a line search).
RUN_ERRORS = (RuntimeError, ValueError, FloatingPointError)


def tpe_options(n_trials: int) -> dict[str, Any]:
    """TPE's options for a study of ``n_trials``: a third of the budget (at least 2 trials)
    explores at random. ``constant_liar`` off (Optuna 5 turns it on): a trial left RUNNING by a
    killed process would otherwise weigh on later choices as a bad result, and a resumed suite
    would draw other values than an uninterrupted one."""
    return {"n_startup_trials": max(2, n_trials // 3), "multivariate": True, "constant_liar": False}


def median_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """Prune below the median once 3 trials finished, after a quarter of the budget."""
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, spec["budget"] // 4))


def is_tuning(spec: Mapping[str, Any]) -> bool:
    """Whether a study's spec is a tuning study's (the ``runs`` studies keep measurements, no trials to run)."""
    return spec.get("kind") == "tuning"


def pruner_of(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    return median_pruner(spec)


def budget_of(spec: Mapping[str, Any]) -> int:
    return int(spec["n_trials"])


class PruneReporter:
    """A loop hook: reports the trial's score every ``every`` steps and stops the run when the
    pruner says the trial is hopeless."""

    def __init__(self, trial: optuna.Trial, workload: Workload, every: int) -> None:
        self.trial, self.workload, self.every = trial, workload, every
        self.problem = workload.lab_problem
        self.best: float | None = None
        self.pruned = False

    def after_evaluation(self, loop: Any, evaluation: Any) -> bool:
        value = evaluation.metrics.get(self.problem.metric)
        if value is not None and value == value:
            better = self.best is None or (value > self.best if self.problem.higher_is_better else value < self.best)
            self.best = value if better else self.best
        if evaluation.step == 0 or evaluation.step % self.every or self.problem.target_spec.reached(evaluation.metrics):
            return False  # a run that reached the target stops there: a result, never pruned
        self.trial.report(objective_value(self.problem, self.workload.budget, None, self.best), evaluation.step)
        self.pruned = self.trial.should_prune()
        return self.pruned


def tuning_spec(suite: str, workload: Workload, track: Track, n_trials: int, seed: int) -> dict[str, Any]:
    return {"kind": "tuning", "suite": suite, "problem": workload.problem, "budget": workload.budget,
            "track": track.to_dict(), "n_trials": n_trials, "seed": seed}


def objective_for(spec: Mapping[str, Any]) -> Callable[[optuna.Trial], float]:
    """The objective of a tuning study, from its spec alone: one run of the track at the trial's
    hyperparameters from the study's seed, scored by steps to the target (lower is better)."""
    workload = Workload(spec["problem"], int(spec["budget"]))
    track = Track.from_dict(spec["track"])
    problem = workload.lab_problem
    # about 5 reports a run: each is a write to the storage and a read of the study's trials
    every = max(problem.eval_every, workload.budget // 5 // problem.eval_every * problem.eval_every)

    def objective(trial: optuna.Trial) -> float:
        values = {name: trial.suggest_float(name, low, high, log=True)
                  for name, (low, high) in track.search_space.items()}
        lr, kwargs = optimizer_kwargs(track.optimizer, values)
        config = RunConfig.for_problem(problem, track.optimizer, lr, int(spec["seed"]), max_steps=workload.budget,
                                       schedule=track.schedule_spec(workload.budget), kwargs=kwargs)
        reporter = PruneReporter(trial, workload, every)
        try:
            measured = measured_run(config, (reporter,))
        except RUN_ERRORS as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            return objective_value(problem, workload.budget, None, None)
        summary = {k: v for k, v in measured.to_dict().items() if k != "curve"}
        trial.set_user_attr("measurement", summary)
        trial.set_user_attr("run_key", config.key())
        if reporter.pruned:
            raise optuna.TrialPruned()
        return objective_value(problem, workload.budget, measured.steps_to_target, measured.best_valid)

    return objective
