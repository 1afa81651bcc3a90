"""The :class:`Schedule` base: a hyperparameter value as a pure function of the step.

A schedule is an immutable, picklable object ``s`` with ``s(step) -> float``. ``step`` counts
from 0 (the value for an optimizer's first step). Every schedule here is a closed form of the
step, so any value can be asked for at any time, in any order, without an optimizer; the one
exception, :class:`~optimlab.schedules.plateau.ReduceOnPlateau`, is marked ``stateful``.

This module also holds the argument checks every schedule constructor uses: each error names
the schedule, the argument, the value it got and what it expected.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

Bounds = tuple[float, float]


# -- argument checks ---------------------------------------------------------------------------
def real(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float, checked against the interval given (open or closed ends)."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool:
        value = value.item()  # a one-element tensor is read once, when the schedule is built
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{owner}: {name} must be a finite number, got {number!r}")
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        raise ValueError(f"{owner}: {name} must be {interval(low, high, low_open, high_open)}, got {value!r}")
    return number


def interval(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "a number"


def integer(owner: str, name: str, value: Any, *, low: int = 0) -> int:
    """``value`` as an int >= ``low`` (a float such as 100.0 is refused: steps are counted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def choice(owner: str, name: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def check_step(owner: Any, step: Any) -> int | float:
    """A step: a non-negative integer (or real, for fractional epochs)."""
    if isinstance(step, bool) or not isinstance(step, numbers.Real):
        raise TypeError(f"{owner!r}: step must be a non-negative number, got {type(step).__name__} {step!r}")
    if not step >= 0 or not math.isfinite(step):
        raise ValueError(f"{owner!r}: step must be a non-negative number, got {step!r}")
    return int(step) if isinstance(step, numbers.Integral) else float(step)


# -- schedules ---------------------------------------------------------------------------------
class Schedule:
    """A hyperparameter as a function of the step: ``s(step) -> float``, ``step = 0, 1, 2, ...``.

    Subclasses are frozen dataclasses whose fields are the schedule's arguments; they implement
    :meth:`at` (the closed form, for a step already checked) and, where they can, :meth:`bounds`
    and :meth:`duration`. ``s * t`` and ``s * 2.0`` build a :class:`Product`.
    """

    #: The public function that builds this schedule; ``repr`` reads like a call to it.
    name: ClassVar[str] = "schedule"
    #: True only for schedules that change with something other than the step (fed a metric).
    stateful: ClassVar[bool] = False

    def __call__(self, step: int | float) -> float:
        """The value at ``step`` (0 for the first optimizer step)."""
        return self.at(check_step(self, step))

    def at(self, step: int | float) -> float:
        raise NotImplementedError

    def bounds(self, window: int | None = None) -> Bounds | None:
        """An interval ``(low, high)`` that holds every value at steps ``0 .. window - 1``
        (every step if ``window`` is None), or None if the schedule cannot tell.

        Exact (the infimum and supremum) for the monotone schedules; an enclosing interval for
        the others. Optimizer checks use it to refuse a schedule that would leave a
        hyperparameter's range before training starts.
        """
        return None

    def duration(self) -> int | None:
        """Steps until the value stops changing (None: it never does, or it is not known).

        :func:`~optimlab.schedules.sequence` starts the next piece there.
        """
        return None

    def span(self) -> int:
        """A number of steps that shows the whole shape (the default length of a plot)."""
        return self.duration() or 1000

    def children(self) -> tuple[Schedule, ...]:
        """The schedules this one is built from (for composites)."""
        return ()

    def __mul__(self, other: Any) -> Schedule:
        if isinstance(other, Schedule) or (isinstance(other, numbers.Real) and not isinstance(other, bool)):
            return Product((self, other))
        return NotImplemented

    def __rmul__(self, other: Any) -> Schedule:
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            return Product((other, self))
        return NotImplemented

    def __repr__(self) -> str:
        if not dataclasses.is_dataclass(self):
            return f"{type(self).__name__}()"
        args = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.repr and (f.default is dataclasses.MISSING or value != f.default):
                args.append(f"{f.name}={value!r}")
        return f"{self.name}({', '.join(args)})"


def walk(schedule: Schedule) -> Iterator[Schedule]:
    """``schedule`` and every schedule it is built from, depth first."""
    yield schedule
    for child in schedule.children():
        yield from walk(child)


def stateful_parts(schedules: Any) -> list[Schedule]:
    """The distinct stateful schedules inside ``schedules`` (an iterable), in a fixed order."""
    found: dict[int, Schedule] = {}
    for schedule in schedules:
        for part in walk(schedule):
            if part.stateful:
                found.setdefault(id(part), part)
    return list(found.values())


class Monotone(Schedule):
    """A schedule that only ever moves one way: its extremes are the first value and the last
    one (or the limit as the step grows without end)."""

    def limit(self) -> float:
        """The value as the step grows without end (reached or approached)."""
        raise NotImplementedError

    def bounds(self, window: int | None = None) -> Bounds:
        first = self.at(0)
        last = self.limit() if window is None else self.at(max(window, 1) - 1)
        return (min(first, last), max(first, last))


@dataclasses.dataclass(frozen=True, repr=False)
class Constant(Monotone):
    """``value`` at every step."""

    value: float
    name: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", real("constant", "value", self.value))

    def at(self, step: int | float) -> float:
        return self.value

    def limit(self) -> float:
        return self.value

    def duration(self) -> int:
        return 0


@dataclasses.dataclass(frozen=True, repr=False)
class Product(Schedule):
    """The product of schedules (and numbers) at each step: ``warmup * plateau``, ``0.5 * cosine``."""

    factors: tuple[Schedule, ...]
    name: ClassVar[str] = "product"

    def __post_init__(self) -> None:
        factors: list[Schedule] = []
        for f in self.factors:
            part = f if isinstance(f, Schedule) else Constant(real("product", "factor", f))
            factors.extend(part.factors if isinstance(part, Product) else [part])
        object.__setattr__(self, "factors", tuple(factors))

    def at(self, step: int | float) -> float:
        value = 1.0
        for f in self.factors:
            value *= f.at(step)
        return value

    def bounds(self, window: int | None = None) -> Bounds | None:
        result: Bounds = (1.0, 1.0)
        for f in self.factors:
            b = f.bounds(window)
            if b is None:
                return None
            # interval product: the extremes are among the products of the ends; 0 * inf is
            # taken as 0 (the zero end is a value the factor reaches)
            ends = [0.0 if x * y != x * y else x * y for x in result for y in b]
            result = (min(ends), max(ends))
        return result

    def duration(self) -> int | None:
        durations = [f.duration() for f in self.factors]
        return None if None in durations else max(durations)  # type: ignore[type-var]

    def span(self) -> int:
        return max(f.span() for f in self.factors)

    def children(self) -> tuple[Schedule, ...]:
        return self.factors

    def __repr__(self) -> str:
        return " * ".join(repr(f.value) if isinstance(f, Constant) else repr(f) for f in self.factors)
