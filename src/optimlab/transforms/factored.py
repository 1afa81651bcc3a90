"""Adafactor: second moments kept as row and column factors, steps relative to the parameter.

Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
Algorithms 4 (matrices) and 5 (vectors), in the variant of torch.optim.Adafactor:

* For a parameter with two or more dimensions, the second moment of the gradient is not kept
  element by element (``n * m`` numbers per matrix) but as the running means of ``g^2`` over
  its rows and over its columns (``n + m``); their outer product divided by the mean of the row
  factor is the rank-one estimate ``V_hat`` of Algorithm 4. A tensor with more than two
  dimensions is a batch of matrices: the last two dimensions are factored.
* The step is relative to the parameter's scale: ``alpha_t = max(eps2, RMS(p)) * rho_t``, with
  ``rho_t = min(lr, 1 / sqrt(t))`` (the paper's ``min(1e-2, 1 / sqrt(t))``, its constant
  being torch's ``lr``, default 1e-2).
* The update ``U = g / sqrt(V_hat)`` is clipped to an RMS of at most ``d`` (Section 6).
* ``beta2_t = 1 - t^beta2_decay`` (Section 7, ``beta2_decay = -0.8``), so that the first step
  sees ``1 - beta2_1 = 1``: no bias correction is needed.
* ``eps1`` (the paper's ``epsilon_1``, added to ``g^2``) is applied as a floor instead: on the
  mean of the row factor and on ``V_hat`` (as ``eps1^2``, since it is square-rooted); ``None``
  is the machine epsilon of the parameter's dtype.

No first moment: the paper drops momentum once updates are clipped, and so does torch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import TENSOR, HyperParams, State, Transform, select


def rms(x: Tensor) -> Tensor:
    """Root mean square of all elements, ``||x||_2 / sqrt(n)`` (the paper's RMS), a float64 0-d
    tensor: the per-tensor numbers derived from it are computed in float64, as torch computes
    them from ``.item()``, whatever the parameter's dtype."""
    return x.norm().double() / x.numel() ** 0.5


def mean_square(g: Tensor, dim: int) -> Tensor:
    """``mean(g^2)`` over ``dim``, kept as a dimension of size 1.

    Computed as ``||g||^2 / n`` along the dimension, as torch.optim.Adafactor does (no
    intermediate tensor of ``g``'s size), so that the two round alike.
    """
    return torch.linalg.vector_norm(g, dim=dim, keepdim=True).square_().div_(g.size(dim))


class ScaleByAdafactor(Transform):
    """Adafactor (Shazeer & Stern, 2018, Algorithms 4 and 5; torch.optim.Adafactor's variant)::

        beta2_t    = 1 - t^beta2_decay
        rho_t      = min(lr, 1 / sqrt(t))
        alpha_t    = max(eps2, RMS(p)) * rho_t
        matrices (the last two dimensions):
            R_t    = beta2_t R_{t-1} + (1 - beta2_t) mean_columns(g_t^2)        (row_var)
            C_t    = beta2_t C_{t-1} + (1 - beta2_t) mean_rows(g_t^2)           (col_var)
            V_hat  = R_t C_t / max(mean(R_t), eps1)
        vectors and scalars:
            V_hat  = beta2_t V_{t-1} + (1 - beta2_t) g_t^2                      (variance)
        U_t        = g_t / sqrt(max(V_hat, eps1^2))
        out        = -alpha_t U_t / max(1, RMS(U_t) / d)

    Kind "tensor": the factors are reductions over the parameter's true shape. Per-tensor
    numbers (``alpha_t``, the clipping) are float64 0-d tensors, never read in Python.
    """

    hyperparams = ("lr", "beta2_decay", "eps", "d")
    kind = TENSOR

    def init(self, param: Tensor) -> dict[str, Tensor]:
        if param.dim() >= 2:
            # torch.optim's shapes: the row factor keeps the last dimension as 1, the column
            # factor the one before it, so that ``row_var @ col_var`` is the rank-one estimate.
            return {"row_var": param.new_zeros(*param.shape[:-1], 1),
                    "col_var": param.new_zeros(*param.shape[:-2], 1, param.shape[-1])}
        return {"variance": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        lr, beta2_decay, d = hp["lr"], hp["beta2_decay"], hp["d"]
        eps1, eps2 = hp["eps"]
        if eps1 is None:  # a structural default, not a value: None is never a tensor
            eps1 = torch.finfo(param.dtype).eps

        one_minus_beta2 = step**beta2_decay
        inverse_sqrt_t = 1 / step**0.5
        rho = select(lr < inverse_sqrt_t, lr, inverse_sqrt_t)
        alpha = rms(param).clamp(min=eps2) * rho

        if param.dim() >= 2:
            row_var = state["row_var"].lerp_(mean_square(u, -1), one_minus_beta2)
            col_var = state["col_var"].lerp_(mean_square(u, -2), one_minus_beta2)
            variance = row_var @ col_var / row_var.mean(dim=-2, keepdim=True).clamp(min=eps1)
        else:
            variance = state["variance"].lerp_(u * u, one_minus_beta2)

        update = u * variance.clamp(min=eps1 * eps1).rsqrt()
        ratio = rms(update) / d
        # max(1, ratio) as torch's Python max takes it: a NaN ratio (a NaN gradient) clips by 1,
        # so NaN stays where the gradient had it, as in torch.
        clipping = select(ratio > 1, ratio, 1.0)
        return update * (-alpha / clipping)
