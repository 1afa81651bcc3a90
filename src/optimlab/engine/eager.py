"""The reference path: exactly the transform's math, as torch operations on the true shapes.

Every fast path is tested against this one. It also owns how state is made before a
parameter's first step, and how complex parameters are stepped (as pairs of reals).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from optimlab.core import GROUP, State, Transform, scalar_dtype
from optimlab.engine.paths import path_counts
from optimlab.engine.work import GroupStep, plain_hyperparams, transform_hyperparams

#: dtype of ``state['step']``, as torch.optim makes it (float32 unless float64 is the default).
step_dtype = scalar_dtype


def initialize(work: GroupStep, i: int) -> None:
    """A parameter's state before its first step (:func:`initial_state`)."""
    work.states[i].update(initial_state(work.transform, work.params[i], work.counts_steps))


def initial_state(transform: Transform, p: Tensor, counts_steps: bool) -> dict[str, Any]:
    """A parameter's state before its first step: torch's step count, then the transform's own."""
    state: dict[str, Any] = {"step": torch.tensor(0.0, dtype=step_dtype())} if counts_steps else {}
    state.update(init_state(transform, p))
    return state


def run_eager(work: GroupStep, traced: bool = False) -> None:
    """The reference path: exactly the transform's math, one parameter at a time (all of the
    group's parameters at once for a transform of the group kind).

    ``traced``: the step is being recorded by ``torch.compile`` (dynamo). Then nothing is read
    back to Python: the step count reaches the math as a float64 0-d tensor (the eager path's
    Python float, without ``.item()``) and hyperparameters that are tensors stay tensors, so
    the graph is the same on every step and a tensor learning rate changed in place (by a
    scheduler) needs no recompile.
    """
    transform = work.transform
    hp = transform_hyperparams(work) if traced else plain_hyperparams(work)
    if not traced:
        path_counts["eager"] += len(work.params)
    steps = []
    for i, state in enumerate(work.states):
        if not state:
            initialize(work, i)
        step = None
        if work.counts_steps:
            # In place, not ``state["step"] += 1``: writing the key again would count as a change
            # of the state table (and, under torch.compile, change what the graph is guarded on).
            count = state["step"].add_(1)
            step = count.to(torch.float64) if traced else count.item()
        steps.append(step)
    if transform.kind == GROUP:
        views = [real_views(p, g, state) for p, g, state in zip(work.params, work.grads, work.states)]
        us = transform.update_group([v[1] for v in views], [v[0] for v in views], [v[2] for v in views], hp, steps)
        for (real_p, _, real_state), state, u in zip(views, work.states, us):
            real_p.add_(u)
            keep_new_state(state, real_state)
        return
    for p, g, state, step in zip(work.params, work.grads, work.states, steps):
        if p.is_complex():
            step_complex(transform, p, g, state, hp, step)
        else:
            p.add_(transform.update(g, p, state, hp, step))


def init_state(transform: Transform, p: Tensor) -> dict[str, Any]:
    """The transform's initial state for ``p``; a complex parameter's is made for its real view
    (so a value ``v`` fills real and imaginary parts alike, as torch.optim does) and kept complex."""
    if not p.is_complex():
        return transform.init(p)
    real = torch.view_as_real(p)
    return {key: torch.view_as_complex(value) if isinstance(value, Tensor) and value.shape == real.shape else value
            for key, value in transform.init(real).items()}


def real_views(p: Tensor, g: Tensor, state: State) -> tuple[Tensor, Tensor, State]:
    """A parameter, its gradient and state as the math sees them: complex tensors as real views
    (torch.optim steps complex parameters as pairs of reals); real ones as they are."""
    if not p.is_complex():
        return p, g, state
    real_state = {k: torch.view_as_real(v) if isinstance(v, Tensor) and v.is_complex() else v
                  for k, v in state.items()}
    return torch.view_as_real(p), torch.view_as_real(g), real_state


def keep_new_state(state: State, real_state: State) -> None:
    """State the math created during a step on real views, kept (complex again) in ``state``."""
    if real_state is state:
        return
    for key, value in real_state.items():
        if key not in state:
            state[key] = torch.view_as_complex(value) if isinstance(value, Tensor) and value.dim() else value


def step_complex(transform: Transform, p: Tensor, g: Tensor, state: State, hp: Mapping[str, Any], step: Any) -> None:
    """Complex parameters are stepped as pairs of reals (as torch.optim does): the state keeps
    complex tensors, shown to the math through real views."""
    real_p, real_g, real_state = real_views(p, g, state)
    real_p.add_(transform.update(real_g, real_p, real_state, hp, step))
    keep_new_state(state, real_state)
