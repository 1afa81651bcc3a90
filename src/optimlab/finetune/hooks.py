"""Gradient clipping and early stopping: small objects usable in any loop, and as hooks of the lab's.

Each works on its own (``clip(model)`` after ``backward()``; ``stopper.update(value)`` after an
evaluation), and has the method the lab's training loop (:func:`optimlab.lab.training.loop.train`, its
``hooks=``) calls: ``before_step(loop)`` between backward and the optimizer step,
``after_evaluation(loop, evaluation)`` after each evaluation (True stops the run).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class GradientClipping:
    """Rescale the gradients so that their global norm is at most ``max_norm``:
    ``g <- g * min(1, max_norm / ||g||)`` with ``||g||`` the ``norm_type``-norm over all
    gradients together (Pascanu et al. 2013), via ``torch.nn.utils.clip_grad_norm_``.

    Call it after ``backward()`` and before ``optimizer.step()``. ``last_norm`` is the norm
    before clipping (a diagnostic: a norm that keeps hitting the cap means the learning rate or
    the cap is off), ``clipped`` counts the steps that were rescaled.
    """

    def __init__(self, max_norm: float, norm_type: float = 2.0) -> None:
        for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"GradientClipping: {name} must be a number > 0, got {value!r}")
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)
        self.last_norm = math.nan
        self.clipped = 0

    def __call__(self, model: nn.Module) -> float:
        """Clip the gradients of ``model``'s parameters in place; return their norm before."""
        grads = [p for p in model.parameters() if p.grad is not None]
        if not grads:
            return 0.0
        norm = float(torch.nn.utils.clip_grad_norm_(grads, self.max_norm, self.norm_type))
        self.last_norm = norm
        if norm > self.max_norm:
            self.clipped += 1
        return norm

    def before_step(self, loop: Any) -> None:
        self(loop.model)

    def state_dict(self) -> dict[str, Any]:
        return {"clipped": self.clipped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.clipped = int(state["clipped"])


class EarlyStopping:
    """Stop when ``metric`` has not improved by more than ``min_delta`` for ``patience``
    evaluations in a row (Prechelt 1998's criterion, counted in evaluations).

    ``update(value)`` -> True when it is time to stop; ``best`` / ``best_step`` say where the
    best value was. An improvement is ``value > best + min_delta`` (``<`` and ``-`` when lower is
    better); nan never improves.
    """

    def __init__(self, metric: str, patience: int, *, higher_is_better: bool = True, min_delta: float = 0.0) -> None:
        if not isinstance(metric, str) or not metric:
            raise TypeError(f"EarlyStopping: metric must be a metric name, got {metric!r}")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 1:
            raise ValueError(f"EarlyStopping: patience must be an int >= 1 (evaluations), got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or not 0 <= min_delta < math.inf:
            raise ValueError(f"EarlyStopping: min_delta must be a finite number >= 0, got {min_delta!r}")
        self.metric = metric
        self.patience = int(patience)
        self.higher_is_better = bool(higher_is_better)
        self.min_delta = float(min_delta)
        self.best = -math.inf if higher_is_better else math.inf
        self.best_step: int | None = None
        self.bad = 0  # evaluations in a row without improvement

    def improved(self, value: float) -> bool:
        if self.higher_is_better:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float, step: int | None = None) -> bool:
        """Record one evaluation's ``value``; True when ``patience`` evaluations in a row did
        not improve on the best."""
        value = float(value)
        if self.improved(value):
            self.best, self.best_step, self.bad = value, step, 0
        else:
            self.bad += 1
        return self.bad >= self.patience

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience

    def after_evaluation(self, loop: Any, evaluation: Any) -> bool:
        if self.metric not in evaluation.metrics:
            raise KeyError(f"EarlyStopping: the evaluation has no metric {self.metric!r}; "
                           f"it has {sorted(evaluation.metrics)}")
        return self.update(evaluation.metrics[self.metric], evaluation.step)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_step, self.bad = float(state["best"]), state["best_step"], int(state["bad"])
