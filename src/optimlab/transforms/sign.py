"""Rprop: steps from the sign of the gradient alone, each coordinate with its own step size."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import HyperParams, State, Transform, saved


class ScaleByRprop(Transform):
    """Rprop (Riedmiller & Braun, 1993, "A Direct Adaptive Method for Faster Backpropagation
    Learning: The RPROP Algorithm", without the weight-backtracking of its first form, as
    torch.optim.Rprop implements it; later named Rprop-)::

        s       = sign(g_t * g_{t-1})
        Delta_t = clamp(Delta_{t-1} * (eta_plus if s > 0, eta_minus if s < 0, 1 if s = 0),
                        step_size_min, step_size_max)
        g_t     = 0  where s < 0         (a sign change: no step now, and none compared next time)
        out     = -sign(g_t) * Delta_t

    The gradient's magnitude is ignored: a step size grows while the sign stays the same and
    shrinks when it flips (a minimum was jumped over). ``Delta`` (``step_size``) starts at ``lr``:
    made on the parameter's first step from that step's ``lr``, as torch.optim.Rprop does, and
    ``lr`` is not read again. ``g_{t-1}`` is ``prev``, zero before the first step.
    """

    hyperparams = ("lr", "etas", "step_sizes")
    lazy_state = ("step_size",)

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return {"prev": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        eta_minus, eta_plus = hp["etas"]
        step_size_min, step_size_max = hp["step_sizes"]
        prev = state["prev"]
        step_size = state.get("step_size")
        if step_size is None:  # the first step; `ones * lr`, not full_like, traces with lr as a tensor
            step_size = state["step_size"] = torch.ones_like(u, memory_format=torch.preserve_format) * hp["lr"]

        sign = (u * saved(prev)).sign()
        # +1 -> eta_plus, -1 -> eta_minus, 0 -> 1, written `sign + 1`: that keeps the parameter's
        # dtype (torch writes the factors into `sign`) and, as there, NaN for a NaN gradient.
        factor = torch.where(sign > 0, eta_plus, torch.where(sign < 0, eta_minus, sign + 1))
        # Two one-sided clamps (clamp_'s two bounds, as torch's): a bound of 0 comes as a plain 0
        # on the fast paths (core.is_zero) beside a tensor, a pair clamp_ only takes by reading the tensor.
        step_size.mul_(factor).clamp_min_(step_size_min).clamp_max_(step_size_max)
        u = torch.where(sign < 0, 0, u)
        prev.copy_(u)
        return -(u.sign() * step_size)
