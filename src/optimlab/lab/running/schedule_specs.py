"""Learning-rate schedules by name, for runs and sweeps: ``"cosine"``, ``"warmup-cosine:warmup=100"``.

A schedule spec is stored with each run (and hashed into its key), so it is a string. Each name
maps to a *builder*: ``builder(optimizer, total_steps, **params) -> scheduler``, where the
scheduler has ``step()`` (called by the training loop after every optimizer step, so
``total_steps`` counts optimizer steps) and the params are keyword arguments with defaults,
given in the spec as ``name:key=value``.

The builders here are optimlab's closed-form schedules (:mod:`optimlab.schedules`), attached as a
:class:`~optimlab.schedules.Scheduler` that multiplies the group's learning rate (``relative=True``),
so any optimizer works. :func:`register_schedule` adds or replaces one (any callable of that form):

    name            learning rate, as a factor of the run's lr                 params
    constant        1                                                          -
    cosine          cosine from 1 to min_factor over the budget                min_factor=0.0
    linear          linear from 1 to end_factor over the budget                end_factor=0.0
    warmup-cosine   linear warm-up from 1/warmup to 1 in warmup steps, then    warmup=100
                    cosine to 0 over the rest of the budget
    wsd             warm-up, stable, then linear decay to 0 in the last        warmup=100, decay=0.2
                    `decay` fraction of the budget
    one-cycle       one-cycle (cos) peaking at the lr after pct_start          pct_start=0.3
    step            x gamma every `every` steps                                every=1000, gamma=0.1
    warmup-linear   fine-tuning: linear warm-up from 0 over a fraction (< 1)     warmup=0.1
                    or number of steps, then linear decay to 0 (as Hugging
                    Face's get_linear_schedule_with_warmup; optimlab.finetune)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optimlab import schedules
from optimlab.finetune.schedule import warmup_decay
from optimlab.lab.training.specs import bind, format_spec, parse_spec, unknown

#: ``builder(optimizer, total_steps, **params)`` -> an object with ``step()``, or None (constant lr).
ScheduleBuilder = Callable[..., Any]


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    return None


def relative(optimizer: torch.optim.Optimizer, factor: schedules.Schedule) -> schedules.Scheduler:
    """A scheduler that sets every group's lr to its starting lr times ``factor(step)``."""
    return schedules.Scheduler(optimizer, {"lr": factor}, relative=True)


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, min_factor: float = 0.0) -> Any:
    return relative(optimizer, schedules.cosine(1.0, total_steps, floor=min_factor))


def linear(optimizer: torch.optim.Optimizer, total_steps: int, end_factor: float = 0.0) -> Any:
    return relative(optimizer, schedules.linear(1.0, end_factor, total_steps))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: int = 100) -> Any:
    if warmup < 1 or warmup >= total_steps:
        raise ValueError(f"schedule warmup-cosine: warmup must be in [1, {total_steps}) (the step budget), "
                         f"got {warmup!r}")
    return relative(optimizer, schedules.sequence(schedules.linear_warmup(1.0, warmup, start=1.0 / warmup),
                                                  schedules.cosine(1.0, total_steps - warmup)))


def wsd(optimizer: torch.optim.Optimizer, total_steps: int, warmup: int = 100, decay: float = 0.2) -> Any:
    if not 0 < decay < 1:
        raise ValueError(f"schedule wsd: decay must be a fraction of the budget in (0, 1), got {decay!r}")
    decay_steps = max(1, round(decay * total_steps))
    if warmup < 0 or warmup + decay_steps > total_steps:
        raise ValueError(f"schedule wsd: warmup must be in [0, {total_steps - decay_steps}] (the budget less "
                         f"the decay), got {warmup!r}")
    start = 1.0 / warmup if warmup else 1.0  # the first step already moves, as in warmup-cosine
    return relative(optimizer, schedules.wsd(1.0, total_steps, warmup=warmup, decay=decay_steps, start=start))


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.3) -> Any:
    return relative(optimizer, schedules.one_cycle(1.0, total_steps, pct_start=pct_start))


def step_decay(optimizer: torch.optim.Optimizer, total_steps: int, every: int = 1000, gamma: float = 0.1) -> Any:
    return relative(optimizer, schedules.step_decay(1.0, every, gamma))


def warmup_linear(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1) -> Any:
    return warmup_decay(optimizer, total_steps, warmup, "linear")


SCHEDULES: dict[str, ScheduleBuilder] = {
    "constant": constant,
    "cosine": cosine,
    "linear": linear,
    "warmup-cosine": warmup_cosine,
    "wsd": wsd,
    "one-cycle": one_cycle,
    "step": step_decay,
    "warmup-linear": warmup_linear,
}


def register_schedule(name: str, builder: ScheduleBuilder) -> None:
    """Make ``name`` build its scheduler with ``builder(optimizer, total_steps, **params)``."""
    if not isinstance(name, str) or not name or ":" in name or "," in name:
        raise ValueError(f"register_schedule: name must be a non-empty string without ':' or ',', got {name!r}")
    if not callable(builder):
        raise TypeError(f"register_schedule: builder must be callable, got {type(builder).__name__}")
    SCHEDULES[name] = builder


def canonical_schedule(spec: str | None) -> str | None:
    """The canonical form of ``spec`` (None and "constant" are both None); checks the name and
    the parameters, raising errors that list the valid ones."""
    if spec is None:
        return None
    name, params = parse_spec(spec, "schedule")
    if name not in SCHEDULES:
        raise unknown("schedule", name, SCHEDULES)
    bound = bind(f"schedule {name!r}", SCHEDULES[name], params)
    return None if name == "constant" and not bound else format_spec(name, bound)


def build_schedule(spec: str | None, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """The scheduler ``spec`` names for ``optimizer`` over ``total_steps`` steps (None: constant)."""
    spec = canonical_schedule(spec)
    if spec is None:
        return None
    name, params = parse_spec(spec, "schedule")
    return SCHEDULES[name](optimizer, total_steps, **bind(f"schedule {name!r}", SCHEDULES[name], params))
