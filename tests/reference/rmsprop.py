"""RMSprop and its centered form.

* RMSprop: Tieleman & Hinton (2012), "Lecture 6.5 - rmsprop: Divide the gradient by a running
  average of its recent magnitude", COURSERA: Neural Networks for Machine Learning::

      n_t = alpha * n_{t-1} + (1 - alpha) * g_t^2
      x_{t+1} = x_t - lr * g_t / (sqrt(n_t) + eps)

* Centered: Graves (2013), "Generating Sequences With Recurrent Neural Networks",
  arXiv:1308.0850, Eq. (38)-(41), which also keeps the mean of the gradient and divides by an
  estimate of its standard deviation::

      n_t = alpha * n_{t-1} + (1 - alpha) * g_t^2                   (38)
      m_t = alpha * m_{t-1} + (1 - alpha) * g_t                     (39)
      Delta_t = mu * Delta_{t-1} - lr * g_t / sqrt(n_t - m_t^2 + eps)   (40)
      x_{t+1} = x_t + Delta_t                                       (41)

  with ``n_0 = m_0 = 0``. As torch.optim.RMSprop does, ``eps`` is added *outside* the square
  root here, and the momentum buffer is kept without the learning rate,
  ``b_t = mu * b_{t-1} + g_t / denom_t`` with ``x_{t+1} = x_t - lr * b_t`` (``b_0 = 0``): for a
  constant ``lr`` this is Graves' ``Delta_t = -lr * b_t``. ``mu = 0`` gives the plain step.
"""

from __future__ import annotations

import numpy as np

from tests.reference.common import Gradient, objective_gradient, start


def rmsprop(x0: np.ndarray, grad: Gradient, steps: int, *, lr: float, alpha: float = 0.99, eps: float = 1e-8,
            momentum: float = 0.0, centered: bool = False, weight_decay: float = 0.0,
            maximize: bool = False) -> list[np.ndarray]:
    xs = [start(x0)]
    n = np.zeros_like(xs[0])
    m = np.zeros_like(xs[0])
    b = np.zeros_like(xs[0])
    for t in range(1, steps + 1):
        x = xs[-1]
        g = objective_gradient(grad, t, x, weight_decay=weight_decay, maximize=maximize)
        n = alpha * n + (1.0 - alpha) * g * g
        if centered:
            m = alpha * m + (1.0 - alpha) * g
            denom = np.sqrt(n - m * m) + eps
        else:
            denom = np.sqrt(n) + eps
        if momentum > 0:
            b = momentum * b + g / denom
            xs.append(x - lr * b)
        else:
            xs.append(x - lr * g / denom)
    return xs
