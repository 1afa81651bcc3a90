"""The suite's tuning through Optuna: one study per (workload, track), trials in an RDB storage.

:func:`open_study` creates or loads a study whose ``user_attrs["spec"]`` says everything that
determines its trials, and :func:`objective_for` rebuilds the objective from that spec alone, so
a process that knows only the storage URL and the study's name can work on it. :func:`run_trials`
runs trials until the study holds ``n_trials`` finished ones: a suite that was stopped continues
where it stopped.

The sampler is TPE, reseeded for every trial from the study's seed and the number of finished
trials in it: the k-th trial's parameters do not depend on whether the process ran the first
k - 1 or found them in the storage (TPE and the median pruner read finished trials only). Hopeless trials are pruned by a median pruner on intermediate
scores (:func:`~optimlab.lab.suite.measure.objective_value` of the best metric so far).
"""

from __future__ import annotations

import warnings
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

_storages: dict[str, Any] = {}


def storage_for(url: str) -> Any:
    """One Optuna RDB storage per URL in this process (making one checks the schema: slow)."""
    if url not in _storages:
        _storages[url] = optuna.storages.RDBStorage(url)
    return _storages[url]


def sampler_for(seed: int, n_trials: int, done: int) -> optuna.samplers.BaseSampler:
    """TPE seeded by ``(seed, done)``; a third of the budget (at least 2 trials) explores at random.

    ``constant_liar`` off (Optuna 5 turns it on): a trial left RUNNING by a killed process would
    otherwise weigh on every later choice as a bad result."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed * 100_003 + done, n_startup_trials=max(2, n_trials // 3),
                                          multivariate=True, constant_liar=False)


def median_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """Prune below the median once 3 trials finished, after a quarter of the budget."""
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(1, spec["budget"] // 4))


def open_study(storage_url: str, name: str, spec: dict, *, seed: int, pruner: Any) -> optuna.Study:
    """Create the study ``name`` in ``storage_url`` or load it; ``spec`` is kept in its user
    attributes, and a study of that name made from another spec is an error."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage_for(storage_url), study_name=name, direction="minimize",
                                sampler=sampler_for(seed, int(spec.get("n_trials", 10)), 0), pruner=pruner,
                                load_if_exists=True)
    stored = study.user_attrs.get("spec")
    if stored is None:
        study.set_user_attr("spec", spec)
    elif stored != spec:
        raise ValueError(f"study {name!r} in {storage_url} holds another suite's trials (made with {stored}, "
                         f"not {spec}); use another --name or --storage")
    return study


#: A trial in these states is done; a RUNNING one may belong to a process that was killed, and
#: does not count (its setting is tried again).
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int) -> int:
    """Run trials until the study holds ``n_trials`` finished ones; returns how many ran now."""
    spec = study.user_attrs.get("spec", {})
    ran = 0
    while (done := finished(study)) < n_trials:
        # seeded by the finished trials: a trial left running by a killed process shifts nothing
        study.sampler = sampler_for(int(spec.get("seed", 0)), int(spec.get("n_trials", n_trials)), done)
        study.optimize(objective, n_trials=1)
        ran += 1
    return ran


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


def objective_for(spec: dict) -> Callable[[optuna.Trial], float]:
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
