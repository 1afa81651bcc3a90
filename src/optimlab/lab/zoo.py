"""The named optimizer configurations the lab compares, and log-spaced learning-rate grids::

  name      optimizer                                      generic learning-rate grid
  sgd       optimlab.SGD                                   1e-3 .. 1
  momentum  optimlab.SGD(momentum=0.9) (heavy ball)        1e-4 .. 0.316
  nesterov  optimlab.SGD(momentum=0.9, nesterov=True)      1e-4 .. 0.316
  adagrad   optimlab.Adagrad                               1e-3 .. 1
  rmsprop   optimlab.RMSprop (alpha 0.99)                  1e-5 .. 0.0316
  adam      optimlab.Adam (betas 0.9, 0.999)               1e-5 .. 0.0316
  adamw     optimlab.AdamW (weight_decay 0.01)             1e-5 .. 0.0316

Everything else is torch.optim's defaults. The generic grids (half-decade steps) are for
problems that have no measured learning rate for an optimizer; each problem in
:mod:`optimlab.lab.problems` records a measured one, and sweeps centre their grids on it.

With torch's default ``weight_decay=0.01``, AdamW shrinks the weights by ``lr * 0.01`` per step,
1e-5 at lr = 1e-3: over a short budget it is almost exactly Adam. That is the honest default;
pass ``weight_decay`` to see the decay matter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

import optimlab
from optimlab.lab.specs import unknown


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer class with fixed keyword arguments, a label for reports and a generic grid."""

    name: str
    label: str
    cls: type[torch.optim.Optimizer]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    lrs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def make(self, params: Any, lr: float, **overrides: Any) -> torch.optim.Optimizer:
        """The optimizer over ``params`` at ``lr``; ``overrides`` replace the fixed kwargs."""
        return self.cls(params, lr=lr, **{**self.kwargs, **overrides})


def round_lr(lr: float) -> float:
    """``lr`` to 3 significant digits: grids print, store and hash as short numbers."""
    return float(f"{lr:.3g}")


def log_grid(low: float, high: float, points: int) -> tuple[float, ...]:
    """``points`` log-spaced values from ``low`` to ``high`` (both included), 3 significant digits.

    ``log_grid(1e-4, 1e-2, 5)`` = (0.0001, 0.000316, 0.001, 0.00316, 0.01).
    """
    if not (0 < low <= high < math.inf):
        raise ValueError(f"log_grid: need 0 < low <= high < inf, got low={low!r}, high={high!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1 or (points == 1 and low != high):
        raise ValueError(f"log_grid: points must be an int >= 1 (>= 2 when low != high), got {points!r}")
    if points == 1:
        return (round_lr(low),)
    ratio = math.log10(high / low) / (points - 1)
    return tuple(round_lr(low * 10 ** (i * ratio)) for i in range(points))


def grid_around(center: float, points: int = 3, per_decade: int = 2) -> tuple[float, ...]:
    """``points`` log-spaced values centred on ``center``, ``per_decade`` to a factor of 10.

    ``grid_around(0.01, 3)`` = (0.00316, 0.01, 0.0316): half a decade either side.
    """
    if not (0 < center < math.inf):
        raise ValueError(f"grid_around: center must be a positive number, got {center!r}")
    if isinstance(per_decade, bool) or not isinstance(per_decade, int) or per_decade < 1:
        raise ValueError(f"grid_around: per_decade must be an int >= 1, got {per_decade!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"grid_around: points must be an int >= 1, got {points!r}")
    if points == 1:
        return (round_lr(center),)
    # On the lattice 10^(k / per_decade) when the centre is a rounded lattice point (0.316 is
    # 10^-0.5 to 3 digits): then the grid is 0.1, 0.316, 1 and not 0.0999, 0.316, 0.999.
    position = math.log10(center) * per_decade
    if abs(position - round(position)) < 0.01:
        position = round(position)
    half = (points - 1) / 2
    return log_grid(10 ** ((position - half) / per_decade), 10 ** ((position + half) / per_decade), points)


OPTIMIZERS: dict[str, OptimizerSpec] = {spec.name: spec for spec in (
    OptimizerSpec("sgd", "SGD", optimlab.SGD, {}, log_grid(1e-3, 1.0, 7)),
    OptimizerSpec("momentum", "SGD + momentum 0.9", optimlab.SGD, {"momentum": 0.9}, log_grid(1e-4, 10**-0.5, 8)),
    OptimizerSpec("nesterov", "Nesterov 0.9", optimlab.SGD, {"momentum": 0.9, "nesterov": True},
                  log_grid(1e-4, 10**-0.5, 8)),
    OptimizerSpec("adagrad", "Adagrad", optimlab.Adagrad, {}, log_grid(1e-3, 1.0, 7)),
    OptimizerSpec("rmsprop", "RMSprop", optimlab.RMSprop, {}, log_grid(1e-5, 10**-1.5, 8)),
    OptimizerSpec("adam", "Adam", optimlab.Adam, {}, log_grid(1e-5, 10**-1.5, 8)),
    OptimizerSpec("adamw", "AdamW (wd 0.01)", optimlab.AdamW, {}, log_grid(1e-5, 10**-1.5, 8)),
)}

#: The classic comparison, in the order reports list it.
CLASSIC = tuple(OPTIMIZERS)


def get_optimizer(name: str) -> OptimizerSpec:
    """The configuration called ``name``; unknown names raise
    :class:`~optimlab.lab.specs.UnknownNameError` listing the valid ones."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name]


def make_optimizer(name: str, params: Iterable[Any], lr: float, **overrides: Any) -> torch.optim.Optimizer:
    """``get_optimizer(name).make(params, lr, **overrides)``."""
    return get_optimizer(name).make(params, lr, **overrides)
