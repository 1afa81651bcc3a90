"""What every optimizer class here shares: the parameter types, the common checks, the sign."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform, chain
from optimlab.transforms import Negate

Params = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]

#: Checks shared by every optimizer here.
COMMON_CHECKS = {
    "lr": checks.non_negative,
    "weight_decay": checks.non_negative,
    "maximize": checks.flag,
    "foreach": checks.optional_flag,
    "fused": checks.optional_flag,
    "capturable": checks.flag,
    "differentiable": checks.unsupported_true,
}


def with_sign(group: Mapping[str, Any], *transforms: Transform) -> Transform:
    """``transforms``, preceded by a sign flip when the group maximizes."""
    return chain(Negate(), *transforms) if group["maximize"] else chain(*transforms)
