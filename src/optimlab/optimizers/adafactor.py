"""Adafactor (Shazeer & Stern, 2018), torch.optim.Adafactor's variant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, with_sign
from optimlab.transforms import DecoupledWeightDecay, ScaleByAdafactor


class Adafactor(Optimizer):
    """Adafactor: factored second moments (``n + m`` numbers per ``n x m`` matrix), steps relative
    to each parameter's RMS, update clipping (Shazeer & Stern, 2018).

    Same arguments and defaults as :class:`torch.optim.Adafactor`: ``lr`` caps the relative
    step size ``min(lr, 1/sqrt(t))`` and scales the decoupled ``weight_decay``;
    ``eps=(eps1, eps2)`` with ``eps1=None`` for the machine epsilon of the parameter's dtype.
    Real parameters only (a complex one raises at ``step()``, as in torch). See
    :mod:`optimlab.transforms.factored` for the math.
    """

    checks = {**COMMON_CHECKS, "beta2_decay": checks.non_positive, "d": checks.at_least(1.0),
              "eps": checks.pair(checks.optional(checks.non_negative), checks.non_negative,
                                 "(eps1, eps2) of numbers >= 0, eps1 may be None")}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0, weight_decay: float = 0.0, *,
                 foreach: bool | None = None, maximize: bool = False) -> None:
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=tuple(eps) if isinstance(eps, list) else eps, d=d,
                        weight_decay=weight_decay, foreach=foreach, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure: Any = None) -> Any:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.is_complex():
                    # torch.optim.Adafactor's error: the factored moments are defined for reals.
                    raise RuntimeError(f"{self.owner} does not support complex parameters; optimize the real "
                                       "and imaginary parts as separate real parameters (torch.view_as_real)")
        return super().step(closure)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return (group["maximize"],)

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return with_sign(group, ScaleByAdafactor(), DecoupledWeightDecay())
