"""L-BFGS's quasi-Newton direction: the curvature history and the two-loop recursion.

L-BFGS (Liu & Nocedal, 1989; Nocedal & Wright, 2006, "Numerical Optimization", 2nd ed., Ch. 7.2)
steps along ``-H g``, where ``H`` approximates the inverse Hessian from the last ``m`` pairs

    s_i = x_{i+1} - x_i      (a step: ``old_stps``)
    y_i = g_{i+1} - g_i      (the change of gradient it caused: ``old_dirs``)

without ever forming ``H``: :func:`two_loop` applies it in ``O(m n)``. The names in quotes are
torch.optim.LBFGS's state keys, which optimlab keeps so checkpoints move both ways.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: A pair is kept only if its curvature ``y^T s`` exceeds this, so ``H`` stays positive definite.
MIN_CURVATURE = 1e-10


def remember(history: dict[str, Any], y: Tensor, s: Tensor, history_size: int) -> None:
    """Add the pair ``(s, y)`` to ``history`` (``old_dirs``, ``old_stps``, ``ro = 1 / y^T s``,
    ``H_diag``), dropping the oldest beyond ``history_size``; skipped without positive
    curvature ``y^T s > 1e-10`` (the Wolfe conditions guarantee it on convex stretches).

    ``H_diag = s^T y / y^T y`` scales the initial inverse Hessian ``H_0 = H_diag * I`` to the
    latest curvature (Nocedal & Wright, eq. (7.20)), so that a unit step is usually accepted.
    """
    ys = y.dot(s)
    if not ys > MIN_CURVATURE:
        return
    if len(history["old_dirs"]) == history_size:
        for key in ("old_dirs", "old_stps", "ro"):
            history[key].pop(0)
    history["old_dirs"].append(y)
    history["old_stps"].append(s)
    history["ro"].append(1.0 / ys)
    history["H_diag"] = ys / y.dot(y)


def two_loop(grad: Tensor, old_dirs: list[Tensor], old_stps: list[Tensor], ro: list[Tensor], H_diag: Any,
             alphas: list[Any]) -> Tensor:
    """The direction ``-H g`` by the two-loop recursion (Nocedal & Wright, Algorithm 7.4)::

        q = -g;   for i = newest .. oldest:  alpha_i = rho_i s_i^T q;   q -= alpha_i y_i
        r = H_diag q;   for i = oldest .. newest:  beta = rho_i y_i^T r;   r += (alpha_i - beta) s_i

    ``alphas`` is torch's ``al`` scratch list (kept in the state, written in place). Each update
    is one ``add_`` with ``alpha=`` (one rounding), as torch does.
    """
    q = grad.neg()
    for i in reversed(range(len(old_dirs))):
        alphas[i] = old_stps[i].dot(q) * ro[i]
        q.add_(old_dirs[i], alpha=-alphas[i])
    r = torch.mul(q, H_diag)
    for i in range(len(old_dirs)):
        beta = old_dirs[i].dot(r) * ro[i]
        r.add_(old_stps[i], alpha=alphas[i] - beta)
    return r
