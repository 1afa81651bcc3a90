"""Learning-rate schedules by name, for runs and sweeps: ``"cosine"``, ``"warmup-cosine:warmup=100"``.

A schedule spec is stored with each run (and hashed into its key), so it is a string. Each name
maps to a *builder*: ``builder(optimizer, total_steps, **params) -> scheduler``, where the
scheduler has ``step()`` (called by the training loop after every optimizer step, so
``total_steps`` counts optimizer steps) and the params are keyword arguments with defaults,
given in the spec as ``name:key=value``.

The builders here use :mod:`torch.optim.lr_scheduler`; :func:`register_schedule` adds or
replaces one (any callable of that form, e.g. one returning a scheduler of another library):

    name            scheduler                                                  params
    constant        none                                                       -
    cosine          CosineAnnealingLR to min_factor x lr over the budget         min_factor=0.0
    linear          LinearLR from lr to end_factor x lr over the budget          end_factor=0.0
    warmup-cosine   linear warm-up from lr/warmup for warmup steps, then cosine  warmup=100
    step            StepLR: lr x gamma every `every` steps                       every=1000, gamma=0.1
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler

from optimlab.lab.specs import bind, format_spec, parse_spec, unknown

#: ``builder(optimizer, total_steps, **params)`` -> an object with ``step()``, or None (constant lr).
ScheduleBuilder = Callable[..., Any]


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    return None


def cosine(optimizer: torch.optim.Optimizer, total_steps: int, min_factor: float = 0.0) -> Any:
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps,
                                          eta_min=min_factor * optimizer.param_groups[0]["lr"])


def linear(optimizer: torch.optim.Optimizer, total_steps: int, end_factor: float = 0.0) -> Any:
    return lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=end_factor, total_iters=total_steps)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup: int = 100) -> Any:
    if warmup < 1 or warmup >= total_steps:
        raise ValueError(f"schedule warmup-cosine: warmup must be in [1, {total_steps}) (the step budget), "
                         f"got {warmup!r}")
    return lr_scheduler.SequentialLR(optimizer, [
        lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup),
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup)], milestones=[warmup])


def step_decay(optimizer: torch.optim.Optimizer, total_steps: int, every: int = 1000, gamma: float = 0.1) -> Any:
    return lr_scheduler.StepLR(optimizer, step_size=every, gamma=gamma)


SCHEDULES: dict[str, ScheduleBuilder] = {
    "constant": constant,
    "cosine": cosine,
    "linear": linear,
    "warmup-cosine": warmup_cosine,
    "step": step_decay,
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
