"""The classic optimizers as named recipes: torch.optim's signatures and defaults, optimlab's math.

Each class only says which transforms a parameter group chains together; the math lives in
:mod:`optimlab.transforms` and the loop in :mod:`optimlab.engine`. Batch, stochastic and
mini-batch gradient descent are all :class:`SGD`: they differ in the batches fed to it.

``foreach`` and ``fused`` are accepted (and stored, so checkpoints match torch's) but do not
choose the code path: optimlab's engine chooses. ``capturable`` is accepted likewise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from optimlab import checks
from optimlab.core import Transform, chain
from optimlab.optimizer import Optimizer
from optimlab.transforms import (
    AddDecayedWeights,
    DecoupledWeightDecay,
    Momentum,
    Negate,
    ScaleByAdagrad,
    ScaleByAdam,
    ScaleByLearningRate,
    ScaleByRMS,
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
    "differentiable": checks.unsupported_true,
}


def with_sign(group: Mapping[str, Any], *transforms: Transform) -> Transform:
    """``transforms``, preceded by a sign flip when the group maximizes."""
    return chain(Negate(), *transforms) if group["maximize"] else chain(*transforms)


class SGD(Optimizer):
    """Gradient descent with optional (heavy-ball, EMA-form or Nesterov) momentum.

    ``p <- p - lr * d`` where ``d`` is the gradient (plus ``weight_decay * p``), or the momentum
    buffer ``b = momentum * b + (1 - dampening) * d`` (``b = d`` on the first step), or with
    ``nesterov=True`` the look-ahead ``d + momentum * b``. Same arguments and defaults as
    :class:`torch.optim.SGD`. See :mod:`optimlab.transforms.momentum` for the forms of momentum.
    """

    checks = {**COMMON_CHECKS, "momentum": checks.non_negative, "dampening": checks.closed_unit_interval,
              "nesterov": checks.flag}

    def __init__(self, params: Params, lr: float | Tensor = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float | Tensor = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        super().__init__(params, defaults)

    def check_group(self, group: Mapping[str, Any]) -> None:
        super().check_group(group)
        if group.get("nesterov") and (group.get("momentum", 0) <= 0 or group.get("dampening", 0) != 0):
            raise ValueError(f"{self.owner}: nesterov=True requires momentum > 0 and dampening = 0, got "
                             f"momentum={group.get('momentum')!r}, dampening={group.get('dampening')!r}")

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["nesterov"], group["momentum"] != 0

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        momentum = [Momentum(nesterov=group["nesterov"])] if group["momentum"] != 0 else []
        return with_sign(group, AddDecayedWeights(), *momentum, ScaleByLearningRate())


class Adagrad(Optimizer):
    """Adagrad: per-coordinate steps ``lr * g / (sqrt(sum of g^2) + eps)`` (Duchi et al., 2011).

    Same arguments and defaults as :class:`torch.optim.Adagrad` (dense gradients only).
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

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["initial_accumulator_value"]

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        return with_sign(group, AddDecayedWeights(), ScaleByAdagrad(group["initial_accumulator_value"]),
                         ScaleByLearningRate())


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, 2012), optionally centered (Graves, 2013) and with momentum.

    Same arguments and defaults as :class:`torch.optim.RMSprop`.
    """

    checks = {**COMMON_CHECKS, "alpha": checks.unit_interval, "eps": checks.non_negative,
              "momentum": checks.non_negative, "centered": checks.flag}
    counts_steps = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["centered"], group["momentum"] > 0

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        momentum = [Momentum()] if group["momentum"] > 0 else []
        return with_sign(group, AddDecayedWeights(), ScaleByRMS(centered=group["centered"]), *momentum,
                         ScaleByLearningRate())


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

    def structure(self, group: Mapping[str, Any]) -> tuple:
        return group["maximize"], group["amsgrad"], group["decoupled_weight_decay"]

    def build_transform(self, group: Mapping[str, Any]) -> Transform:
        adam = ScaleByAdam(amsgrad=group["amsgrad"])
        if group["decoupled_weight_decay"]:
            return with_sign(group, adam, ScaleByLearningRate(), DecoupledWeightDecay())
        return with_sign(group, AddDecayedWeights(), adam, ScaleByLearningRate())


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
