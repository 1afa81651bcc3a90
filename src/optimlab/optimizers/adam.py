"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, adaptive
from optimlab.transforms import ScaleByAdam


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015), optional AMSGrad and decoupled weight decay.

    Same arguments and defaults as :class:`torch.optim.Adam`. ``weight_decay`` is L2 (added to
    the gradient) unless ``decoupled_weight_decay=True``, which makes this :class:`AdamW`.
    """

    checks = {**COMMON_CHECKS, "betas": checks.pair_of_unit_interval, "eps": checks.non_negative,
              "amsgrad": checks.flag, "decoupled_weight_decay": checks.flag}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-3,
                 betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False) -> None:
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def check_group(self, group: Mapping[str, Any]) -> None:
        super().check_group(group)
        betas = group.get("betas")
        if isinstance(betas, (tuple, list)) and len(betas) == 2:
            if isinstance(betas[0], Tensor) != isinstance(betas[1], Tensor):
                raise ValueError(f"{self.owner}: betas must be either both numbers or both tensors, got {betas!r}")
        # torch.optim.Adam's foreach loop reads tensor hyperparameters as numbers only when capturable.
        if group.get("foreach") and not group.get("capturable"):
            for name, value in (("lr", group.get("lr")), ("betas[0]", betas[0] if betas else None)):
                if isinstance(value, Tensor):
                    raise ValueError(f"{self.owner}: {name} as a Tensor is not supported for capturable=False and "
                                     "foreach=True (torch.optim.Adam's rule, kept for drop-in behaviour)")

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["amsgrad"], group["decoupled_weight_decay"]

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return adaptive(group, ScaleByAdam(amsgrad=group["amsgrad"]), group["decoupled_weight_decay"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): ``p <- p - lr * wd * p``
    beside the Adam step instead of L2 inside the gradient.

    Same arguments and defaults as :class:`torch.optim.AdamW` (``weight_decay=0.01``).
    """

    def __init__(self, params: Params, lr: float | Tensor = 1e-3,
                 betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # As torch.optim.AdamW: state loaded into AdamW (an Adam checkpoint too) keeps decoupled decay.
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
