"""The ``torch.compile`` path: the path for CUDA parameters (and, on request, any device).

Each parameter's update is ``param += transform.update(grad, param, state, hp, step)``, the
eager path's line, run under ``torch.compile(dynamic=True, fullgraph=True)`` on flat views of
the tensors, so one compiled graph serves every parameter size. Inductor fuses the chain into
one kernel per parameter (Triton on CUDA).

Hyperparameters are mirrored into 0-d float64 tensors on the parameter's device, updated in
place when a value changes, so a schedule never recompiles the step; exact zeros are passed
as plain ``0`` (see :func:`optimlab.core.is_zero`). Python floats are deliberately not used:
with unspecialised floats, torch 2.13 bakes some of them (the ``lerp`` weight) into the kernel
without a guard, so a changed ``beta`` would be silently ignored.

Any failure to compile (including dynamo's limit on recompiles) falls back to the eager path
for that transform, with one warning.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from optimlab.engine.errors import Unsupported
from optimlab.engine.hyper import hp_rebuild, hp_structure
from optimlab.engine.paths import warn_once

_half_and_float = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: repr(transform) -> the compiled update for transforms of that structure.
_compiled: dict[str, Any] = {}
#: repr(transform) -> why compiling it failed (it then stays on the eager path).
_broken: dict[str, str] = {}


def _update(transform: Any, param: torch.Tensor, grad: torch.Tensor, state: dict, hp: dict, step: Any) -> None:
    param.add_(transform.update(grad, param, state, hp, step))


def compiled_update(transform: Any) -> Any:
    """``torch.compile`` of the update, one per transform structure.

    Dynamo keeps its compiled graphs, and its limit on recompiles, per code object; a copy of
    ``_update``'s code per structure keeps one optimizer's variants (dtypes, state made on the
    first step) from using up another's.
    """
    key = repr(transform)
    found = _compiled.get(key)
    if found is None:
        code = _update.__code__.replace(co_name=f"_update_{len(_compiled)}")
        function = types.FunctionType(code, _update.__globals__, code.co_name)
        found = _compiled[key] = torch.compile(function, dynamic=True, fullgraph=True)
    return found


def split(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], states: Sequence[Mapping[str, Any]],
          indices: Sequence[int], any_device: bool) -> tuple[list[int], list[int]]:
    """The parameters (by index) this path takes, and the rest (for the eager path).

    One-element parameters stay eager: dynamo specialises sizes 0 and 1, and a graph of their
    own would cost a compile for no speed.
    """
    mine, rest = [], []
    for i in indices:
        ok = params[i].numel() > 1 and dense_on_device(params[i], grads[i], states[i], any_device)
        (mine if ok else rest).append(i)
    return mine, rest


def dense_on_device(p: torch.Tensor, g: torch.Tensor, state: Mapping[str, Any], any_device: bool) -> bool:
    """What a device path (this one, or the Triton kernel) needs of a parameter: on CUDA (any
    device if ``any_device``), a float dtype, its gradient of that dtype on that device with its
    shape, both contiguous, and every state tensor on that device with its shape, contiguous."""
    return ((any_device or p.device.type == "cuda") and p.dtype in _half_and_float and g.dtype is p.dtype
            and g.device == p.device and g.layout is torch.strided and g.shape == p.shape
            and p.is_contiguous() and g.is_contiguous()
            and all(k == "step" or (isinstance(v, torch.Tensor) and v.device == p.device and v.shape == p.shape
                                    and v.layout is torch.strided and v.is_contiguous()) for k, v in state.items()))


class Mirror:
    """0-d float64 tensors on one device holding a group's hyperparameters, refreshed in place."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.tensors: list[torch.Tensor] = []
        self.values: list[float] = []
        self.steps: dict[float, torch.Tensor] = {}

    def numbers(self, values: list[float]) -> list[torch.Tensor]:
        while len(self.tensors) < len(values):
            self.tensors.append(torch.zeros((), dtype=torch.float64, device=self.device))
            self.values.append(float("nan"))
        for i, value in enumerate(values):
            if self.values[i] != value:
                self.tensors[i].fill_(value)
                self.values[i] = value
        return self.tensors

    def step(self, value: float) -> torch.Tensor:
        tensor = self.steps.get(value)
        if tensor is None:
            if len(self.steps) > 64:
                self.steps.clear()
            tensor = self.steps[value] = torch.full((), value, dtype=torch.float64, device=self.device)
        return tensor


#: id(group hyperparameter mapping), device -> Mirror (a group keeps its own tensors).
_mirrors: dict[tuple[int, torch.device], Mirror] = {}


def run(work: Any, indices: Sequence[int], hyperparams: Mapping[str, Any], initialize: Any) -> list[int]:
    """Step the parameters at ``indices``; returns the ones left for the eager path."""
    transform_key = repr(work.transform)  # what _compiled and _broken are keyed by
    if transform_key in _broken:
        return list(indices)
    try:
        structure, names, values = hp_structure(hyperparams)
    except Unsupported:
        return list(indices)
    update = compiled_update(work.transform)
    per_device: dict[torch.device, tuple[Mirror, dict]] = {}
    for position, i in enumerate(indices):
        p, g, state = work.params[i], work.grads[i], work.states[i]
        if not state:
            initialize(work, i)
        if p.device not in per_device:
            mirror_key = (id(work.hyperparams), p.device)
            if len(_mirrors) > 1024:
                _mirrors.clear()
            mirror = _mirrors.get(mirror_key) or _mirrors.setdefault(mirror_key, Mirror(p.device))
            numbers = mirror.numbers(values)
            per_device[p.device] = mirror, hp_rebuild(hyperparams, structure, lambda k: numbers[k])
        mirror, hp = per_device[p.device]
        step = mirror.step(state["step"].item() + 1) if work.counts_steps else None
        flat = {k: (v if k == "step" else v.view(-1)) for k, v in state.items()}
        try:
            update(work.transform, p.view(-1), g.view(-1), flat, hp, step)
        except Exception as error:  # noqa: BLE001 - a failed compile must never stop training
            _broken[transform_key] = f"{type(error).__name__}: {error}"
            warn_once(f"optimlab: torch.compile of the step of {transform_key} failed ({_broken[transform_key]}); "
                      "it runs on the eager path from now on")
            return list(indices[position:])
        for state_key, value in flat.items():
            if state_key not in state:  # state the math created on this step (a momentum buffer)
                state[state_key] = value.view(p.shape)
        if work.counts_steps:
            state["step"] += 1
    return []
