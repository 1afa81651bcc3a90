"""torch.optim's implementation flags: what each promises in optimlab, and torch's errors for them.

* ``foreach`` and ``fused`` choose one of torch's loops. optimlab's engine chooses its own path
  (docs/performance.md), and every path computes the same numbers, so the flags are accepted
  and stored (checkpoints carry them) and do not choose anything. What torch refuses with them
  is refused here too, with torch's exception types: ``fused`` with ``foreach`` or with
  ``differentiable`` (construction); ``fused`` for a parameter that is not a floating-point
  tensor on a device torch has fused kernels for, or with a sparse gradient (step).
* ``differentiable=True`` records the step in autograd: the facade steps with gradients
  enabled, the engine takes the eager path, and hyperparameters stay tensors in the math.
* ``capturable=True`` promises a step that CUDA graphs can capture. torch refuses it for
  parameters on other devices (an AssertionError at the step, CPU included); optimlab does the
  same there, and raises a RuntimeError on the devices where torch would capture, because its
  engine reads step counts on the host, which a graph cannot record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor


def fused_devices() -> list[str]:
    """The device types torch has fused optimizer kernels for."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return list(_get_fused_kernels_supported_devices())


def capturable_devices() -> list[str]:
    """The device types on which torch's ``capturable=True`` steps run."""
    from torch.optim.optimizer import _get_capturable_supported_devices

    return list(_get_capturable_supported_devices())


def check_construction(owner: str, defaults: Mapping[str, Any]) -> None:
    """torch's checks of the constructor's flags (after the parameter groups are made)."""
    if defaults.get("fused"):
        if defaults.get("differentiable"):
            raise RuntimeError(f"{owner}: `fused` does not support `differentiable`")
        if defaults.get("foreach"):
            raise RuntimeError(f"{owner}: `fused` and `foreach` cannot be `True` together.")


def check_step(owner: str, group: Mapping[str, Any], name_of: Callable[[int], str]) -> None:
    """torch's checks, at a step, of a group whose ``capturable`` or ``fused`` is set, on the
    parameters that have a gradient (``name_of(i)``: the i-th one's name, for the messages)."""
    stepped = [(p, name_of(i)) for i, p in enumerate(group["params"]) if p.grad is not None]
    if group.get("capturable") and stepped:
        devices = capturable_devices()
        for p, name in stepped:
            if p.device.type not in devices:
                raise AssertionError(f"{owner}: If capturable=True, params and state_steps must be on supported "
                                     f"devices: {devices}; parameter {name} is on {p.device.type}")
        raise RuntimeError(f"{owner}: capturable=True (a step that CUDA graphs can capture) is not implemented: "
                           "optimlab's engine reads step counts on the host; use capturable=False")
    if group.get("fused"):
        devices = fused_devices()
        for p, name in stepped:
            if not (p.device.type in devices and torch.is_floating_point(p)):
                raise RuntimeError(f"{owner}: `fused=True` requires all the params to be floating point Tensors of "
                                   f"supported devices: {devices}; parameter {name} is {p.dtype} on {p.device.type}")


def check_sparse_grad(owner: str, group: Mapping[str, Any], name: str, grad: Tensor) -> None:
    """torch's fused kernels take dense gradients only."""
    if grad.is_sparse and group.get("fused"):
        raise RuntimeError(f"{owner}: `fused` does not support sparse gradients (parameter {name})")
