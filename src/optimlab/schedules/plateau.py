"""Reduce on plateau: the one stateful schedule, driven by a metric rather than by the step.

"Lower the learning rate when the loss stops improving": fed one metric value per evaluation
(:meth:`ReduceOnPlateau.step`), it multiplies its value by ``factor`` after more than
``patience`` evaluations without improvement. Its value depends on the metrics seen, so it
keeps state (:meth:`~ReduceOnPlateau.state_dict`), and ``s(step)`` returns the current value
whatever the step. Same rules as torch's ``ReduceLROnPlateau``, applied to one value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from optimlab.schedules.base import Bounds, Schedule, choice, integer, real


@dataclasses.dataclass
class PlateauState:
    """What a :class:`ReduceOnPlateau` has learned from the metrics so far."""

    value: float
    best: float
    num_bad_epochs: int = 0
    cooldown_counter: int = 0
    #: Metrics seen.
    count: int = 0


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class ReduceOnPlateau(Schedule):
    """``value``, multiplied by ``factor`` whenever the metric has not improved for more than
    ``patience`` evaluations in a row.

    * improvement (``mode="min"``): ``metric < best * (1 - threshold)`` (``threshold_mode="rel"``)
      or ``metric < best - threshold`` (``"abs"``); ``mode="max"`` mirrors it;
    * after a reduction, ``cooldown`` evaluations are ignored before counting again;
    * the value never goes below ``min_value``, and a reduction smaller than ``eps`` is skipped.

    torch twin: ``ReduceLROnPlateau(mode, factor, patience, threshold, threshold_mode, cooldown,
    min_lr=min_value, eps)`` for a group whose lr is ``value``.
    """

    value: float
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_value: float = 0.0
    eps: float = 1e-8
    state: PlateauState = dataclasses.field(init=False, repr=False, compare=False)
    name: ClassVar[str] = "reduce_on_plateau"
    stateful: ClassVar[bool] = True

    def __post_init__(self) -> None:
        name = self.name
        object.__setattr__(self, "value", real(name, "value", self.value))
        choice(name, "mode", self.mode, ("min", "max"))
        object.__setattr__(self, "factor", real(name, "factor", self.factor, low=0.0, high=1.0, high_open=True))
        object.__setattr__(self, "patience", integer(name, "patience", self.patience, low=0))
        object.__setattr__(self, "threshold", real(name, "threshold", self.threshold, low=0.0))
        choice(name, "threshold_mode", self.threshold_mode, ("rel", "abs"))
        object.__setattr__(self, "cooldown", integer(name, "cooldown", self.cooldown, low=0))
        object.__setattr__(self, "min_value", real(name, "min_value", self.min_value))
        object.__setattr__(self, "eps", real(name, "eps", self.eps, low=0.0))
        self.reset()

    def reset(self) -> None:
        """Forget every metric seen: back to ``value``."""
        worst = math.inf if self.mode == "min" else -math.inf
        object.__setattr__(self, "state", PlateauState(value=self.value, best=worst))

    def improves(self, metric: float, best: float) -> bool:
        if self.mode == "min":
            return metric < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return metric > (best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metric: Any) -> float:
        """Feed one evaluation of the metric; returns the value to use from now on."""
        current = float(metric)
        s = self.state
        s.count += 1
        if self.improves(current, s.best):
            s.best, s.num_bad_epochs = current, 0
        else:
            s.num_bad_epochs += 1
        if s.cooldown_counter > 0:
            s.cooldown_counter -= 1
            s.num_bad_epochs = 0  # evaluations during the cool-down do not count
        if s.num_bad_epochs > self.patience:
            reduced = max(s.value * self.factor, self.min_value)
            if s.value - reduced > self.eps:
                s.value = reduced
            s.cooldown_counter, s.num_bad_epochs = self.cooldown, 0
        return s.value

    def at(self, step: int | float) -> float:
        return self.state.value

    def bounds(self, window: int | None = None) -> Bounds:
        return (min(self.value, self.min_value), self.value)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.state)

    def load_state_dict(self, state_dict: Any) -> None:
        fields = {f.name for f in dataclasses.fields(PlateauState)}
        if not isinstance(state_dict, dict) or set(state_dict) != fields:
            raise ValueError(f"{self.name}.load_state_dict: expected a dict with keys {sorted(fields)} "
                             f"(from state_dict()), got {state_dict!r}")
        object.__setattr__(self, "state", PlateauState(**state_dict))


def reduce_on_plateau(value: float, mode: str = "min", factor: float = 0.1, patience: int = 10,
                      threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                      min_value: float = 0.0, eps: float = 1e-8) -> ReduceOnPlateau:
    return ReduceOnPlateau(value, mode, factor, patience, threshold, threshold_mode, cooldown, min_value, eps)


reduce_on_plateau.__doc__ = ReduceOnPlateau.__doc__
