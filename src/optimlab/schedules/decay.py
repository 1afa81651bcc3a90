"""Decay by a factor: ``value * gamma ** (number of decays so far)``, and the constant.

The closed forms of torch's StepLR, MultiStepLR and ExponentialLR (which torch computes
recursively, each lr from the previous one). Like every schedule here they give the value
itself, not a factor of the group's base value: ``step_decay(0.1, 30)`` is 0.1 at step 0.
References: e.g. Goodfellow, Bengio & Courville, *Deep Learning* (2016), 8.3.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from typing import ClassVar

from optimlab.schedules.base import Constant, Monotone, integer, real


def constant(value: float) -> Constant:
    """``value`` at every step."""
    return Constant(value)


class Decay(Monotone):
    """``value * gamma ** count(step)``: subclasses say how many decays have happened."""

    value: float
    gamma: float

    def count(self, step: int | float) -> int | float:
        raise NotImplementedError

    #: The most decays there will ever be (None: no end).
    def max_count(self) -> int | None:
        return None

    def at(self, step: int | float) -> float:
        return self.value * self.gamma ** self.count(step)

    def limit(self) -> float:
        most = self.max_count()
        if most is not None:
            return self.value * self.gamma ** most
        if self.gamma == 1 or self.value == 0:
            return self.value
        return 0.0 if self.gamma < 1 else math.copysign(math.inf, self.value)

    def _check(self) -> None:
        object.__setattr__(self, "value", real(self.name, "value", self.value))
        object.__setattr__(self, "gamma", real(self.name, "gamma", self.gamma, low=0.0))


@dataclasses.dataclass(frozen=True, repr=False)
class StepDecay(Decay):
    """``value * gamma ** (step // step_size)``: multiply by ``gamma`` every ``step_size`` steps.

    torch twin: ``StepLR(step_size, gamma)`` with ``value`` = the group's lr.
    """

    value: float
    step_size: int
    gamma: float = 0.1
    name: ClassVar[str] = "step_decay"

    def __post_init__(self) -> None:
        self._check()
        object.__setattr__(self, "step_size", integer(self.name, "step_size", self.step_size, low=1))

    def count(self, step: int | float) -> int | float:
        return step // self.step_size


@dataclasses.dataclass(frozen=True, repr=False)
class MultiStep(Decay):
    """``value * gamma ** (number of milestones <= step)``.

    torch twin: ``MultiStepLR(milestones, gamma)``. Milestones must be strictly increasing.
    """

    value: float
    milestones: tuple[int, ...]
    gamma: float = 0.1
    name: ClassVar[str] = "multistep"

    def __post_init__(self) -> None:
        self._check()
        try:
            milestones = tuple(self.milestones)
        except TypeError:
            raise TypeError(f"multistep: milestones must be a sequence of integers, got {self.milestones!r}") from None
        if not milestones:
            raise ValueError("multistep: milestones must not be empty (use constant() for no decay)")
        for i, m in enumerate(milestones):
            integer(self.name, f"milestones[{i}]", m, low=0)
            if i and m <= milestones[i - 1]:
                raise ValueError(f"multistep: milestones must be strictly increasing, got {list(milestones)}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in milestones))

    def count(self, step: int | float) -> int:
        return bisect_right(self.milestones, step)

    def max_count(self) -> int:
        return len(self.milestones)

    def duration(self) -> int:
        return self.milestones[-1]

    def span(self) -> int:
        return self.milestones[-1] + max(self.milestones[0], self.milestones[-1] // 4)


@dataclasses.dataclass(frozen=True, repr=False)
class Exponential(Decay):
    """``value * gamma ** step``. torch twin: ``ExponentialLR(gamma)``."""

    value: float
    gamma: float
    name: ClassVar[str] = "exponential"

    def __post_init__(self) -> None:
        self._check()

    def count(self, step: int | float) -> int | float:
        return step

    def span(self) -> int:
        # long enough to fall (or grow) by a factor e^3
        return 1000 if self.gamma in (0.0, 1.0) else max(10, min(100_000, round(3 / abs(math.log(self.gamma)))))


def step_decay(value: float, step_size: int, gamma: float = 0.1) -> StepDecay:
    return StepDecay(value, step_size, gamma)


def multistep(value: float, milestones: tuple[int, ...] | list[int], gamma: float = 0.1) -> MultiStep:
    return MultiStep(value, milestones, gamma)  # type: ignore[arg-type]


def exponential(value: float, gamma: float) -> Exponential:
    return Exponential(value, gamma)


step_decay.__doc__, multistep.__doc__, exponential.__doc__ = StepDecay.__doc__, MultiStep.__doc__, Exponential.__doc__
