"""Weight decay, in its two forms.

* Coupled (L2 regularisation): add ``wd * p`` to the gradient, as if the loss had a
  ``wd/2 * |p|^2`` term. Adaptive methods then *rescale* the decay per coordinate, which is
  why it regularises Adam poorly (Loshchilov & Hutter, 2019, "Decoupled Weight Decay
  Regularization", Sec. 2).
* Decoupled (AdamW): shrink the parameter directly, ``p <- p - lr * wd * p``, outside the
  adaptive scaling (Loshchilov & Hutter, Algorithm 2, line 12, with the schedule multiplier
  folded into ``lr`` as torch.optim.AdamW does).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from optimlab.core import DENSE, SPARSE, HyperParams, State, Transform, is_zero


class AddDecayedWeights(Transform):
    """Coupled weight decay / L2: ``u <- u + weight_decay * p`` (dense, also for a sparse ``u``,
    as torch.optim.SGD makes it)."""

    hyperparams = ("weight_decay",)
    grad_layouts = frozenset({DENSE, SPARSE})

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        wd = hp["weight_decay"]
        return u if is_zero(wd) else u + wd * param


class DecoupledWeightDecay(Transform):
    """Decoupled weight decay: ``u <- u - lr * weight_decay * p`` (goes after the lr scaling)."""

    hyperparams = ("lr", "weight_decay")

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        wd = hp["weight_decay"]
        return u if is_zero(wd) else u - (hp["lr"] * wd) * param
