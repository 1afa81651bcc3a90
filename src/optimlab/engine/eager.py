"""The reference path: exactly the transform's math, as torch operations on the true shapes.

Every fast path is tested against this one. It also owns how state is made before a
parameter's first step, and how complex parameters are stepped (as pairs of reals).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import GROUP, State, Transform, scalar_dtype
from optimlab.engine.paths import path_counts
from optimlab.engine.work import GroupStep, autograd_hyperparams, plain_hyperparams, transform_hyperparams

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

    With ``differentiable=True`` the step is recorded by autograd (the caller enables it): the
    hyperparameters stay tensors in the math, and the math reads copies of each parameter and
    works on copies of its state, which are then copied into the state tensors: whatever
    autograd saved during this step is never changed in place by this step or a later one.
    """
    transform = work.transform
    differentiable = bool(work.hyperparams.get("differentiable"))
    if traced:
        hp = transform_hyperparams(work)
    else:
        hp = autograd_hyperparams(work) if differentiable else plain_hyperparams(work)
        path_counts["eager"] += len(work.params)
    steps = advance_steps(work, traced)
    views = [real_views(p, g, state) for p, g, state in zip(work.params, work.grads, work.states)]
    params = [read_only(real_p, differentiable) for real_p, _, _ in views]
    working = [working_state(real_state, differentiable) for _, _, real_state in views]
    if transform.kind == GROUP:
        us = transform.update_group([real_g for _, real_g, _ in views], params, working, hp, steps)
    else:
        us = [transform.update(real_g, p, s, hp, step)
              for (_, real_g, _), p, s, step in zip(views, params, working, steps)]
    for (real_p, _, real_state), state, worked, u in zip(views, work.states, working, us):
        real_p.add_(u)
        write_back(worked, real_state)
        keep_new_state(state, real_state)


def advance_steps(work: GroupStep, traced: bool) -> list[Any]:
    """Each parameter's state made if it has none, its ``state['step']`` advanced; the step
    counts the math reads (None where the optimizer counts no steps): numbers (a count carries
    no gradient), or float64 0-d tensors while ``torch.compile`` records the step."""
    steps = []
    for i, state in enumerate(work.states):
        if not state:
            initialize(work, i)
        step = None
        if work.counts_steps:
            count = state["step"]
            if isinstance(count, Tensor):
                # In place, not ``state["step"] += 1``: writing the key again would count as a
                # change of the state table (and, under torch.compile, change what the graph is
                # guarded on).
                count.add_(1)
                step = count.to(torch.float64) if traced else count.item()
            else:  # SparseAdam's count, a Python int as torch.optim.SparseAdam keeps it
                step = state["step"] = count + 1
        steps.append(step)
    return steps


def read_only(p: Tensor, differentiable: bool) -> Tensor:
    """The parameter as the math reads it: a copy for an autograd-recorded step (torch clones
    it there too), the parameter itself otherwise."""
    return p.clone() if differentiable else p


def working_state(state: State, differentiable: bool) -> State:
    """The state the math changes: copies of its tensors for an autograd-recorded step, the
    state itself otherwise."""
    if not differentiable:
        return state
    return {key: value.clone() if isinstance(value, Tensor) else value for key, value in state.items()}


def write_back(worked: State, state: State) -> None:
    """What the math left in a working copy of ``state`` (:func:`working_state`), in ``state``:
    copied into its tensors, which stay the same objects; keys new this step added as copies
    (what the math made may be saved by autograd)."""
    if worked is state:
        return
    for key, value in worked.items():
        old = state.get(key)
        if isinstance(old, Tensor) and isinstance(value, Tensor):
            old.copy_(value)
        elif key not in state or old is not value:
            state[key] = value.clone() if isinstance(value, Tensor) else value


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
