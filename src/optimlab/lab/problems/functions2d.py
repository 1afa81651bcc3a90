"""Two-dimensional test functions for optimizer trajectories, as plain torch functions.

Each :class:`Function2D` evaluates elementwise on tensors ``x`` and ``y`` of any (equal or
broadcastable) shape, so the same function draws a contour plot on a grid and is minimised from a
point ``p = (x, y)`` with autograd (``f.at(p)``). Each knows its global minima, a view box that
shows the interesting part, and a start point from which optimizers behave differently.

References: Rosenbrock (1960); Beale (1958); Rastrigin (1974), in the 2-D form of Mühlenbein et
al. (1991); the formulas and minima are those of Surjanovic & Bingham's "Virtual Library of
Simulation Experiments: Test Functions".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optimlab.lab.training.specs import unknown

Point = tuple[float, float]


@dataclass(frozen=True)
class Function2D:
    """``fn(x, y)`` with its global ``minima`` (points), ``minimum`` (value; None when unbounded
    below), ``view`` = (x_min, x_max, y_min, y_max) for plots, and a recommended ``start``."""

    name: str
    description: str
    fn: Callable[[Tensor, Tensor], Tensor]
    minima: tuple[Point, ...]
    minimum: float | None
    view: tuple[float, float, float, float]
    start: Point

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.fn(x, y)

    def at(self, point: Tensor) -> Tensor:
        """The value at ``point``, a tensor of shape (2,) (a scalar tensor, differentiable)."""
        if point.shape != (2,):
            raise ValueError(f"{self.name}: point must have shape (2,), got {tuple(point.shape)}")
        return self.fn(point[0], point[1])

    def grid(self, n: int = 200) -> tuple[Tensor, Tensor, Tensor]:
        """``(X, Y, Z)`` on an ``n`` x ``n`` grid over the view box (float64, for contour plots)."""
        x0, x1, y0, y1 = self.view
        xs = torch.linspace(x0, x1, n, dtype=torch.float64)
        ys = torch.linspace(y0, y1, n, dtype=torch.float64)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return grid_x, grid_y, self.fn(grid_x, grid_y)


def rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    """``(1 - x)^2 + 100 (y - x^2)^2``: a curved narrow valley; minimum 0 at (1, 1)."""
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(x: Tensor, y: Tensor) -> Tensor:
    """``(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2``: flat plateaus and steep
    walls; minimum 0 at (3, 0.5)."""
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def saddle(x: Tensor, y: Tensor) -> Tensor:
    """``x^2 - y^2``: a saddle point at (0, 0), unbounded below along y. Started near the x axis,
    gradient descent creeps towards the saddle (its y-gradient is tiny) before it escapes."""
    return x**2 - y**2


def rastrigin(x: Tensor, y: Tensor) -> Tensor:
    """``20 + x^2 - 10 cos(2 pi x) + y^2 - 10 cos(2 pi y)``: a bowl covered with a grid of local
    minima near the integer points; global minimum 0 at (0, 0)."""
    return 20 + x**2 - 10 * torch.cos(2 * math.pi * x) + y**2 - 10 * torch.cos(2 * math.pi * y)


FUNCTIONS: dict[str, Function2D] = {f.name: f for f in (
    Function2D("rosenbrock", "Rosenbrock's banana valley", rosenbrock, ((1.0, 1.0),), 0.0,
               (-2.0, 2.0, -1.0, 3.0), (-1.2, 1.0)),
    Function2D("beale", "Beale's function", beale, ((3.0, 0.5),), 0.0, (-4.5, 4.5, -4.5, 4.5), (1.0, 1.5)),
    Function2D("saddle", "the saddle x^2 - y^2", saddle, (), None, (-1.5, 1.5, -1.5, 1.5), (1.0, 1e-3)),
    Function2D("rastrigin", "Rastrigin's function", rastrigin, ((0.0, 0.0),), 0.0,
               (-5.12, 5.12, -5.12, 5.12), (3.3, -2.7)),
)}


def get_function(name: str) -> Function2D:
    """The 2-D function called ``name``; unknown names raise
    :class:`~optimlab.lab.training.specs.UnknownNameError` (a ``KeyError`` and ``ValueError``) listing the valid ones."""
    if not isinstance(name, str) or name not in FUNCTIONS:
        raise unknown("2-D function", name, FUNCTIONS)
    return FUNCTIONS[name]
