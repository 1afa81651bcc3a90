"""Averaged SGD (Polyak & Juditsky, 1992), torch.optim.ASGD's form."""

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
    IterateAveraging,
    ScaleByDecayingStepSize,
)


class ASGD(Optimizer):
    """Averaged SGD: SGD steps of size ``lr / (1 + lambd * lr * t)^alpha``, and the running
    average of the iterates from step ``t0`` on in ``state[p]["ax"]`` (Polyak & Juditsky, 1992).

    Same arguments and defaults as :class:`torch.optim.ASGD`. The parameters hold the SGD
    iterates; to evaluate the averaged model, copy ``ax`` into them. See
    :mod:`optimlab.transforms.averaging` for the math.
    """

    checks = {**COMMON_CHECKS, "lambd": checks.non_negative, "alpha": checks.non_negative, "t0": checks.real}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-2, lambd: float = 1e-4, alpha: float = 0.75,
                 t0: float = 1e6, weight_decay: float = 0, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return (group["maximize"],)

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return with_sign(group, AddDecayedWeights(), ScaleByDecayingStepSize(), IterateAveraging())
