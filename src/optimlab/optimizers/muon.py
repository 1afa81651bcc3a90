"""Muon (Jordan et al., 2024): momentum orthogonalized by Newton-Schulz, for weight matrices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from optimlab import checks
from optimlab.core import Transform, chain
from optimlab.optimizer import Optimizer, param_name
from optimlab.optimizers.common import COMMON_CHECKS, Params
from optimlab.transforms import (
    DecoupledWeightDecay,
    EMAMomentum,
    Orthogonalize,
    ScaleByAdjustedLearningRate,
)

#: Jordan et al.'s quintic Newton-Schulz coefficients (a, b, c), torch.optim.Muon's default.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


class Muon(Optimizer):
    """Muon: SGD momentum, orthogonalized, with decoupled weight decay (Jordan et al., 2024)::

        b   = lerp(b, g, 1 - momentum);   m = lerp(g, b, momentum) if nesterov else b
        O   = NS(m)                      (Newton-Schulz in bfloat16, optimlab.transforms.orthogonal)
        p  <- p - lr * weight_decay * p - lr * ratio(shape) * O

    Same arguments, defaults and state as :class:`torch.optim.Muon`. Beyond torch, parameters of
    more than two dimensions (convolution kernels) are taken, as the matrix ``(shape[0], -1)``
    for the orthogonalization and for ``adjust_lr_fn``; and ``ns_dtype`` chooses the dtype of
    the Newton-Schulz products: None (the default) is bfloat16, as torch's, which GPUs multiply
    fastest; ``torch.float32`` suits a CPU without bfloat16 matrix instructions, where it is
    about 9x faster (a 384 x 1536 Gram matrix on one core: 6 ms against 56 ms) and more exact.
    Muon is for hidden layers' weights: give biases, norms and embeddings to AdamW, in a second
    optimizer.
    """

    checks = {"lr": COMMON_CHECKS["lr"], "weight_decay": COMMON_CHECKS["weight_decay"],
              "momentum": checks.non_negative, "nesterov": checks.flag, "ns_coefficients": checks.real_tuple(3),
              "eps": checks.non_negative, "ns_steps": checks.integer(0, 100),
              "adjust_lr_fn": checks.one_of(None, "original", "match_rms_adamw"),
              "ns_dtype": checks.one_of(None, torch.bfloat16, torch.float16, torch.float32, torch.float64)}

    def __init__(self, params: Params, lr: float | Tensor = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None, *,
                 ns_dtype: torch.dtype | None = None) -> None:
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
                        ns_dtype=ns_dtype)
        super().__init__(params, defaults)

    def check_param(self, param: Tensor, name: str) -> None:
        if param.dim() < 2:
            raise ValueError(
                f"{self.owner}: parameter {name} has shape {tuple(param.shape)}; Muon orthogonalizes matrices "
                "(2 or more dimensions, seen as (shape[0], -1)): optimize biases, norms and other vectors or "
                "scalars with optimlab.AdamW, in a second optimizer"
            )

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        # As torch.optim.Muon, complex parameters fail at the step (a RuntimeError): seen as pairs of
        # reals they would be orthogonalized as a different matrix, so they are refused outright.
        for index, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.is_complex():
                    raise RuntimeError(f"{self.owner}: Muon does not support complex parameters "
                                       f"(parameter {param_name(group, index, i)} is {p.dtype})")
        return super().step(closure)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["nesterov"], group["adjust_lr_fn"]

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return chain(EMAMomentum(nesterov=group["nesterov"]), Orthogonalize(),
                     ScaleByAdjustedLearningRate(group["adjust_lr_fn"]), DecoupledWeightDecay())
