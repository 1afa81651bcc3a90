"""Adadelta: a step whose units match the parameter's, from two running averages."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import HyperParams, State, Transform


class ScaleByAdadelta(Transform):
    """Adadelta (Zeiler, 2012, "ADADELTA: An Adaptive Learning Rate Method", Algorithm 1)::

        E[g^2]_t  = rho E[g^2]_{t-1} + (1 - rho) g_t^2                          (square_avg)
        dx_t      = sqrt(E[dx^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) * g_t
        E[dx^2]_t = rho E[dx^2]_{t-1} + (1 - rho) dx_t^2                       (acc_delta)
        out       = dx_t

    The ratio of the two RMS values gives ``dx`` the units of the parameter (Section 3.2), so
    the paper needs no learning rate; torch.optim.Adadelta scales ``dx_t`` by ``lr`` (default
    1.0, the paper's method), which :class:`ScaleByLearningRate` does after this. ``eps`` is
    inside the square roots (Eq. (9)): it also starts the numerator at ``sqrt(eps)``, the
    first steps' size. The averages are updated as in :mod:`optimlab.transforms.adaptive`.
    """

    hyperparams = ("rho", "eps")

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return {"square_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                "acc_delta": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        rho, eps = hp["rho"], hp["eps"]
        square_avg = state["square_avg"].mul_(rho).add_(u * u * (1 - rho))
        acc_delta = state["acc_delta"]
        delta = (acc_delta + eps).sqrt() / (square_avg + eps).sqrt() * u
        acc_delta.mul_(rho).add_(delta * delta * (1 - rho))
        return delta
