"""The engine: the one loop that runs a transform over parameter groups.

Every optimizer's step comes here as a list of :class:`GroupStep` (what to run, on which
tensors, with which hyperparameters). The engine first checks all of it, then changes
anything: a step that raises leaves parameters and state as they were.

Execution paths (all run the same :meth:`Transform.update`; see docs/performance.md):

* ``eager`` runs the transform tensor by tensor with hyperparameters as Python numbers. It is
  the reference that the other paths are tested against.
* ``fused`` traces the transform once into an elementwise program and runs it as one
  generated C kernel per group (:mod:`optimlab.engine_trace`, :mod:`optimlab.engine_cpu`,
  :mod:`optimlab.engine_fused`): CPU parameters of float32, float64, bfloat16 or float16.
* ``triton`` runs the traced program as one generated Triton kernel per group
  (:mod:`optimlab.engine_triton`), for CUDA parameters where Triton is installed; chosen by
  ``auto`` only with ``OPTIMLAB_TRITON_AUTO=1`` until it has run on a GPU.
* ``compiled`` runs the transform under ``torch.compile`` (:mod:`optimlab.engine_compiled`),
  hyperparameters as 0-d tensors: the path for CUDA parameters.
* ``auto`` (the default) picks ``fused`` on CPU and ``compiled`` on CUDA, and keeps ``eager``
  for each parameter where neither applies (complex parameters, sparse or non-dense
  tensors, a transform the tracer cannot express, no C compiler). A path that fails to build
  falls back to eager with one warning; training never stops because of it.

Choose with :func:`set_path`, :func:`using`, or the environment variable ``OPTIMLAB_ENGINE``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import operator
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimlab.core import State, Transform
from optimlab.engine_state import StateTable

PATHS = ("auto", "eager", "fused", "compiled", "triton")

_path = os.environ.get("OPTIMLAB_ENGINE", "auto")
if _path not in PATHS:
    warnings.warn(f"OPTIMLAB_ENGINE={_path!r} is not one of {PATHS}; using 'auto'", stacklevel=1)
    _path = "auto"

#: How many parameter updates each path has run (``engine.path_counts["fused"]``): tests use it
#: to know that a path really ran; nothing in the engine reads it.
path_counts: collections.Counter = collections.Counter()


def set_path(name: str) -> None:
    """Choose the execution path for every optimizer: one of :data:`PATHS`."""
    global _path
    if name not in PATHS:
        raise ValueError(f"optimlab.engine.set_path: path must be one of {PATHS}, got {name!r}")
    _path = name


def get_path() -> str:
    return _path


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    """``with engine.using("eager"): ...`` runs the block on one path, then restores the previous one."""
    previous = _path
    set_path(name)
    try:
        yield
    finally:
        set_path(previous)


_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


@dataclass
class GroupStep:
    """One parameter group's share of a step: only the parameters that have a gradient."""

    transform: Transform
    hyperparams: Mapping[str, Any]
    params: list[Tensor]
    grads: list[Tensor]
    states: list[State]
    #: Names for messages (a list, or :class:`LazyNames`, which makes them only when read).
    names: Sequence[str]
    #: Keep torch.optim's per-parameter ``state['step']`` and pass the count to the transform.
    counts_steps: bool
    owner: str = "optimizer"
    #: ``(state table, its version)`` when every state dict here is counted by that table
    #: (:mod:`optimlab.engine_state`): the same token on a later step means no state changed.
    state_token: tuple | None = None


class LazyNames(Sequence[str]):
    """Parameter names for error messages, made only when one is read (a step makes none)."""

    def __init__(self, positions: Sequence[int], name_of: Callable[[int], str]) -> None:
        self.positions = positions
        self.name_of = name_of

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.name_of(i) for i in self.positions[index]]
        return self.name_of(self.positions[index])


_grad = operator.attrgetter("grad")


