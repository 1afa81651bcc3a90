"""Adam, AMSGrad and AdamW.

* Adam: Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", ICLR, Algorithm 1::

      m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
      v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2
      mhat_t = m_t / (1 - beta1^t)
      vhat_t = v_t / (1 - beta2^t)
      x_t = x_{t-1} - lr * mhat_t / (sqrt(vhat_t) + eps)

  with ``m_0 = v_0 = 0``. Coupled weight decay (L2) is part of ``g_t``.

* AMSGrad: Reddi, Kale & Kumar (2018), "On the Convergence of Adam and Beyond", ICLR,
  Algorithm 2, as torch.optim implements it: the maximum is taken over the raw second
  moments, *then* bias-corrected: ``vmax_t = max(vmax_{t-1}, v_t)``,
  ``vhat_t = vmax_t / (1 - beta2^t)`` (``vmax_0 = 0``).

* AdamW: Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization", ICLR,
  Algorithm 2, line 12::

      x_t = x_{t-1} - eta_t * (alpha * mhat_t / (sqrt(vhat_t) + eps) + lambda * x_{t-1})

  with the schedule multiplier folded into the learning rate (``eta_t = lr``, ``alpha = 1``,
  ``lambda = weight_decay``), as torch.optim.AdamW defines it: the decay ``lr * wd * x`` is
  taken from the *previous* iterate and never enters ``m`` or ``v``.
"""

from __future__ import annotations

import numpy as np

from tests.reference.common import Gradient, objective_gradient, start


def adam(x0: np.ndarray, grad: Gradient, steps: int, *, lr: float, beta1: float = 0.9, beta2: float = 0.999,
         eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, decoupled: bool = False,
         maximize: bool = False) -> list[np.ndarray]:
    """Adam (``decoupled=False``: L2 weight decay in the gradient) or AdamW (``decoupled=True``)."""
    xs = [start(x0)]
    m = np.zeros_like(xs[0])
    v = np.zeros_like(xs[0])
    vmax = np.zeros_like(xs[0])
    coupled_decay = 0.0 if decoupled else weight_decay
    for t in range(1, steps + 1):
        x = xs[-1]
        g = objective_gradient(grad, t, x, weight_decay=coupled_decay, maximize=maximize)
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        if amsgrad:
            vmax = np.maximum(vmax, v)
            vhat = vmax / (1.0 - beta2**t)
        else:
            vhat = v / (1.0 - beta2**t)
        mhat = m / (1.0 - beta1**t)
        step = mhat / (np.sqrt(vhat) + eps)
        if decoupled:
            xs.append(x - lr * (step + weight_decay * x))
        else:
            xs.append(x - lr * step)
    return xs


def adamw(x0: np.ndarray, grad: Gradient, steps: int, **hyperparameters) -> list[np.ndarray]:
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019, Algorithm 2)."""
    return adam(x0, grad, steps, decoupled=True, **hyperparameters)
