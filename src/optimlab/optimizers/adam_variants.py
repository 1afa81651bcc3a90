"""NAdam (Dozat, 2016), RAdam (Liu et al., 2020) and Adamax (Kingma & Ba, 2015)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params, adaptive
from optimlab.transforms import ScaleByAdamax, ScaleByNAdam, ScaleByRAdam

ADAM_CHECKS = {**COMMON_CHECKS, "betas": checks.pair_of_unit_interval, "eps": checks.non_negative}


def pair(betas: Any) -> Any:
    """``betas`` as a tuple if given as a list, so groups hold immutable values (as Adam's do)."""
    return tuple(betas) if isinstance(betas, list) else betas


class NAdam(Optimizer):
    """Adam with Nesterov momentum and a warming momentum schedule (Dozat, 2016).

    Same arguments and defaults as :class:`torch.optim.NAdam`. ``weight_decay`` is L2 unless
    ``decoupled_weight_decay=True`` (NAdamW). State: ``step``, ``mu_product`` (0-d, torch's
    float32), ``exp_avg``, ``exp_avg_sq``.
    """

    checks = {**ADAM_CHECKS, "momentum_decay": checks.non_negative, "decoupled_weight_decay": checks.flag}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 2e-3,
                 betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        defaults = dict(lr=lr, betas=pair(betas), eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["decoupled_weight_decay"]

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return adaptive(group, ScaleByNAdam(), group["decoupled_weight_decay"])


class RAdam(Optimizer):
    """Rectified Adam (Liu et al., 2020): momentum SGD until the adaptive step's variance is
    tractable, then Adam scaled by the variance rectification term.

    Same arguments and defaults as :class:`torch.optim.RAdam`. ``weight_decay`` is L2 unless
    ``decoupled_weight_decay=True``.
    """

    checks = {**ADAM_CHECKS, "decoupled_weight_decay": checks.flag}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-3,
                 betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False) -> None:
        defaults = dict(lr=lr, betas=pair(betas), eps=eps, weight_decay=weight_decay, maximize=maximize,
                        foreach=foreach, capturable=capturable, decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["decoupled_weight_decay"]

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return adaptive(group, ScaleByRAdam(), group["decoupled_weight_decay"])


class Adamax(Optimizer):
    """Adamax (Kingma & Ba, 2015, Sec. 7.1): Adam with an exponentially weighted infinity norm
    in place of the root mean square.

    Same arguments and defaults as :class:`torch.optim.Adamax` (``weight_decay`` is L2).
    """

    checks = ADAM_CHECKS
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 2e-3,
                 betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, capturable: bool = False) -> None:
        defaults = dict(lr=lr, betas=pair(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return (group["maximize"],)

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return adaptive(group, ScaleByAdamax())
