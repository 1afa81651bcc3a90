"""Adagrad (Duchi, Hazan & Singer, 2011)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, with_sign
from optimlab.transforms import AddDecayedWeights, ScaleByAdagrad, ScaleByLearningRate


class Adagrad(Optimizer):
    """Adagrad: per-coordinate steps ``lr * g / (sqrt(sum of g^2) + eps)`` (Duchi et al., 2011).

    Same arguments and defaults as :class:`torch.optim.Adagrad`. Sparse gradients (an
    embedding's, ``nn.Embedding(sparse=True)``) update only the rows they name, as in torch,
    which allows no ``weight_decay`` with them.
    """

    checks = {**COMMON_CHECKS, "lr_decay": checks.non_negative, "eps": checks.non_negative,
              "initial_accumulator_value": checks.non_negative}
    counts_steps = True
    state_at_construction = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def step_groups(self) -> None:
        for group in self.param_groups:
            if group["weight_decay"] != 0 and any(p.grad is not None and p.grad.is_sparse for p in group["params"]):
                # torch.optim.Adagrad's error: the decay would touch every row, the gradient names a few.
                raise RuntimeError(f"{self.owner}: weight_decay option is not compatible with sparse gradients "
                                   f"(weight_decay={group['weight_decay']!r})")
        super().step_groups()

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["initial_accumulator_value"]

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return with_sign(group, AddDecayedWeights(), ScaleByAdagrad(group["initial_accumulator_value"]),
                         ScaleByLearningRate())
