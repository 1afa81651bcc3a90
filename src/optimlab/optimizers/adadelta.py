"""Adadelta (Zeiler, 2012)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, with_sign
from optimlab.transforms import AddDecayedWeights, ScaleByAdadelta, ScaleByLearningRate


class Adadelta(Optimizer):
    """Adadelta: steps ``lr * sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g`` (Zeiler, 2012).

    Same arguments and defaults as :class:`torch.optim.Adadelta` (``lr=1.0`` is the paper's
    method, which has no learning rate).
    """

    checks = {**COMMON_CHECKS, "rho": checks.closed_unit_interval, "eps": checks.non_negative}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable,
                        foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return (group["maximize"],)

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return with_sign(group, AddDecayedWeights(), ScaleByAdadelta(), ScaleByLearningRate())
