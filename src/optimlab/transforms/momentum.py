"""Momentum: heavy ball (Polyak, 1964), its EMA form, and Nesterov's accelerated gradient.

The buffer follows torch.optim.SGD's convention, which folds the learning rate out of the
velocity::

    b_1 = u_1                                   (first step: the buffer *is* the direction)
    b_t = momentum * b_{t-1} + (1 - dampening) * u_t
    out = u_t + momentum * b_t   if nesterov   else   b_t

With a constant learning rate ``lr`` the step ``-lr * b_t`` is exactly Polyak's heavy ball
``p_{t+1} = p_t - lr * g_t + momentum * (p_t - p_{t-1})``; Sutskever et al. (2013) write the same
method with the velocity ``v = -lr * b``, which differs only when ``lr`` changes during training.

``dampening = momentum`` gives the exponential-moving-average form ``b_t = m b_{t-1} + (1-m) u_t``
(an average of past gradients rather than a sum, ``1/(1-m)`` times smaller). Its first step is
``b_1 = u_1``, not the ``(1-m) u_1`` that an average started from zero gives: the buffer starts at
the first gradient, so the EMA form needs no bias correction.

``nesterov=True`` is Nesterov's method in the form of Sutskever et al. (2013), Eq. (3)-(4),
rewritten (Bengio et al., 2013) so the gradient is taken at the parameters themselves: the
iterates equal Sutskever's look-ahead point ``theta_t + momentum * v_t``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import DENSE, SPARSE, HyperParams, State, Transform


class Momentum(Transform):
    """Heavy-ball / EMA / Nesterov momentum on the direction, torch.optim.SGD's buffer (sparse,
    as torch's, while the directions are)."""

    hyperparams = ("momentum", "dampening")
    lazy_state = ("momentum_buffer",)
    grad_layouts = frozenset({DENSE, SPARSE})

    def __init__(self, nesterov: bool = False) -> None:
        self.nesterov = nesterov

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        momentum = hp["momentum"]
        buf = state.get("momentum_buffer")
        if buf is None:
            # Created on the first step, so it also appears if momentum is switched on later.
            buf = state["momentum_buffer"] = u.clone()
        else:
            buf.mul_(momentum).add_(u * (1 - hp.get("dampening", 0)))
        return u + momentum * buf if self.nesterov else buf

    def __repr__(self) -> str:
        return f"Momentum(nesterov={self.nesterov})"


class EMAMomentum(Transform):
    """Momentum as an exponential moving average from zero, with an optional Nesterov look-ahead,
    as Muon keeps it (Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural
    networks"; torch.optim.Muon)::

        b_0 = 0
        b_t = b_{t-1} + (1 - momentum) * (u_t - b_{t-1})      (= momentum * b_{t-1} + (1 - momentum) * u_t)
        out = u_t + momentum * (b_t - u_t)   if nesterov   else   b_t

    Unlike :class:`Momentum` with ``dampening = momentum``, the buffer starts at zero, not at the
    first direction: Muon orthogonalizes ``out``, which discards its scale, so the missing bias
    correction does not matter. Both updates are ``lerp`` as in torch, whose rounding they keep.
    """

    hyperparams = ("momentum",)

    def __init__(self, nesterov: bool = True) -> None:
        self.nesterov = nesterov

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        momentum = hp["momentum"]
        buf = state["momentum_buffer"].lerp_(u, 1 - momentum)
        return u.lerp(buf, momentum) if self.nesterov else buf

    def __repr__(self) -> str:
        return f"EMAMomentum(nesterov={self.nesterov})"
