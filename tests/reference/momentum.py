"""Gradient descent and its momentum forms, from the papers' update rules.

* Plain gradient descent (Cauchy, 1847): ``x_{t+1} = x_t - lr * g_t``.
* Heavy ball (Polyak, 1964, "Some methods of speeding up the convergence of iteration
  methods", USSR Comp. Math. & Math. Phys. 4(5), Eq. (9)), in position form with zero initial
  velocity (``x_{-1} = x_0``)::

      x_{t+1} = x_t - lr * g(x_t) + mu * (x_t - x_{t-1})

* torch.optim.SGD's buffer form with dampening ``d`` (``d = mu`` is the exponential moving
  average of gradients)::

      b_1 = g_1,   b_t = mu * b_{t-1} + (1 - d) * g_t,   x_{t+1} = x_t - lr * b_t

  The first buffer is the first gradient, undampened: a convention of torch.optim, not of a
  paper. With ``d = 0`` and a constant ``lr`` it is the heavy ball above.

* Nesterov's accelerated gradient in the form of Sutskever, Martens, Dahl & Hinton (2013),
  "On the importance of initialization and momentum in deep learning", ICML, Eq. (3)-(4)::

      v_{t+1} = mu * v_t - lr * g(theta_t + mu * v_t)
      theta_{t+1} = theta_t + v_{t+1}                      (v_0 = 0)

  The gradient is taken at the look-ahead point ``theta_t + mu * v_t``. Implementations that
  take the gradient at their own iterate (Bengio, Boulanger-Lewandowski & Pascanu, 2013,
  "Advances in optimizing recurrent networks", Sec. 3.5; torch.optim.SGD) iterate exactly
  those look-ahead points, so :func:`nesterov_sutskever` returns ``theta`` and ``v`` for the
  comparison to be made against ``theta_t + mu * v_t``.
"""

from __future__ import annotations

import numpy as np

from tests.reference.common import Gradient, objective_gradient, start


def gradient_descent(x0: np.ndarray, grad: Gradient, steps: int, *, lr: float, weight_decay: float = 0.0,
                     maximize: bool = False) -> list[np.ndarray]:
    """``x_{t+1} = x_t - lr * g_t(x_t)``."""
    xs = [start(x0)]
    for t in range(1, steps + 1):
        x = xs[-1]
        xs.append(x - lr * objective_gradient(grad, t, x, weight_decay=weight_decay, maximize=maximize))
    return xs


def heavy_ball(x0: np.ndarray, grad: Gradient, steps: int, *, lr: float, momentum: float,
               weight_decay: float = 0.0, maximize: bool = False) -> list[np.ndarray]:
    """Polyak: ``x_{t+1} = x_t - lr * g_t(x_t) + momentum * (x_t - x_{t-1})``, ``x_{-1} = x_0``."""
    xs = [start(x0)]
    previous = xs[0]
    for t in range(1, steps + 1):
        x = xs[-1]
        g = objective_gradient(grad, t, x, weight_decay=weight_decay, maximize=maximize)
        xs.append(x - lr * g + momentum * (x - previous))
        previous = x
    return xs


def dampened_momentum(x0: np.ndarray, grad: Gradient, steps: int, *, lr: float, momentum: float,
                      dampening: float, weight_decay: float = 0.0, maximize: bool = False) -> list[np.ndarray]:
    """torch's buffer form: ``b_1 = g_1``, ``b_t = mu b_{t-1} + (1 - d) g_t``, ``x <- x - lr b_t``."""
    xs = [start(x0)]
    b = None
    for t in range(1, steps + 1):
        x = xs[-1]
        g = objective_gradient(grad, t, x, weight_decay=weight_decay, maximize=maximize)
        b = g.copy() if b is None else momentum * b + (1.0 - dampening) * g
        xs.append(x - lr * b)
    return xs


def nesterov_sutskever(x0: np.ndarray, grad: Gradient, steps: int, *, lr: float, momentum: float,
                       weight_decay: float = 0.0,
                       maximize: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Sutskever et al. (2013) Eq. (3)-(4); returns ``([theta_0..theta_T], [v_0..v_T])``.

    Weight decay is part of the objective, so its gradient is also taken at the look-ahead point.
    """
    thetas, vs = [start(x0)], [np.zeros_like(x0, dtype=np.float64)]
    for t in range(1, steps + 1):
        theta, v = thetas[-1], vs[-1]
        lookahead = theta + momentum * v
        v_next = momentum * v - lr * objective_gradient(grad, t, lookahead, weight_decay=weight_decay,
                                                        maximize=maximize)
        thetas.append(theta + v_next)
        vs.append(v_next)
    return thetas, vs
