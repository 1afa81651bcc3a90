"""``check_finite``: a step that refuses NaN and infinite gradients before it changes anything.

By default optimlab treats non-finite gradients as torch.optim does: the update is computed and
written (NaN in, NaN out). ``check_finite=True``, a keyword-only argument of every optimizer
and a parameter-group option like torch's flags, makes ``step()`` look at every gradient of the
groups that set it (and at the loss a closure returns) first, and raise
:class:`FloatingPointError` naming the parameter, its group and what it found, with nothing
changed: parameters, state and step counts are those from before the call.

The look is cheap: one infinity norm per gradient through ``torch._foreach_norm`` (one fused
kernel per group and device; the norm is NaN or infinite exactly when a value is), and one read
back to the host per step. Only when that read says something is wrong are the gradients
counted value by value, to say what and where.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

#: The option's name, in constructors and parameter groups.
OPTION = "check_finite"


def with_option(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` (an optimizer's ``__init__``) taking the keyword-only ``check_finite=False`` too.

    The value waits on the instance until the facade's ``__init__`` puts it into ``defaults``;
    the outermost constructor's value wins (AdamW's ``__init__`` calls Adam's without it).
    """
    signature = inspect.signature(init)
    if OPTION in signature.parameters:
        return init

    @functools.wraps(init)
    def init_with_option(self: Any, *args: Any, check_finite: bool = False, **kwargs: Any) -> None:
        self.__dict__.setdefault("_check_finite", check_finite)
        init(self, *args, **kwargs)

    parameters = list(signature.parameters.values())
    last = len(parameters) - (parameters[-1].kind is inspect.Parameter.VAR_KEYWORD if parameters else 0)
    option = inspect.Parameter(OPTION, inspect.Parameter.KEYWORD_ONLY, default=False, annotation="bool")
    init_with_option.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters[:last], option, *parameters[last:]])
    return init_with_option


def wanted(groups: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any group asks for the check."""
    return any(group.get(OPTION) for group in groups)


def check(owner: str, groups: Sequence[Mapping[str, Any]], loss: Any = None) -> None:
    """Raise FloatingPointError if ``loss`` or a gradient of a group with ``check_finite`` set is
    NaN or infinite; return having changed nothing otherwise."""
    flags = []
    if isinstance(loss, Tensor) and loss.numel():
        flags.append(loss.detach().isfinite().all())
    elif isinstance(loss, numbers.Real) and not math.isfinite(loss):
        raise FloatingPointError(f"{owner}: the loss the closure returned is {loss}; with check_finite=True "
                                 "nothing was stepped")
    for group in groups:
        if group.get(OPTION):
            flags.extend(finite_flags(gradients(group)))
    if not flags:
        return
    device = flags[0].device
    if bool(torch.stack([flag.to(device) for flag in flags]).all()):  # the step's one read back
        return
    raise FloatingPointError(describe(owner, groups, loss))


def gradients(group: Mapping[str, Any]) -> list[Tensor]:
    """The values of the group's gradients (a sparse gradient's stored values), empty ones left out."""
    out = []
    for p in group["params"]:
        grad = p.grad
        if grad is None:
            continue
        values = grad._values() if grad.is_sparse else grad
        if values.numel():
            out.append(values.detach())
    return out


def finite_flags(grads: list[Tensor]) -> list[Tensor]:
    """One 0-d bool tensor per device: whether every value of ``grads`` there is finite."""
    by_device: dict[torch.device, list[Tensor]] = {}
    for grad in grads:
        by_device.setdefault(grad.device, []).append(grad)
    flags = []
    for same_device in by_device.values():
        local = [g for g in same_device if not is_dtensor(g)]
        # A DTensor's norm is a collective: every rank holds the group, so every rank takes part.
        norms = [torch.linalg.vector_norm(g, math.inf).full_tensor() for g in same_device if is_dtensor(g)]
        if local:
            norms.extend(torch._foreach_norm(local, math.inf))
        flags.append(torch.stack(norms).isfinite().all())  # stack promotes to the widest dtype
    return flags


def is_dtensor(tensor: Tensor) -> bool:
    return hasattr(tensor, "full_tensor") and hasattr(tensor, "placements")


def describe(owner: str, groups: Sequence[Mapping[str, Any]], loss: Any) -> str:
    """The message for a step that found a non-finite value: where, what, how many."""
    tail = "; with check_finite=True nothing was stepped"
    if isinstance(loss, Tensor) and not bool(loss.detach().isfinite().all()):
        return f"{owner}: the loss the closure returned is {found(loss.detach())}{tail}"
    bad = []
    for index, group in enumerate(groups):
        if not group.get(OPTION):
            continue
        names = group.get("param_names")
        for i, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            values = p.grad._values() if p.grad.is_sparse else p.grad
            values = values.full_tensor() if is_dtensor(values) else values.detach()
            if not bool(values.isfinite().all()):
                name = repr(names[i]) if names else f"#{i}"
                bad.append(f"parameter {name} of group {index} has {found(values)}")
    if not bad:  # the norms said non-finite, the values say otherwise: report the fact as found
        return f"{owner}: a gradient's infinity norm is not finite{tail}"
    more = f" (and {len(bad) - 1} more parameter(s))" if len(bad) > 1 else ""
    return f"{owner}: the gradient of {bad[0]}{more}{tail}"


def found(values: Tensor) -> str:
    """What is wrong in ``values``: "2 NaN and 1 infinite of 12 values"."""
    nan, inf = int(values.isnan().sum()), int(values.isinf().sum())
    kinds = [f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else ""]
    return f"{' and '.join(k for k in kinds if k)} of {values.numel()} values"