def collect(transform: Transform, group: Mapping[str, Any], state: Mapping[Tensor, State], counts_steps: bool,
            owner: str, name_of: Callable[[int], str]) -> GroupStep:
    """A group's share of a step: the parameters that have a gradient (the others are skipped,
    and their step counts do not advance), with their gradients and states."""
    every = group["params"]
    grads = list(map(_grad, every))
    if not any(map(operator.is_, grads, itertools.repeat(None))):  # the usual case: all of them
        if type(state) is StateTable:
            states, counted = state.states_of(every)
            # (table, version): while both are the same, no state dict of this group changed.
            token = (state, state.version) if counted else None
            return GroupStep(transform, group, list(every), grads, states,
                             LazyNames(range(len(every)), name_of), counts_steps, owner, token)
        states = list(map(state.__getitem__, every))
        return GroupStep(transform, group, list(every), grads, states, LazyNames(range(len(every)), name_of),
                         counts_steps, owner)
    params: list[Tensor] = []
    kept: list[Tensor] = []
    states = []
    positions: list[int] = []
    for i, (p, g) in enumerate(zip(every, grads)):
        if g is not None:
            params.append(p)
            kept.append(g)
            states.append(state[p])
            positions.append(i)
    return GroupStep(transform, group, params, kept, states, LazyNames(positions, name_of), counts_steps, owner)


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
    """Check every group, then step every group on the chosen path."""
    if _path == "eager":
        for work in works:
            check(work)
        for work in works:
            run_eager(work)
        return
    plans = [plan(work) for work in works]
    for run_plan in plans:
        run_plan()


def plan(work: GroupStep) -> Any:
    """Check one group and sort its parameters by path; returns the function that steps them.

    Checks cost per parameter on every step, so the common case is checked by what the fused
    path needs anyway (:func:`optimlab.engine_fused.prepare`); only when something looks unusual
    does the full :func:`check` run, to raise its clear error or to confirm that the parameter
    merely belongs to another path.
    """
    from optimlab import engine_fused, engine_triton

    triton_chosen = engine_triton.chosen(_path)
    if triton_chosen:
        steady = engine_triton.steady_step(work)  # a group whose last step was one Triton launch
        if steady is not None:
            return steady
    if _path in ("auto", "fused"):
        batches, fresh, other = engine_fused.prepare(work)
    else:
        batches, fresh, other = {}, [], list(range(len(work.params)))
    if other:
        check(work)
    triton: list[int] = []
    if other and triton_chosen and engine_triton.available():
        triton, other = engine_triton.split(work.params, work.grads, work.states, other, any_device=_path == "triton")
    compiled: list[int] = []
    if other and _path in ("auto", "compiled"):
        from optimlab import engine_compiled
        compiled, other = engine_compiled.split(work.params, work.grads, work.states, other,
                                                any_device=_path == "compiled")

    def step() -> None:
        hp = transform_hyperparams(work)
        eager = other
        to_compile = compiled
        if fresh:
            for i in fresh:
                initialize(work, i)
            eager += engine_fused.add_fresh(work, batches, fresh)
        if batches:
            eager += engine_fused.run_group(work, hp, batches)
        if triton:
            left = engine_triton.run(work, triton, hp, initialize)
            path_counts["triton"] += len(triton) - len(left)
            if left and _path == "auto":  # no kernel for this transform or signature: torch.compile
                from optimlab import engine_compiled
                more, left = engine_compiled.split(work.params, work.grads, work.states, left, any_device=False)
                to_compile = sorted(to_compile + more)
            eager += left
        if to_compile:
            from optimlab import engine_compiled
            left = engine_compiled.run(work, to_compile, hp, initialize)
            path_counts["compiled"] += len(to_compile) - len(left)
            eager += left
        if eager:
            run_eager(work if len(eager) == len(work.params) else subset(work, sorted(eager)))

    return step


def transform_hyperparams(work: GroupStep) -> dict[str, Any]:
    """The group's values of the hyperparameters its transform reads."""
    return {k: work.hyperparams[k] for k in work.transform.hyperparams if k in work.hyperparams}


def subset(work: GroupStep, indices: Sequence[int]) -> GroupStep:
    """The same group step restricted to some of its parameters."""
    pick = lambda items: [items[i] for i in indices]  # noqa: E731
    return GroupStep(work.transform, work.hyperparams, pick(work.params), pick(work.grads), pick(work.states),
                     pick(work.names), work.counts_steps, work.owner)


def initialize(work: GroupStep, i: int) -> None:
    """A parameter's state before its first step (:func:`initial_state`)."""
    work.states[i].update(initial_state(work.transform, work.params[i], work.counts_steps))


def initial_state(transform: Transform, p: Tensor, counts_steps: bool) -> dict[str, Any]:
    """A parameter's state before its first step: torch's step count, then the transform's own."""
    state: dict[str, Any] = {"step": torch.tensor(0.0, dtype=step_dtype())} if counts_steps else {}
    state.update(init_state(transform, p))
    return state


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
    path_counts["eager"] += len(work.params)
    for i, (p, g, state) in enumerate(zip(work.params, work.grads, work.states)):
        if not state:
            initialize(work, i)
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
