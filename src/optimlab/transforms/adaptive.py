"""Per-coordinate adaptive step sizes: Adagrad, RMSprop, Adam.

All three divide the direction by a running size of past gradients; they differ in how that
size is accumulated, and the difference matters:

* Adagrad *sums* squared gradients, so its effective step only shrinks (good for sparse
  features, stalls on long non-convex runs).
* RMSprop keeps an exponential *average* of squared gradients, so the step adapts up and down.
* Adam also averages the gradient itself (first moment) and corrects both averages for their
  zero initialisation (bias correction), so its first steps have the intended size.

In all three ``eps`` is added to the square root, ``u / (sqrt(v) + eps)``, not inside it
(``sqrt(v + eps)``), as in the papers and torch.optim.

The averages of squares are updated as ``v * beta + u^2 * (1 - beta)``, not with
``v.lerp_(u^2, 1 - beta)``: lerp rounds its weight ``1 - beta`` to the tensor's dtype and, for
a weight above 1/2, uses ``1 - weight`` as the decay, so a small ``beta`` loses its relative
precision (float32: ``beta2 = 3e-4`` acts as ``3e-4 * (1 +- 1e-4)``, ``1e-8`` as 0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import DENSE, SPARSE, TENSOR, HyperParams, State, Transform, is_zero, saved


def zeros_like_param(param: Tensor, *names: str) -> dict[str, Tensor]:
    """State tensors shaped and laid out like ``param``, all zeros, under ``names``."""
    return {name: torch.zeros_like(param, memory_format=torch.preserve_format) for name in names}


def sparse_like(u: Tensor, values: Tensor) -> Tensor:
    """The sparse tensor with the indices of ``u`` (sparse, coalesced) and ``values``: a
    quantity computed for the rows ``u`` names."""
    # The indices are those of a valid, coalesced tensor: nothing to check, nothing to merge.
    return torch.sparse_coo_tensor(u._indices(), values, u.shape, is_coalesced=True, check_invariants=False)


def maximum_(dest: Tensor, other: Tensor) -> Tensor:
    """``dest <- max(dest, other)`` in place, and returned: the running maxima of AMSGrad and
    Adamax. ``torch.maximum(..., out=)`` writes no intermediate; under autograd (a step with
    ``differentiable=True``), which refuses ``out=``, the maximum of a copy is copied in."""
    if torch.is_grad_enabled():
        return dest.copy_(torch.maximum(saved(dest), other))
    return torch.maximum(dest, other, out=dest)


def update_moments(u: Tensor, state: State, beta1: Any, beta2: Any) -> tuple[Tensor, Tensor]:
    """Adam's two running averages, updated in place and returned (Kingma & Ba, 2015, Alg. 1)::

        exp_avg    <- beta1 * exp_avg    + (1 - beta1) * u
        exp_avg_sq <- beta2 * exp_avg_sq + (1 - beta2) * u^2

    Shared by Adam and the variants that change only how the step is made from them (NAdam,
    RAdam).
    """
    exp_avg = state["exp_avg"].lerp_(u, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"].mul_(beta2).add_(u * u * (1 - beta2))
    return exp_avg, exp_avg_sq


class ScaleByAdagrad(Transform):
    """Adagrad (Duchi, Hazan & Singer, 2011, JMLR 12, diagonal version, Eq. (1) / Fig. 1)::

        sum_t = sum_{t-1} + u_t^2               (sum_0 = initial_accumulator_value)
        out   = u_t / (sqrt(sum_t) + eps) / (1 + (t - 1) * lr_decay)

    ``lr_decay`` is torch.optim.Adagrad's built-in 1/t-style decay of the step size. A sparse
    ``u`` (an embedding's rows) adds to the sums of the rows it names, and only those rows move,
    as in torch.
    """

    hyperparams = ("lr_decay", "eps")
    grad_layouts = frozenset({DENSE, SPARSE})

    def __init__(self, initial_accumulator_value: float = 0.0) -> None:
        self.initial_accumulator_value = initial_accumulator_value

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return {"sum": torch.full_like(param, self.initial_accumulator_value, memory_format=torch.preserve_format)}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        accumulator = state["sum"]
        if u.is_sparse:
            # Squares are not linear in u: a row named twice is summed first (coalesce).
            u = u.coalesce()
            values = u._values()
            accumulator.add_(sparse_like(u, values * values))
            out = sparse_like(u, values / (accumulator.sparse_mask(u)._values().sqrt() + hp["eps"]))
        else:
            accumulator.add_(u * u)
            out = u / (accumulator.sqrt() + hp["eps"])
        lr_decay = hp["lr_decay"]
        return out if is_zero(lr_decay) else out / (1 + (step - 1) * lr_decay)


class ScaleByRMS(Transform):
    """RMSprop (Tieleman & Hinton, 2012, Lecture 6.5) and its centered form (Graves, 2013,
    "Generating Sequences With Recurrent Neural Networks", Eq. (38)-(41))::

        v_t = alpha * v_{t-1} + (1 - alpha) * u_t^2
        g_t = alpha * g_{t-1} + (1 - alpha) * u_t          (centered only)
        out = u_t / (sqrt(v_t - g_t^2) + eps)   centered   else   u_t / (sqrt(v_t) + eps)

    Centering divides by an estimate of the gradient's standard deviation instead of its
    root mean square. Momentum, if any, is applied to ``out`` by :class:`Momentum` after this.
    """

    hyperparams = ("alpha", "eps")

    def __init__(self, centered: bool = False) -> None:
        self.centered = centered

    def init(self, param: Tensor) -> dict[str, Tensor]:
        state = {"square_avg": torch.zeros_like(param, memory_format=torch.preserve_format)}
        if self.centered:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        alpha = hp["alpha"]
        square_avg = state["square_avg"].mul_(alpha).add_(u * u * (1 - alpha))
        if self.centered:
            grad_avg = state["grad_avg"].lerp_(u, 1 - alpha)
            variance = square_avg - grad_avg * grad_avg
            return u / (variance.sqrt() + hp["eps"])
        return u / (square_avg.sqrt() + hp["eps"])

    def __repr__(self) -> str:
        return f"ScaleByRMS(centered={self.centered})"


class ScaleByAdam(Transform):
    """Adam (Kingma & Ba, 2015, Algorithm 1) with optional AMSGrad (Reddi et al., 2018, Alg. 2)::

        m_t = beta1 * m_{t-1} + (1 - beta1) * u_t
        v_t = beta2 * v_{t-1} + (1 - beta2) * u_t^2
        vmax_t = max(vmax_{t-1}, v_t)                       (amsgrad; then v_t := vmax_t below)
        out = (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps)

    The bias corrections undo the pull of the zero initialisation towards 0; without them the
    first steps are ~1/(1-beta1) = 10x too small for the default betas. ``eps`` is added after
    the bias-corrected square root, as in Algorithm 1.
    """

    hyperparams = ("betas", "eps")

    def __init__(self, amsgrad: bool = False) -> None:
        self.amsgrad = amsgrad

    def init(self, param: Tensor) -> dict[str, Tensor]:
        names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if self.amsgrad else ("exp_avg", "exp_avg_sq")
        return zeros_like_param(param, *names)

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        beta1, beta2 = hp["betas"]
        exp_avg, exp_avg_sq = update_moments(u, state, beta1, beta2)
        if self.amsgrad:
            exp_avg_sq = maximum_(state["max_exp_avg_sq"], exp_avg_sq)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        denom = exp_avg_sq.sqrt() / bias_correction2**0.5 + hp["eps"]
        return exp_avg / bias_correction1 / denom

    def __repr__(self) -> str:
        return f"ScaleByAdam(amsgrad={self.amsgrad})"


class ScaleBySparseAdam(Transform):
    """Adam on the rows that a sparse gradient names, torch.optim.SparseAdam's "lazy" Adam
    (Kingma & Ba, 2015, Algorithm 1, with the step size of Section 2's last paragraph)::

        for each row i that g_t names (its entries summed if named twice):
            m_i <- beta1 * m_i + (1 - beta1) * g_i
            v_i <- beta2 * v_i + (1 - beta2) * g_i^2
            out_i = -lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m_i / (sqrt(v_i) + eps)
        every other row: its moments and parameter are left as they are

    Only the named rows are read and written (an embedding of a million rows updates the few
    a batch looked up). A row's moments decay only on the steps that name it, while the bias
    corrections use the count of all steps, as in torch. ``eps`` is added to ``sqrt(v)`` before
    the bias correction, which is folded into the step size, as in the paper's efficient form
    (torch.optim.Adam adds it after). Each moment is updated as ``m + (1 - beta) * (g - m)``,
    torch's order of operations. Kind "tensor": it reads the gradient's sparse structure.
    """

    hyperparams = ("lr", "betas", "eps")
    kind = TENSOR
    grad_layouts = frozenset({SPARSE})

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return zeros_like_param(param, "exp_avg", "exp_avg_sq")

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        beta1, beta2 = hp["betas"]
        u = u.coalesce()  # the moments are not linear in u: a row named twice is summed first
        values = u._values()
        if values.numel() == 0:
            return u  # a gradient that names no row moves nothing (the step still counts)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        old_exp_avg = exp_avg.sparse_mask(u)._values()
        exp_avg_change = (values - old_exp_avg) * (1 - beta1)
        exp_avg.add_(sparse_like(u, exp_avg_change))
        old_exp_avg_sq = exp_avg_sq.sparse_mask(u)._values()
        exp_avg_sq_change = (values * values - old_exp_avg_sq) * (1 - beta2)
        exp_avg_sq.add_(sparse_like(u, exp_avg_sq_change))
        denom = (exp_avg_sq_change + old_exp_avg_sq).sqrt() + hp["eps"]
        step_size = hp["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
        return sparse_like(u, -step_size * ((exp_avg_change + old_exp_avg) / denom))
