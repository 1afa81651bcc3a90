"""What every reference shares: the gradient of the objective that is actually minimized.

``maximize=True`` maximizes f, i.e. minimizes -f. Coupled weight decay (L2 regularisation)
adds ``weight_decay / 2 * |x|^2`` to the minimized objective, so its gradient gains
``weight_decay * x``. Hence the gradient the algorithms below see is::

    g_t(x) = (-1 if maximize else 1) * grad f_t(x) + weight_decay * x
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Gradient = Callable[[int, np.ndarray], np.ndarray]


def objective_gradient(grad: Gradient, t: int, x: np.ndarray, *, weight_decay: float = 0.0,
                       maximize: bool = False) -> np.ndarray:
    """Gradient at ``x`` of ``(-f if maximize else f) + weight_decay/2 |x|^2`` at step ``t``."""
    g = np.asarray(grad(t, x), dtype=np.float64)
    if maximize:
        g = -g
    return g + weight_decay * x


def start(x0: np.ndarray) -> np.ndarray:
    """A float64 copy of the starting point (references never compute in lower precision)."""
    x0 = np.asarray(x0)
    if x0.dtype != np.float64:
        raise TypeError(f"references compute in float64, got x0 of dtype {x0.dtype}")
    return x0.copy()
