"""Orthogonalized updates: Muon (Jordan et al., 2024).

Muon ("MomentUm Orthogonalized by Newton-Schulz"; K. Jordan et al., 2024, "Muon: An optimizer
for hidden layers in neural networks", https://kellerjordan.github.io/posts/muon/) steps a
weight matrix along the semi-orthogonal matrix nearest to its momentum ``M = U S V^T``: the
``U V^T`` that keeps the directions of ``M`` and sets all its singular values to 1. Rare
directions of the gradient then move as far as dominant ones. ``U V^T`` is approximated by a
few steps of a quintic Newton-Schulz iteration on ``X_0 = M / |M|_F`` (singular values <= 1)::

    A_k     = X_k X_k^T
    X_{k+1} = a X_k + (b A_k + c A_k^2) X_k          (a, b, c) = (3.4445, -4.7750, 2.0315)

whose odd polynomial ``p(s) = a s + b s^3 + c s^5`` pushes every singular value in (0, 1]
into roughly [0.5, 1.5] within 5 steps: the coefficients maximize the slope at 0, trading
exact convergence to 1 (which Jordan et al. found not to help training) for fewer steps.

A weight of more than two dimensions (a convolution kernel ``(out, in, kh, kw)``) is
orthogonalized as the matrix ``(out, in * kh * kw)`` (its rows are the output channels' filters),
and its learning-rate adjustment uses that matrix's shape. torch.optim.Muon takes matrices only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimlab.core import TENSOR, HyperParams, State, Transform


def matrix_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """The matrix a weight is orthogonalized as: ``(shape[0], everything else)``."""
    return shape[0], math.prod(shape[1:])


def newton_schulz(matrix: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype | None = None) -> Tensor:
    """``U V^T`` of ``matrix = U S V^T``, approximately, by ``steps`` quintic Newton-Schulz steps.

    Computed in ``dtype``, by default (None) bfloat16 as torch.optim.Muon does (and Jordan's
    reference): the result is only an approximation, and the matrix products dominate Muon's
    cost. The wide orientation is iterated (``X X^T`` is the smaller Gram matrix), and each step
    is two ``addmm`` as in torch, one rounding per product, so both give the same bits. Returns
    a tensor of ``dtype``.
    """
    a, b, c = coefficients
    x = matrix.to(torch.bfloat16 if dtype is None else dtype)
    tall = matrix.size(0) > matrix.size(1)
    if tall:
        x = x.mT
    x = x / x.norm().clamp(min=eps)  # Frobenius norm >= spectral norm: singular values <= 1
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.addmm(x, polynomial, x, beta=a)  # a X + (b A + c A^2) X
    return x.mT if tall else x


def lr_ratio(rows: int, cols: int, adjust_lr_fn: str | None) -> float:
    """How much Muon scales the learning rate for a ``rows x cols`` update.

    * ``"original"`` (the default, Jordan et al.): ``sqrt(max(1, rows / cols))``, so that a tall
      matrix's orthogonal update, whose rows are shorter than 1, has an RMS like a wide one's;
    * ``"match_rms_adamw"`` (Liu et al., 2025, "Muon is Scalable for LLM Training", Sec. 2.2):
      ``0.2 * sqrt(max(rows, cols))``, an update RMS of ~0.2 like AdamW's, so AdamW's learning
      rate and weight decay carry over.
    """
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


class Orthogonalize(Transform):
    """``u <- NS(u)``: the direction replaced by its orthogonalization (:func:`newton_schulz`),
    on the ``(shape[0], -1)`` matrix of a weight of any number (>= 2) of dimensions."""

    kind = TENSOR
    hyperparams = ("ns_coefficients", "ns_steps", "eps", "ns_dtype")

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        ortho = newton_schulz(u.reshape(matrix_shape(u.shape)), hp["ns_coefficients"], hp["ns_steps"], hp["eps"],
                              hp["ns_dtype"])
        return ortho.reshape(u.shape).to(u.dtype)  # bfloat16 widens exactly


class ScaleByAdjustedLearningRate(Transform):
    """``u <- -lr * ratio * u``, ``ratio`` from the matrix shape (:func:`lr_ratio`).

    Of the tensor kind: the ratio is read from the parameter's true shape, which elementwise math
    (traced on a vector of the elements) never sees.
    """

    hyperparams = ("lr",)
    kind = TENSOR

    def __init__(self, adjust_lr_fn: str | None = None) -> None:
        self.adjust_lr_fn = adjust_lr_fn

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        return u * -(hp["lr"] * lr_ratio(*matrix_shape(param.shape), self.adjust_lr_fn))

    def __repr__(self) -> str:
        return f"ScaleByAdjustedLearningRate({self.adjust_lr_fn!r})"
