"""Hyperparameter schedules: pure functions of the step, composable, for any hyperparameter.

    from optimlab.schedules import cosine, linear_warmup, sequence, Scheduler

    lr = sequence(linear_warmup(3e-4, 500), cosine(3e-4, 9500, floor=3e-5))
    lr(0), lr(500), lr(10_000)            # inspect any step, no optimizer needed
    opt = optimlab.AdamW(model.parameters(), lr=lr)          # the direct form, or
    sched = Scheduler(torch_opt, {"lr": lr, "weight_decay": linear(0.0, 0.1, 10_000)})

Schedules give values, not factors (``Scheduler(..., relative=True)`` reads them as factors of
each group's base value, as torch does). All are closed forms of the step except
:func:`reduce_on_plateau`, the one stateful schedule, fed a metric. See ``docs/schedules.md``.
"""

from optimlab.schedules.base import Constant, Monotone, Product, Schedule
from optimlab.schedules.compose import Join, join, sequence, wsd
from optimlab.schedules.cycles import Cyclic, OneCycle, WarmRestarts, cyclic, one_cycle, warm_restarts
from optimlab.schedules.decay import Exponential, MultiStep, StepDecay, constant, exponential, multistep, step_decay
from optimlab.schedules.plateau import ReduceOnPlateau, reduce_on_plateau
from optimlab.schedules.plot import plot, trace
from optimlab.schedules.ramps import (
    InverseSqrt,
    Polynomial,
    Ramp,
    cosine,
    exponential_warmup,
    interpolate,
    inverse_sqrt,
    linear,
    linear_warmup,
    polynomial,
    ramp,
)
from optimlab.schedules.scheduler import Scheduler

__all__ = [
    "Constant", "Cyclic", "Exponential", "InverseSqrt", "Join", "Monotone", "MultiStep", "OneCycle", "Polynomial",
    "Product", "Ramp", "ReduceOnPlateau", "Schedule", "Scheduler", "StepDecay", "WarmRestarts",
    "constant", "cosine", "cyclic", "exponential", "exponential_warmup", "interpolate", "inverse_sqrt", "join",
    "linear", "linear_warmup", "multistep", "one_cycle", "plot", "polynomial", "ramp", "reduce_on_plateau",
    "sequence", "step_decay", "trace", "warm_restarts", "wsd",
]
