"""Ramps: from a start value to an end value over a number of steps, then the end value for ever.

Linear and cosine annealing (Loshchilov & Hutter 2017, SGDR, arXiv:1608.03983 without
restarts), linear warm-up (Goyal et al. 2017, arXiv:1706.02677), exponential warm-up,
polynomial decay, and the inverse square root of Transformer training (Vaswani et al. 2017,
arXiv:1706.03762). One formula home: :func:`interpolate`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from optimlab.schedules.base import Monotone, choice, integer, real

#: Shapes of :func:`interpolate`.
SHAPES = ("linear", "cos", "sqrt", "exp")


def interpolate(start: float, end: float, done: float, total: float, shape: str) -> float:
    """The value ``x = done / total`` (in [0, 1]) of the way from ``start`` to ``end``.

    * ``linear``: ``start + (end - start) x``
    * ``cos``:    ``end + (start - end) (1 + cos(pi x)) / 2`` (half a cosine wave, SGDR)
    * ``sqrt``:   ``start + (end - start) sqrt(x)`` (the "1 - sqrt" cool-down of WSD)
    * ``exp``:    ``start (end / start)^x`` (geometric: equal ratios per step; start, end > 0)

    The linear and cosine forms are written as torch.optim.lr_scheduler writes them (the angle
    as ``pi * done / total``), so the same arguments give the same rounding.
    """
    if shape == "linear":
        return start + (end - start) * (done / total)
    if shape == "cos":
        return end + (start - end) * (1 + math.cos(math.pi * done / total)) / 2
    if shape == "sqrt":
        return start + (end - start) * math.sqrt(done / total)
    if shape == "exp":
        return start * (end / start) ** (done / total)
    raise ValueError(f"interpolate: shape must be one of {', '.join(map(repr, SHAPES))}, got {shape!r}")


@dataclasses.dataclass(frozen=True, repr=False)
class Ramp(Monotone):
    """From ``start`` to ``end`` in ``steps`` steps along ``shape`` (see :func:`interpolate`), then
    ``end`` for ever: ``interpolate(start, end, min(step, steps), steps, shape)``.

    Built by :func:`linear`, :func:`cosine`, :func:`linear_warmup`, :func:`exponential_warmup`
    and :func:`ramp`.
    """

    start: float
    end: float
    steps: int
    shape: str = "linear"
    name: ClassVar[str] = "ramp"

    def __post_init__(self) -> None:
        choice("ramp", "shape", self.shape, SHAPES)
        positive = self.shape == "exp"  # a geometric ramp has no zero or sign change
        for field in ("start", "end"):
            value = real(self.label, field, getattr(self, field), low=0.0 if positive else None, low_open=positive)
            object.__setattr__(self, field, value)
        object.__setattr__(self, "steps", integer(self.label, "steps", self.steps, low=1))

    @property
    def label(self) -> str:
        return {"linear": "linear", "cos": "cosine"}.get(self.shape, "ramp")

    def at(self, step: int | float) -> float:
        if step >= self.steps:
            return self.end  # exactly: start + (end - start) * 1 may round off it
        return interpolate(self.start, self.end, step, self.steps, self.shape)

    def limit(self) -> float:
        return self.end

    def duration(self) -> int:
        return self.steps

    def __repr__(self) -> str:
        if self.shape == "cos":
            floor = f", floor={self.end!r}" if self.end != 0 else ""
            return f"cosine(peak={self.start!r}, steps={self.steps!r}{floor})"
        if self.shape == "linear":
            return f"linear(start={self.start!r}, end={self.end!r}, steps={self.steps!r})"
        return f"ramp(start={self.start!r}, end={self.end!r}, steps={self.steps!r}, shape={self.shape!r})"


def ramp(start: float, end: float, steps: int, shape: str = "linear") -> Ramp:
    return Ramp(start, end, steps, shape)


ramp.__doc__ = Ramp.__doc__


def linear(start: float, end: float, steps: int) -> Ramp:
    """``start`` to ``end`` in a straight line over ``steps`` steps, then ``end``.

    torch twin: ``LinearLR(start_factor, end_factor, total_iters)`` with ``start = lr *
    start_factor``, ``end = lr * end_factor``.
    """
    return Ramp(start, end, steps, "linear")


def cosine(peak: float, steps: int, floor: float = 0.0) -> Ramp:
    """Cosine annealing (SGDR without restarts): ``floor + (peak - floor)(1 + cos(pi t / steps)) / 2``
    for ``t <= steps``, then ``floor``.

    torch twin: ``CosineAnnealingLR(T_max=steps, eta_min=floor)``, whose closed form is this one;
    torch keeps following the cosine *up* again after ``T_max``, this holds the floor.
    """
    return Ramp(real("cosine", "peak", peak), real("cosine", "floor", floor), integer("cosine", "steps", steps, low=1),
                "cos")


def linear_warmup(peak: float, steps: int, start: float = 0.0) -> Ramp:
    """Linear warm-up from ``start`` to ``peak`` over ``steps`` steps, then ``peak`` (Goyal et al. 2017)."""
    name = "linear_warmup"
    return Ramp(real(name, "start", start), real(name, "peak", peak), integer(name, "steps", steps, low=1), "linear")


def exponential_warmup(peak: float, steps: int, start: float) -> Ramp:
    """Exponential (geometric) warm-up: ``start * (peak / start) ** (t / steps)``, then ``peak``.

    Each step multiplies the value by the same factor, so a warm-up over several decades
    (``start = peak / 1000``) spends equal time in each decade. ``start`` must be > 0.
    """
    name = "exponential_warmup"
    return Ramp(real(name, "start", start, low=0.0, low_open=True), real(name, "peak", peak, low=0.0, low_open=True),
                integer(name, "steps", steps, low=1), "exp")


@dataclasses.dataclass(frozen=True, repr=False)
class Polynomial(Monotone):
    """``end + (start - end)(1 - min(t, steps) / steps) ** power``.

    torch twin: ``PolynomialLR(total_iters=steps, power)`` with ``start`` = the group's lr, ``end = 0``.
    """

    start: float
    steps: int
    power: float = 1.0
    end: float = 0.0
    name: ClassVar[str] = "polynomial"

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", real(self.name, "start", self.start))
        object.__setattr__(self, "end", real(self.name, "end", self.end))
        object.__setattr__(self, "power", real(self.name, "power", self.power, low=0.0, low_open=True))
        object.__setattr__(self, "steps", integer(self.name, "steps", self.steps, low=1))

    def at(self, step: int | float) -> float:
        return self.end + (self.start - self.end) * (1.0 - min(self.steps, step) / self.steps) ** self.power

    def limit(self) -> float:
        return self.end

    def duration(self) -> int:
        return self.steps


def polynomial(start: float, steps: int, power: float = 1.0, end: float = 0.0) -> Polynomial:
    return Polynomial(start, steps, power, end)


polynomial.__doc__ = Polynomial.__doc__


@dataclasses.dataclass(frozen=True, repr=False)
class InverseSqrt(Monotone):
    """``peak / sqrt(1 + t / timescale)``: the "rsqrt" decay of Transformer training.

    Joined after a linear warm-up of ``w`` steps with ``timescale = w``, it is Vaswani et al.'s
    ``peak * sqrt(w / t)`` after the warm-up (``t`` counted from the start of training), and it
    is continuous at the join: ``join([linear_warmup(peak, w), inverse_sqrt(peak, w)], [w])``.
    """

    peak: float
    timescale: float
    name: ClassVar[str] = "inverse_sqrt"

    def __post_init__(self) -> None:
        object.__setattr__(self, "peak", real(self.name, "peak", self.peak))
        object.__setattr__(self, "timescale", real(self.name, "timescale", self.timescale, low=0.0, low_open=True))

    def at(self, step: int | float) -> float:
        return self.peak / math.sqrt(1.0 + step / self.timescale)

    def limit(self) -> float:
        return 0.0

    def span(self) -> int:
        return max(10, round(30 * self.timescale))


def inverse_sqrt(peak: float, timescale: float) -> InverseSqrt:
    return InverseSqrt(peak, timescale)


inverse_sqrt.__doc__ = InverseSqrt.__doc__
