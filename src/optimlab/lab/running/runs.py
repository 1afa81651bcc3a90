"""One run: a problem trained by one optimizer at one learning rate from one seed.

A :class:`RunConfig` says everything that determines a run; its :meth:`~RunConfig.key` (a hash of
its canonical JSON) names the run in the results database, so a sweep that meets a key already
stored does not run it again. :func:`execute` trains the problem's model through the lab's one
training loop and returns a :class:`RunResult`: what the report needs (steps and seconds to the
target, best/final validation metric, test metric, divergence) and a curve of evaluations.

Determinism: the model's initial weights and the order of the examples both come from the
config's seed, so the same config gives the same curve (up to the seconds) on the same machine
with the same number of torch threads (a matrix product may sum in another order on another
thread count).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from optimlab.lab.problems.catalog import get_problem
from optimlab.lab.problems.problem import Problem
from optimlab.lab.running import checkpoint as checkpoints
from optimlab.lab.running.schedule_specs import build_schedule, canonical_schedule
from optimlab.lab.training.loop import StopReason, TrainResult, train
from optimlab.lab.training.zoo import get_optimizer

#: A batch loss above this many times the first batch loss counts as divergence.
EXPLODE = 1e3


class _ProblemDefault:
    def __repr__(self) -> str:
        return "PROBLEM_DEFAULT"


#: For :meth:`RunConfig.for_problem`: take the value from the problem.
PROBLEM_DEFAULT: Any = _ProblemDefault()


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run.

    ``problem`` is a problem spec (stored in canonical form), ``optimizer`` a name of
    :mod:`optimlab.lab.training.zoo`, ``batch_size`` None for full batch, ``max_steps`` the budget,
    ``schedule`` a schedule spec of :mod:`optimlab.lab.running.schedule_specs` (None: constant lr),
    ``kwargs`` extra optimizer keyword arguments (JSON values) over the zoo's fixed ones, and
    ``stop_at_target`` whether the run ends when the validation metric reaches the target.
    Use :meth:`for_problem` to take the batch size and budget from the problem.
    """

    problem: str
    optimizer: str
    lr: float
    seed: int = 0
    batch_size: int | None = None
    max_steps: int = 1000
    schedule: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    stop_at_target: bool = True

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        fix("problem", get_problem(self.problem).name)
        get_optimizer(self.optimizer)
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
            raise ValueError(f"RunConfig: lr must be a positive finite number, got {lr!r}")
        fix("lr", float(lr))
        for name in ("seed", "batch_size", "max_steps"):
            value = getattr(self, name)
            low = 0 if name == "seed" else 1
            if value is None and name == "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"RunConfig: {name} must be an int >= {low}"
                                 f"{' or None (full batch)' if name == 'batch_size' else ''}, got {value!r}")
            fix(name, int(value))
        fix("schedule", canonical_schedule(self.schedule))
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise TypeError(f"RunConfig: kwargs must be a mapping of argument names, got {self.kwargs!r}")
        for name in ("lr", "params"):
            if name in self.kwargs:
                raise ValueError(f"RunConfig: kwargs must not contain {name!r} (it is set by the run)")
        try:
            kwargs = json.loads(json.dumps(dict(self.kwargs), sort_keys=True))
        except (TypeError, ValueError) as error:
            raise TypeError(f"RunConfig: kwargs must hold JSON values (numbers, strings, booleans, lists), "
                            f"got {dict(self.kwargs)!r}: {error}") from None
        fix("kwargs", MappingProxyType(kwargs))
        if not isinstance(self.stop_at_target, bool):
            raise TypeError(f"RunConfig: stop_at_target must be a bool, got {self.stop_at_target!r}")

    @classmethod
    def for_problem(cls, problem: str | Problem, optimizer: str, lr: float, seed: int = 0, *,
                    batch_size: Any = PROBLEM_DEFAULT, max_steps: Any = PROBLEM_DEFAULT,
                    schedule: str | None = None, kwargs: Mapping[str, Any] | None = None,
                    stop_at_target: bool = True) -> RunConfig:
        """A config whose batch size and step budget default to the problem's."""
        problem = problem if isinstance(problem, Problem) else get_problem(problem)
        return cls(problem.name, optimizer, lr, seed,
                   problem.batch_size if batch_size is PROBLEM_DEFAULT else batch_size,
                   problem.max_steps if max_steps is PROBLEM_DEFAULT else max_steps,
                   schedule, kwargs or {}, stop_at_target)

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "optimizer": self.optimizer, "lr": self.lr, "seed": self.seed,
                "batch_size": self.batch_size, "max_steps": self.max_steps, "schedule": self.schedule,
                "kwargs": dict(self.kwargs), "stop_at_target": self.stop_at_target}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        known = {"problem", "optimizer", "lr", "seed", "batch_size", "max_steps", "schedule", "kwargs",
                 "stop_at_target"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"RunConfig.from_dict: unknown fields {sorted(extra)}; valid fields: {sorted(known)}")
        return cls(**data)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def key(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON and the problem's fingerprint:
        equal configs, equal keys; a changed problem definition (another model, target, ...)
        gives new keys, so its old results are not reused. So do the fixed arguments the lab
        gives an optimizer (L-BFGS's ``max_iter``, Muon's ``ns_dtype``), for those that have any."""
        text = self.canonical_json() + "\n" + get_problem(self.problem).fingerprint
        fixed = get_optimizer(self.optimizer).kwargs
        if fixed:
            text += "\n" + json.dumps({name: str(value) for name, value in sorted(fixed.items())})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __hash__(self) -> int:
        return hash(self.canonical_json())

    def with_seed(self, seed: int) -> RunConfig:
        return RunConfig(**{**self.to_dict(), "seed": seed})


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation: after ``step`` steps and ``seconds`` of training (evaluation excluded),
    the mean training batch loss since the previous evaluation (None at step 0), and the
    validation loss and metric. Values that were not finite are None."""

    step: int
    seconds: float
    train_loss: float | None
    valid_loss: float | None
    valid_metric: float | None


@dataclass
class RunResult:
    """What a run did. Metric values are None where there is none (or it was not finite).

    ``steps_to_target`` / ``seconds_to_target``: the first evaluation at which the validation
    metric reached the target (None if it never did). ``best_valid``: the best validation
    metric over all evaluations; ``final_valid``: the last one. ``test_metric`` / ``test_loss``:
    the trained model on the test split (None for a diverged run). ``metric``,
    ``higher_is_better`` and ``target`` repeat the problem's, so a stored result explains itself.
    """

    stop_reason: StopReason
    steps: int
    seconds: float
    steps_to_target: int | None
    seconds_to_target: float | None
    best_valid: float | None
    final_valid: float | None
    test_metric: float | None
    test_loss: float | None
    diverged: bool
    metric: str
    higher_is_better: bool
    target: float
    message: str = ""
    curve: list[CurvePoint] = field(default_factory=list)

    @property
    def reached_target(self) -> bool:
        return self.steps_to_target is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop_reason"] = self.stop_reason.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        data = dict(data)
        data["stop_reason"] = StopReason(data["stop_reason"])
        data["curve"] = [CurvePoint(**point) for point in data.get("curve", [])]
        return cls(**data)


def finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def summarize(problem: Problem, trained: TrainResult, test: Mapping[str, float] | None) -> RunResult:
    """The :class:`RunResult` of a finished :func:`train` call."""
    curve, previous = [], 0
    for evaluation in trained.evaluations:
        losses = [r.loss for r in trained.records[previous:evaluation.step]]
        previous = evaluation.step
        curve.append(CurvePoint(evaluation.step, evaluation.seconds,
                                finite(sum(losses) / len(losses)) if losses else None,
                                finite(evaluation.metrics.get("loss")),
                                finite(evaluation.metrics.get(problem.metric))))
    target = problem.target_spec
    reached = next((e for e in trained.evaluations if target.reached(e.metrics)), None)
    values = [p.valid_metric for p in curve if p.valid_metric is not None]
    best = (max if problem.higher_is_better else min)(values) if values else None
    final = curve[-1].valid_metric if curve else None
    test = test or {}
    return RunResult(trained.stop_reason, trained.steps, trained.seconds,
                     None if reached is None else reached.step, None if reached is None else reached.seconds,
                     best, final, finite(test.get(problem.metric)), finite(test.get("loss")), trained.diverged,
                     problem.metric, problem.higher_is_better, problem.target, trained.message, curve)


def execute(config: RunConfig, *, progress: bool | None = False, threads: int | None = None,
            checkpoint: Path | None = None, checkpoint_every: int | None = None,
            hooks: Sequence[Any] = ()) -> RunResult:
    """Run ``config``: build the model from its seed, train it, evaluate it on the test split.

    The optimizer gets the problem's param groups if it has them (fine-tuning: head and body
    learning rates), the run's schedule or else the problem's, and the problem's loop hooks.

    A batch loss that is not finite or exceeds ``EXPLODE`` (1e3) times the first one ends the
    run as diverged (a result, not an error). ``threads`` sets torch's thread count for this
    process first (worker processes use 1). Ctrl-C returns an INTERRUPTED result (not tested).

    ``checkpoint``: a file to save the run's state in every ``checkpoint_every`` steps (default:
    the problem's evaluation interval), atomically (:mod:`optimlab.lab.running.checkpoint`); if it holds a
    checkpoint of this run, the run goes on from there, exactly as if it had not stopped.

    ``hooks``: more loop hooks after the problem's (:func:`~optimlab.lab.loop.train`): a step
    timer, a pruner that stops a hopeless run.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    problem = get_problem(config.problem)
    data = problem.load()
    model = problem.build_model(config.seed)
    # Dropout draws from the global generator during training: seed it too, or a run with
    # dropout would depend on what the process did before (a sweep worker's earlier runs).
    torch.manual_seed(config.seed)
    optimizer = get_optimizer(config.optimizer).make(problem.optimizer_params(model, config.lr), config.lr,
                                                     **config.kwargs)
    schedule = config.schedule if config.schedule is not None else problem.schedule
    scheduler = build_schedule(schedule, optimizer, config.max_steps)
    extra_hooks = list(hooks)
    hooks = problem.loop_hooks(model)
    resume, saver = None, None
    if checkpoint is not None:
        key = config.key()
        saved = checkpoints.load(checkpoint, key)
        if saved is not None:
            resume = checkpoints.restore(saved, model, optimizer, scheduler, hooks)
        saver = checkpoints.Checkpointer(checkpoint, key, checkpoint_every or problem.eval_every, hooks)
    trained = train(model, problem.loss_fn, optimizer, data.train, batch_size=config.batch_size,
                    steps=config.max_steps, seed=config.seed, evaluate=lambda m: problem.evaluate(m, data.valid),
                    eval_every=problem.eval_every, scheduler=scheduler,
                    target=problem.target_spec if config.stop_at_target else None,
                    explode=EXPLODE, penalty=problem.penalty, progress=progress,
                    hooks=[*hooks, *([] if saver is None else [saver]), *extra_hooks],
                    accumulate=problem.accumulate,
                    autocast=problem.autocast, resume=resume)
    finished = trained.stop_reason not in (StopReason.DIVERGED, StopReason.INTERRUPTED)
    if saver is not None and finished and saver.loop is not None:
        saver.save(saver.loop, finished=True)  # the trained weights; a rerun only evaluates them
    test = problem.evaluate(model, data.test) if finished else None
    return summarize(problem, trained, test)
