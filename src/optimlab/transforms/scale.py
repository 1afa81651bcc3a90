"""Sign and step size: the first and last links of most chains."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from optimlab.core import DENSE, SPARSE, HyperParams, State, Transform


class Negate(Transform):
    """``u <- -u``: gradient *ascent*, i.e. ``maximize=True`` (maximize f == minimize -f)."""

    grad_layouts = frozenset({DENSE, SPARSE})

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        return -u


class ScaleByLearningRate(Transform):
    """``u <- -lr * u``: turn a descent direction into the step that is added to the parameter."""

    hyperparams = ("lr",)
    grad_layouts = frozenset({DENSE, SPARSE})

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        return u * -hp["lr"]
