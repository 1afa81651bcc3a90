"""Rprop (Riedmiller & Braun, 1993)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, with_sign
from optimlab.transforms import ScaleByRprop


class Rprop(Optimizer):
    """Rprop: per-coordinate step sizes, grown by ``etas[1]`` while the gradient keeps its sign and
    shrunk by ``etas[0]`` when it flips; the step is ``-sign(g) * step_size`` (Riedmiller &
    Braun, 1993).

    Same arguments and defaults as :class:`torch.optim.Rprop` (``lr`` is the initial step size).
    Meant for full-batch gradients: the sign of a noisy mini-batch gradient flips at random.
    """

    checks = {**COMMON_CHECKS,
              "etas": checks.pair(checks.open_interval(0.0, 1.0), checks.greater_than(1.0),
                                  "(etaminus, etaplus) with 0 < etaminus < 1 < etaplus"),
              "step_sizes": checks.pair(checks.non_negative, checks.non_negative,
                                        "(min, max) of step sizes >= 0")}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-2, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        defaults = dict(lr=lr, etas=tuple(etas) if isinstance(etas, list) else etas,
                        step_sizes=tuple(step_sizes) if isinstance(step_sizes, list) else step_sizes,
                        foreach=foreach, maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return (group["maximize"],)

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return with_sign(group, ScaleByRprop())
