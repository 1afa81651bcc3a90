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
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimlab.core import ELEMENTWISE, GROUP, State, Transform, scalar_dtype, state_spec
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


step_dtype = scalar_dtype

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
        check_state(work.owner, name, work.transform, p, state, work.counts_steps)


#: transform -> {(shape, dtype): its state_spec}: the declaration, learnt once per shape.
_specs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def spec_of(transform: Transform, param: Tensor) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    per_transform = _specs.get(transform)
    if per_transform is None:
        per_transform = _specs[transform] = {}
    key = (tuple(param.shape), param.dtype)
    spec = per_transform.get(key)
    if spec is None:
        spec = per_transform[key] = state_spec(transform, param)
    return spec


def check_state(owner: str, name: str, transform: Transform, param: Tensor, state: Mapping[str, Any],
                counts_steps: bool, complete: bool = False) -> None:
    """``state`` is what ``transform`` declares for ``param`` (:func:`optimlab.core.state_spec`):
    no key it does not keep, every tensor of the declared shape, real or complex as declared;
    ``complete``: also no declared key missing (a checkpoint being loaded; empty state is fine)."""
    spec = spec_of(transform, param)
    for key, value in state.items():
        if key == "step" and counts_steps:
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    or isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex()):
                raise TypeError(f"{owner}: state 'step' for parameter {name} must be a number or a one-element "
                                f"tensor, got {type(value).__name__}")
            continue
        if key not in spec:
            if value is None and key in transform.lazy_state:
                continue
            kept = ", ".join(sorted(spec) + (["step"] if counts_steps else [])) or "nothing"
            raise ValueError(f"{owner}: state {key!r} for parameter {name} is not kept by this optimizer "
                             f"(it keeps {kept}): the state was saved by a different optimizer")
        shape, dtype = spec[key]
        if value is None and key in transform.lazy_state:
            continue
        if not isinstance(value, Tensor):
            raise TypeError(f"{owner}: state {key!r} for parameter {name} must be a tensor, got "
                            f"{type(value).__name__}")
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{owner}: state {key!r} for parameter {name} has shape {tuple(value.shape)}, but "
                f"{shape} was expected for a parameter of shape {tuple(param.shape)}: the state belongs to "
                "other parameters"
            )
        if value.is_complex() != dtype.is_complex or not (value.is_floating_point() or value.is_complex()):
            raise TypeError(f"{owner}: state {key!r} for parameter {name} is {value.dtype}, expected a "
                            f"{'complex' if dtype.is_complex else 'real'} floating-point tensor like {dtype}")
    if complete and state:
        missing = [k for k in spec if k not in state and k not in transform.lazy_state]
        if counts_steps and "step" not in state:
            missing.append("step")
        if missing:
            raise ValueError(f"{owner}: state for parameter {name} has no {', '.join(map(repr, missing))}: the state "
                             "was saved by a different optimizer or is damaged")


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

    if work.transform.kind != ELEMENTWISE:  # norms, matrices, whole groups: torch ops, true shapes
        check(work)
        return lambda: run_eager(work)
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
    """The reference path: exactly the transform's math, one parameter at a time (all of the
    group's parameters at once for a transform of the group kind)."""
    transform, hp = work.transform, plain_hyperparams(work)
    path_counts["eager"] += len(work.params)
    steps = []
    for i, state in enumerate(work.states):
        if not state:
            initialize(work, i)
        step = None
        if work.counts_steps:
            state["step"] += 1
            step = state["step"].item()
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
