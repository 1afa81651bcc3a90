"""SGD: batch, stochastic and mini-batch gradient descent, with heavy-ball, EMA-form or Nesterov momentum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, with_sign
from optimlab.transforms import AddDecayedWeights, Momentum, ScaleByLearningRate


class SGD(Optimizer):
    """Gradient descent with optional (heavy-ball, EMA-form or Nesterov) momentum.

    ``p <- p - lr * d`` where ``d`` is the gradient (plus ``weight_decay * p``), or the momentum
    buffer ``b = momentum * b + (1 - dampening) * d`` (``b = d`` on the first step), or with
    ``nesterov=True`` the look-ahead ``d + momentum * b``. Same arguments and defaults as
    :class:`torch.optim.SGD`. See :mod:`optimlab.transforms.momentum` for the forms of momentum.
    """

    checks = {**COMMON_CHECKS, "momentum": checks.non_negative, "dampening": checks.closed_unit_interval,
              "nesterov": checks.flag}

    def __init__(self, params: Params, lr: float | Tensor = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float | Tensor = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    def check_group(self, group: Mapping[str, Any]) -> None:
        super().check_group(group)
        if group.get("nesterov") and (group.get("momentum", 0) <= 0 or group.get("dampening", 0) != 0):
            raise ValueError(f"{self.owner}: nesterov=True requires momentum > 0 and dampening = 0, got "
                             f"momentum={group.get('momentum')!r}, dampening={group.get('dampening')!r}")

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["nesterov"], group["momentum"] != 0

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        momentum = [Momentum(nesterov=group["nesterov"])] if group["momentum"] != 0 else []
        return with_sign(group, AddDecayedWeights(), *momentum, ScaleByLearningRate())
