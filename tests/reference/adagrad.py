"""Adagrad, diagonal form: Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods for
Online Learning and Stochastic Optimization", JMLR 12, Figure 1 (diagonal case).

The paper's update with ``s_{t,i} = ||g_{1:t,i}||_2`` and ``H_t = delta I + diag(s_t)``::

    x_{t+1,i} = x_{t,i} - eta * g_{t,i} / (delta + sqrt(sum_{tau <= t} g_{tau,i}^2))

``delta`` is ``eps`` here (added outside the square root, as in the paper). Two documented
extensions of torch.optim.Adagrad:

* ``initial_accumulator_value``: the sum of squares starts at this value instead of 0;
* ``lr_decay``: the step size at step ``t`` is ``eta_t = lr / (1 + (t - 1) * lr_decay)``.
"""

from __future__ import annotations

import numpy as np

from tests.reference.common import Gradient, objective_gradient, start


def adagrad(x0: np.ndarray, grad: Gradient, steps: int, *, lr: float, lr_decay: float = 0.0,
            initial_accumulator_value: float = 0.0, eps: float = 1e-10, weight_decay: float = 0.0,
            maximize: bool = False) -> list[np.ndarray]:
    xs = [start(x0)]
    sum_of_squares = np.full_like(xs[0], initial_accumulator_value)
    for t in range(1, steps + 1):
        x = xs[-1]
        g = objective_gradient(grad, t, x, weight_decay=weight_decay, maximize=maximize)
        sum_of_squares = sum_of_squares + g * g
        eta = lr / (1.0 + (t - 1) * lr_decay)
        xs.append(x - eta * g / (eps + np.sqrt(sum_of_squares)))
    return xs
