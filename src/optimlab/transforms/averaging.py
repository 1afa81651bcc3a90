"""Averaged SGD: a decaying step size, and the running average of the iterates.

ASGD (Polyak & Juditsky, 1992, "Acceleration of Stochastic Approximation by Averaging") takes
plain SGD steps with a step size that decays slowly, and returns the *average* of the iterates,
which converges at the optimal rate where the iterates themselves only jitter around the
optimum. torch.optim.ASGD follows the averaged SGD of Bottou (2012, "Stochastic Gradient
Tricks", with the step-size schedule of Xu 2011) for an objective with an L2 term
``lambd/2 |p|^2``::

    eta_t = lr / (1 + lambd * lr * (t - 1))^alpha          (eta_1 = lr)
    p_t   = p_{t-1} - eta_t * (g_t + lambd * p_{t-1})
    mu_t  = 1 / max(1, t - 1 - t0)
    ax_t  = ax_{t-1} + mu_t * (p_t - ax_{t-1})               (ax_t = p_t while mu_t = 1)

so ``ax`` is a copy of ``p`` up to step ``t0 + 2``, then the mean of the iterates from that step on.
The parameters keep the SGD iterates; the average is ``optimizer.state[p]["ax"]``.

Both scalars are per-parameter 0-d state, each computed at the end of a step for the next one
(torch.optim's ``eta`` and ``mu``, in its 0-d dtype, float32 unless float64 is the default);
the math reads them as torch does, as float64 numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import HyperParams, State, Transform, is_zero, saved, scalar_dtype, select


class ScaleByDecayingStepSize(Transform):
    """The ASGD step (Bottou, 2012; Xu, 2011)::

        out   = -eta_t * (u + lambd * p)
        eta_{t+1} = lr / (1 + lambd * lr * t)^alpha       (stored in ``eta``)

    ``lambd`` both regularizes and sets how fast the step size decays; ``alpha = 0.75`` is
    the exponent Xu (2011) and Bottou recommend.
    """

    hyperparams = ("lr", "lambd", "alpha")

    def init(self, param: Tensor) -> dict[str, Tensor]:
        # Its value is set on the parameter's first step, from the learning rate of that step.
        return {"eta": torch.zeros((), dtype=scalar_dtype(), device=param.device)}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        lr, lambd, alpha = hp["lr"], hp["lambd"], hp["alpha"]
        eta_state = state["eta"]
        # torch.optim.ASGD makes eta = lr (in the state's dtype) on a parameter's first step.
        eta_state.copy_(select(step == 1, lr, eta_state))
        eta = eta_state.double()
        out = -eta * (u if is_zero(lambd) else u + lambd * param)
        eta_state.fill_(lr / (1 + lambd * lr * step) ** alpha)
        return out


class IterateAveraging(Transform):
    """The running average of the iterates (Polyak & Juditsky, 1992), from step ``t0 + 1`` on::

        p_new = p + u                              (the iterate this step writes)
        ax    = p_new  if mu == 1  else  ax + mu * (p_new - ax)
        mu_{t+1} = 1 / max(1, t - t0)              (stored in ``mu``)

    Goes last in a chain: it reads the final step ``u`` and passes it on unchanged.
    """

    hyperparams = ("t0",)

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return {"mu": torch.ones((), dtype=scalar_dtype(), device=param.device),
                "ax": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        ax, mu = state["ax"], state["mu"]
        new_param = param + u
        # While mu is 1 the average is the iterate itself, copied exactly (as torch does).
        ax.copy_(select(mu == 1, new_param, ax + (new_param - ax) * saved(mu)))
        steps_averaged = step - hp["t0"]
        mu.fill_(1 / select(steps_averaged > 1, steps_averaged, 1))
        return u
