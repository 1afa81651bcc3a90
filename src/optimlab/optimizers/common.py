"""What every optimizer class here shares: the parameter types, the common checks, the sign."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform, chain
from optimlab.transforms import (
    AddDecayedWeights,
    DecoupledWeightDecay,
    Negate,
    ScaleByLearningRate,
)

Params = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]

#: Checks shared by every optimizer here.
COMMON_CHECKS = {
    "lr": checks.non_negative,
    "weight_decay": checks.non_negative,
    "maximize": checks.flag,
    "foreach": checks.optional_flag,
    "fused": checks.optional_flag,
    "capturable": checks.flag,
    "differentiable": checks.flag,
}


def with_sign(group: Mapping[str, Any], *transforms: Transform) -> Transform:
    """``transforms``, preceded by a sign flip when the group maximizes."""
    return chain(Negate(), *transforms) if group["maximize"] else chain(*transforms)


def adaptive(group: Mapping[str, Any], scaling: Transform, decoupled_weight_decay: bool = False) -> Transform:
    """The chain of an adaptive method (Adam and its variants): the sign, weight decay, the
    per-coordinate ``scaling``, the learning rate.

    Weight decay is coupled (L2: ``weight_decay * p`` added to the gradient, so the scaling
    rescales it) unless ``decoupled_weight_decay``, which shrinks the parameter by
    ``lr * weight_decay`` beside the scaled step (Loshchilov & Hutter, 2019).
    """
    if decoupled_weight_decay:
        return with_sign(group, scaling, ScaleByLearningRate(), DecoupledWeightDecay())
    return with_sign(group, AddDecayedWeights(), scaling, ScaleByLearningRate())
