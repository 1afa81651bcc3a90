"""The checks a step and a checkpoint pass before any tensor changes: gradients that fit their
parameters, and state that is what the transform declares (:func:`optimlab.core.state_spec`)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from optimlab import flags
from optimlab.core import DENSE, SPARSE, Transform, state_spec
from optimlab.engine.work import GroupStep


def check(work: GroupStep) -> None:
    """Raise a clear error for anything the step cannot do, before any tensor is touched."""
    layouts = work.transform.grad_layouts
    for p, g, state, name in zip(work.params, work.grads, work.states, work.names):
        if g.is_sparse and SPARSE not in layouts:
            raise RuntimeError(
                f"{work.owner}: parameter {name} has a sparse gradient, which this optimizer does "
                "not support; use optimlab.SparseAdam, SGD or Adagrad, or a dense embedding (sparse=False)"
            )
        if not g.is_sparse and DENSE not in layouts:
            raise RuntimeError(f"{work.owner}: parameter {name} has a dense gradient; this optimizer takes sparse "
                               "gradients only (nn.Embedding(sparse=True)): use optimlab.Adam for dense ones")
        if g.is_sparse:
            flags.check_sparse_grad(work.owner, work.hyperparams, name, g)
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
            expected = ("the parameter has shape" if shape == tuple(param.shape)
                        else f"this optimizer keeps shape {shape} for a parameter of shape")
            raise ValueError(f"{owner}: state {key!r} for parameter {name} has shape {tuple(value.shape)}, but "
                             f"{expected} {tuple(param.shape)}: the state belongs to other parameters")
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
