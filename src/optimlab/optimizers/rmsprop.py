"""RMSprop (Tieleman & Hinton, 2012), plain, centered and with momentum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, with_sign
from optimlab.transforms import (
    AddDecayedWeights,
    Momentum,
    ScaleByLearningRate,
    ScaleByRMS,
)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, 2012), optionally centered (Graves, 2013) and with momentum.

    Same arguments and defaults as :class:`torch.optim.RMSprop`.
    """

    checks = {**COMMON_CHECKS, "alpha": checks.unit_interval, "eps": checks.non_negative,
              "momentum": checks.non_negative, "centered": checks.flag}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["centered"], group["momentum"] > 0

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        momentum = [Momentum()] if group["momentum"] > 0 else []
        return with_sign(group, AddDecayedWeights(), ScaleByRMS(centered=group["centered"]), *momentum,
                         ScaleByLearningRate())
