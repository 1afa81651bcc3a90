"""The engine: the one loop that runs a transform over parameter groups.

Every optimizer's step comes here as a list of :class:`GroupStep` (what to run, on which
tensors, with which hyperparameters). The engine first checks all of it, then changes
anything: a step that raises leaves parameters and state as they were.

Execution path: ``eager`` runs the transform tensor by tensor with hyperparameters as Python
numbers. It is the reference that any faster path is compared against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimlab.core import State, Transform


@dataclass
class GroupStep:
    """One parameter group's share of a step: only the parameters that have a gradient."""

    transform: Transform
    hyperparams: Mapping[str, Any]
    params: list[Tensor]
    grads: list[Tensor]
    states: list[State]
    names: list[str]
    #: Keep torch.optim's per-parameter ``state['step']`` and pass the count to the transform.
    counts_steps: bool
    owner: str = "optimizer"


def step_dtype() -> torch.dtype:
    """dtype of ``state['step']``, as torch.optim makes it (float32 unless float64 is default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def check(work: GroupStep) -> None:
    """Raise a clear error for anything the step cannot do, before any tensor is touched."""
    for p, g, state, name in zip(work.params, work.grads, work.states, work.names):
        if g.is_sparse:
            raise RuntimeError(
                f"{work.owner}: parameter {name} has a sparse gradient, which this optimizer does "
                "not support; use torch.optim.SparseAdam or a dense embedding (sparse=False)"
            )
        if g.shape != p.shape:
            raise RuntimeError(f"{work.owner}: gradient of parameter {name} has shape {tuple(g.shape)}, "
                               f"expected the parameter's shape {tuple(p.shape)}")
        if g.dtype != p.dtype or g.device != p.device:
            raise RuntimeError(f"{work.owner}: gradient of parameter {name} is {g.dtype} on {g.device}, "
                               f"expected {p.dtype} on {p.device} like the parameter")
        check_state_shapes(work.owner, name, p, state)


def check_state_shapes(owner: str, name: str, param: Tensor, state: Mapping[str, Any]) -> None:
    """Every state tensor but the step count has the parameter's shape."""
    for key, value in state.items():
        if key != "step" and isinstance(value, Tensor) and value.shape != param.shape:
            raise ValueError(
                f"{owner}: state {key!r} for parameter {name} has shape {tuple(value.shape)}, but the "
                f"parameter has shape {tuple(param.shape)}: the state belongs to other parameters"
            )


def run(works: Sequence[GroupStep]) -> None:
    """Check every group, then step every group."""
    for work in works:
        check(work)
    for work in works:
        run_eager(work)


def plain_hyperparams(work: GroupStep) -> dict[str, Any]:
    """The group's hyperparameters as Python numbers (0-d tensors read once per step)."""
    def plain(value: Any) -> Any:
        if isinstance(value, Tensor) and value.numel() == 1:
            return value.item()
        if isinstance(value, tuple):
            return tuple(plain(v) for v in value)
        return value

    return {k: plain(work.hyperparams[k]) for k in work.transform.hyperparams if k in work.hyperparams}


def run_eager(work: GroupStep) -> None:
    """The reference path: one parameter at a time, exactly the transform's math."""
    transform, hp = work.transform, plain_hyperparams(work)
    for p, g, state in zip(work.params, work.grads, work.states):
        if not state:
            if work.counts_steps:
                state["step"] = torch.tensor(0.0, dtype=step_dtype())
            state.update(init_state(transform, p))
        step = None
        if work.counts_steps:
            state["step"] += 1
            step = state["step"].item()
        if p.is_complex():
            step_complex(transform, p, g, state, hp, step)
        else:
            p.add_(transform.update(g, p, state, hp, step))


def init_state(transform: Transform, p: Tensor) -> dict[str, Any]:
    """The transform's initial state for ``p``; a complex parameter's is made for its real view
    (so a value ``v`` fills real and imaginary parts alike, as torch.optim does) and kept complex."""
    if not p.is_complex():
        return transform.init(p)
    return {key: torch.view_as_complex(value) if isinstance(value, Tensor) else value
            for key, value in transform.init(torch.view_as_real(p)).items()}


def step_complex(transform: Transform, p: Tensor, g: Tensor, state: State, hp: Mapping[str, Any], step: Any) -> None:
    """Complex parameters are stepped as pairs of reals (as torch.optim does): the state keeps
    complex tensors, shown to the math through real views."""
    real_state = {k: torch.view_as_real(v) if isinstance(v, Tensor) and v.is_complex() else v
                  for k, v in state.items()}
    real_p = torch.view_as_real(p)
    real_p.add_(transform.update(torch.view_as_real(g), real_p, real_state, hp, step))
    for key, value in real_state.items():
        if key not in state:  # state the math created during this step
            state[key] = torch.view_as_complex(value) if isinstance(value, Tensor) else value
