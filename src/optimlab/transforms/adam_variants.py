"""Three variants of Adam that change how the step is made from the running averages.

* NAdam (Dozat, 2016) replaces Adam's momentum by Nesterov's: the step looks one momentum
  update ahead, mixing the bias-corrected average with the current gradient.
* RAdam (Liu et al., 2020) switches the adaptive denominator on only once the variance of
  its estimate is finite (``rho_t > 5``), and scales it by that variance's rectification term;
  before, it steps with the bias-corrected momentum alone. That replaces a learning-rate
  warm-up.
* Adamax (Kingma & Ba, 2015, Sec. 7.1) divides by an exponentially weighted infinity norm of
  past gradients instead of the root of their second moment, which needs no bias correction.

NAdam and RAdam keep Adam's two averages (:func:`~optimlab.transforms.adaptive.update_moments`).
Every formula follows torch.optim's single-tensor implementation, so ``optimlab.X`` and
``torch.optim.X`` agree to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.core import HyperParams, State, Transform, scalar_dtype, select
from optimlab.transforms.adaptive import maximum_, update_moments, zeros_like_param


class ScaleByNAdam(Transform):
    """NAdam (Dozat, 2016, "Incorporating Nesterov Momentum into Adam", Algorithm 2) with the
    momentum schedule of torch.optim.NAdam::

        mu_t   = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))
        m_t    = beta1 * m_{t-1} + (1 - beta1) * u_t
        v_t    = beta2 * v_{t-1} + (1 - beta2) * u_t^2
        m^_t   = mu_{t+1} * m_t / (1 - prod_{i<=t+1} mu_i) + (1 - mu_t) * u_t / (1 - prod_{i<=t} mu_i)
        out    = m^_t / (sqrt(v_t / (1 - beta2^t)) + eps)

    The product of the ``mu_i`` is kept as 0-d state ``mu_product``, in torch's 0-d dtype
    (:func:`~optimlab.core.scalar_dtype`, float32 by default whatever the parameter's dtype):
    it is what torch checkpoints hold, and its float32 rounding is part of torch's numbers. Like
    torch, which reads it as a Python float, the weights of ``m_t`` and ``u_t`` are computed from
    its value in double precision and rounded once to the parameter's dtype.

    ``eps`` is added to the bias-corrected root, as in Adam; unlike Adam's, the bias correction
    divides ``v_t`` before the root, as torch does.
    """

    hyperparams = ("betas", "eps", "momentum_decay")

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return {"mu_product": torch.ones((), dtype=scalar_dtype(), device=param.device),
                **zeros_like_param(param, "exp_avg", "exp_avg_sq")}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        beta1, beta2 = hp["betas"]
        momentum_decay = hp["momentum_decay"]
        # The momentum schedule: mu_t rises from beta1 / 2 towards beta1 (Dozat's "warming" of momentum).
        mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        mu_product = state["mu_product"].mul_(mu).double()  # prod_{i<=t} mu_i
        exp_avg, exp_avg_sq = update_moments(u, state, beta1, beta2)
        grad_weight = ((1 - mu) / (1 - mu_product)).to(u.dtype)
        momentum_weight = (mu_next / (1 - mu_product * mu_next)).to(u.dtype)
        denom = (exp_avg_sq / (1 - beta2**step)).sqrt() + hp["eps"]
        return (grad_weight * u + momentum_weight * exp_avg) / denom


class ScaleByRAdam(Transform):
    """RAdam (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and Beyond",
    Algorithm 2)::

        m_t     = beta1 * m_{t-1} + (1 - beta1) * u_t
        v_t     = beta2 * v_{t-1} + (1 - beta2) * u_t^2
        m^_t    = m_t / (1 - beta1^t)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)
        r_t     = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        out     = m^_t * r_t * sqrt(1 - beta2^t) / (sqrt(v_t) + eps)     if rho_t > 5
        out     = m^_t                                                   otherwise

    ``rho_t`` is the length of the simple moving average that the exponential one approximates;
    with fewer than ~5 effective samples the variance of ``1 / sqrt(v_t)`` is unbounded, so the
    first steps (the first 5 for beta2 = 0.999) are momentum SGD. ``eps`` is added to ``sqrt(v_t)``
    before the bias correction, as torch does.
    """

    hyperparams = ("betas", "eps")

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return zeros_like_param(param, "exp_avg", "exp_avg_sq")

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        beta1, beta2 = hp["betas"]
        exp_avg, exp_avg_sq = update_moments(u, state, beta1, beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        bias_corrected_exp_avg = exp_avg / bias_correction1
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2**step / bias_correction2
        rectified = rho_t > 5
        # select() evaluates both branches. Where rho_t <= 5 the rectifier's formula may take the
        # root of a negative number or divide by zero (rho_inf = 4 for beta2 = 0.6), so it is
        # evaluated at rho_t = rho_inf = 5 there: a finite value that is never used.
        rho_t, rho_inf = select(rectified, rho_t, 5.0), select(rectified, rho_inf, 5.0)
        rectifier = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        adaptive = bias_correction2**0.5 / (exp_avg_sq.sqrt() + hp["eps"])
        return select(rectified, bias_corrected_exp_avg * adaptive * rectifier, bias_corrected_exp_avg)


class ScaleByAdamax(Transform):
    """Adamax (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", Algorithm 2)::

        m_t = beta1 * m_{t-1} + (1 - beta1) * u_t
        n_t = max(beta2 * n_{t-1}, |u_t| + eps)
        out = m_t / n_t / (1 - beta1^t)

    ``n_t`` (state ``exp_inf``) is the limit p -> infinity of Adam's p-norm average, a running
    maximum that forgets with ``beta2``; it starts at 0 and is already unbiased. ``eps`` enters
    inside the maximum, as in torch.optim.Adamax (the paper has ``max(beta2 n, |g|)``): it bounds
    ``n_t`` away from 0, so a coordinate that has only seen zero gradients divides 0 by ``eps``.
    """

    hyperparams = ("betas", "eps")

    def init(self, param: Tensor) -> dict[str, Tensor]:
        return zeros_like_param(param, "exp_avg", "exp_inf")

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        beta1, beta2 = hp["betas"]
        exp_avg = state["exp_avg"].lerp_(u, 1 - beta1)
        exp_inf = maximum_(state["exp_inf"].mul_(beta2), u.abs() + hp["eps"])
        return exp_avg / exp_inf / (1 - beta1**step)
