"""Periodic and cyclical schedules: cosine with warm restarts (SGDR, Loshchilov & Hutter 2017,
arXiv:1608.03983), cyclical values (Smith 2017, arXiv:1506.01186) and the one-cycle policy
(Smith & Topin 2019, arXiv:1708.07120).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from optimlab.schedules.base import Bounds, Schedule, choice, integer, real
from optimlab.schedules.ramps import interpolate


@dataclasses.dataclass(frozen=True, repr=False)
class WarmRestarts(Schedule):
    """Cosine annealing with warm restarts (SGDR): a cosine from ``peak`` to ``floor`` over
    ``period`` steps, restarted at ``peak``; each period is ``period_mult`` times the last.

    Period ``i`` starts at step ``period (period_mult^i - 1) / (period_mult - 1)`` (``period * i``
    when ``period_mult = 1``) and lasts ``T_i = period * period_mult^i``; within it, at offset
    ``T_cur``, the value is ``floor + (peak - floor)(1 + cos(pi T_cur / T_i)) / 2``.

    torch twin: ``CosineAnnealingWarmRestarts(T_0=period, T_mult=period_mult, eta_min=floor)``.
    """

    peak: float
    period: int
    period_mult: int = 1
    floor: float = 0.0
    name: ClassVar[str] = "warm_restarts"

    def __post_init__(self) -> None:
        object.__setattr__(self, "peak", real(self.name, "peak", self.peak))
        object.__setattr__(self, "floor", real(self.name, "floor", self.floor))
        object.__setattr__(self, "period", integer(self.name, "period", self.period, low=1))
        object.__setattr__(self, "period_mult", integer(self.name, "period_mult", self.period_mult, low=1))

    def period_start(self, i: int) -> int:
        """The step at which period ``i`` (from 0) starts."""
        m = self.period_mult
        return self.period * i if m == 1 else self.period * (m**i - 1) // (m - 1)

    def position(self, step: int | float) -> tuple[int | float, int]:
        """``(T_cur, T_i)``: the offset into the current period and that period's length."""
        m = self.period_mult
        if m == 1:
            i = int(step // self.period)
        else:
            # the logarithm gives the period up to rounding; integer arithmetic settles it
            i = int(math.log(step / self.period * (m - 1) + 1, m))
            while self.period_start(i + 1) <= step:
                i += 1
            while i > 0 and self.period_start(i) > step:
                i -= 1
        return step - self.period_start(i), self.period * m**i

    def at(self, step: int | float) -> float:
        t_cur, t_i = self.position(step)
        return interpolate(self.peak, self.floor, t_cur, t_i, "cos")

    def bounds(self, window: int | None = None) -> Bounds:
        return (min(self.peak, self.floor), max(self.peak, self.floor))

    def span(self) -> int:
        return self.period_start(3)


def warm_restarts(peak: float, period: int, period_mult: int = 1, floor: float = 0.0) -> WarmRestarts:
    return WarmRestarts(peak, period, period_mult, floor)


warm_restarts.__doc__ = WarmRestarts.__doc__

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def triangle(step: int | float, up: int, down: int) -> tuple[int, float]:
    """``(cycle, height)``: the cycle number (from 1) and the height in [0, 1] of a triangle
    wave that rises for ``up`` steps and falls for ``down`` (torch's CyclicLR arithmetic)."""
    total = up + down
    cycle = math.floor(1 + step / total)
    x = 1.0 + step / total - cycle
    ratio = up / total
    return cycle, (x / ratio if x <= ratio else (x - 1) / (ratio - 1))


@dataclasses.dataclass(frozen=True, repr=False)
class Cyclic(Schedule):
    """Cyclical values (Smith 2017): a triangle wave between ``base`` and ``peak``.

    ``base + (peak - base) * height(t) * scale``, with ``height`` the triangle (0 at the start
    of each cycle, 1 after ``step_size_up`` steps, back to 0 after ``step_size_down`` more) and
    ``scale`` 1 (``triangular``), ``1 / 2^(cycle - 1)`` (``triangular2``: the amplitude halves
    each cycle) or ``gamma^t`` (``exp_range``). ``peak < base`` cycles the other way, as
    momentum is cycled against the learning rate.

    torch twin: ``CyclicLR(base_lr=base, max_lr=peak, step_size_up, step_size_down, mode, gamma)``;
    its cycled momentum is ``cyclic(max_momentum, base_momentum, ...)``.
    """

    base: float
    peak: float
    step_size_up: int
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    name: ClassVar[str] = "cyclic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", real(self.name, "base", self.base))
        object.__setattr__(self, "peak", real(self.name, "peak", self.peak))
        object.__setattr__(self, "step_size_up", integer(self.name, "step_size_up", self.step_size_up, low=1))
        if self.step_size_down is not None:
            object.__setattr__(self, "step_size_down", integer(self.name, "step_size_down", self.step_size_down))
        choice(self.name, "mode", self.mode, CYCLIC_MODES)
        object.__setattr__(self, "gamma", real(self.name, "gamma", self.gamma, low=0.0, low_open=True))
        if self.mode != "exp_range" and self.gamma != 1.0:
            raise ValueError(f"cyclic: gamma applies only to mode='exp_range', got gamma={self.gamma!r} "
                             f"with mode={self.mode!r}")

    @property
    def down(self) -> int:
        return self.step_size_up if self.step_size_down is None else self.step_size_down

    def at(self, step: int | float) -> float:
        cycle, height = triangle(step, self.step_size_up, self.down)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1 / (2.0 ** (cycle - 1))
        else:
            scale = self.gamma**step
        return self.base + (self.peak - self.base) * height * scale

    def bounds(self, window: int | None = None) -> Bounds | None:
        if self.mode == "exp_range" and self.gamma > 1:
            return None  # the amplitude grows without end
        return (min(self.base, self.peak), max(self.base, self.peak))

    def span(self) -> int:
        return 3 * (self.step_size_up + self.down)


def cyclic(base: float, peak: float, step_size_up: int, step_size_down: int | None = None,
           mode: str = "triangular", gamma: float = 1.0) -> Cyclic:
    return Cyclic(base, peak, step_size_up, step_size_down, mode, gamma)


cyclic.__doc__ = Cyclic.__doc__


@dataclasses.dataclass(frozen=True, repr=False)
class OneCycle(Schedule):
    """The 1cycle policy (Smith & Topin 2019): up from ``start`` to ``peak`` for the first
    ``pct_start`` of ``steps``, then down to ``end``; with ``three_phase``, up, back down to
    ``start`` symmetrically, then down to ``end``. Each phase anneals along ``anneal``
    (``"cos"`` or ``"linear"``). After ``steps - 1`` the value stays at ``end``.

    ``start`` defaults to ``peak / div_factor`` and ``end`` to ``start / final_div_factor``.
    Phase boundaries are torch's: the rise ends at step ``pct_start * steps - 1`` (three-phase:
    the fall back at ``2 pct_start steps - 2``) and the last phase at ``steps - 1``.

    torch twin: ``OneCycleLR(max_lr=peak, total_steps=steps, ...)``; its cycled momentum is
    ``one_cycle(base_momentum, steps, start=max_momentum, end=max_momentum, ...)``.
    """

    peak: float
    steps: int
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    start: float | None = None
    end: float | None = None
    name: ClassVar[str] = "one_cycle"

    def __post_init__(self) -> None:
        name = self.name
        object.__setattr__(self, "peak", real(name, "peak", self.peak))
        object.__setattr__(self, "steps", integer(name, "steps", self.steps, low=2))
        pct = real(name, "pct_start", self.pct_start, low=0.0, high=1.0, low_open=True, high_open=True)
        object.__setattr__(self, "pct_start", pct)
        choice(name, "anneal", self.anneal, ("cos", "linear"))
        object.__setattr__(self, "div_factor", real(name, "div_factor", self.div_factor, low=0.0, low_open=True))
        object.__setattr__(self, "final_div_factor",
                           real(name, "final_div_factor", self.final_div_factor, low=0.0, low_open=True))
        if not isinstance(self.three_phase, bool):
            raise TypeError(f"one_cycle: three_phase must be True or False, got {self.three_phase!r}")
        for field in ("start", "end"):
            if getattr(self, field) is not None:
                object.__setattr__(self, field, real(name, field, getattr(self, field)))
        # every phase must last more than zero steps (torch divides by the phase length)
        if pct * self.steps <= 1:
            raise ValueError(f"one_cycle: pct_start * steps must be > 1 (the rise needs a step), got "
                             f"pct_start={pct!r}, steps={self.steps}")
        if self.three_phase and self.steps - 1 <= 2 * pct * self.steps - 2:
            raise ValueError(f"one_cycle: with three_phase=True, pct_start must be < (steps + 1) / (2 steps) "
                             f"(the last phase needs a step), got pct_start={pct!r}, steps={self.steps}")

    @property
    def initial(self) -> float:
        return self.peak / self.div_factor if self.start is None else self.start

    @property
    def final(self) -> float:
        return self.initial / self.final_div_factor if self.end is None else self.end

    def phases(self) -> list[tuple[float, float, float]]:
        """``(end_step, from, to)`` of each phase, as torch's OneCycleLR lays them out."""
        rise = self.pct_start * self.steps - 1
        if self.three_phase:
            return [(rise, self.initial, self.peak), (2 * self.pct_start * self.steps - 2, self.peak, self.initial),
                    (self.steps - 1, self.initial, self.final)]
        return [(rise, self.initial, self.peak), (self.steps - 1, self.peak, self.final)]

    def at(self, step: int | float) -> float:
        # held after the last step; the value there is torch's (end - start) * 1 + start, which
        # can be an ulp of start away from end: kept so, to match torch's OneCycleLR exactly
        step = min(step, self.steps - 1)
        begin = 0.0
        phases = self.phases()
        for i, (finish, a, b) in enumerate(phases):
            if step <= finish or i == len(phases) - 1:
                # torch's fraction of the phase, then the angle pi * fraction
                return interpolate(a, b, (step - begin) / (finish - begin), 1.0, self.anneal)
            begin = finish
        raise AssertionError("unreachable")

    def bounds(self, window: int | None = None) -> Bounds:
        values = (self.initial, self.peak, self.final)
        return (min(values), max(values))

    def duration(self) -> int:
        return self.steps


def one_cycle(peak: float, steps: int, pct_start: float = 0.3, anneal: str = "cos", div_factor: float = 25.0,
              final_div_factor: float = 1e4, three_phase: bool = False, start: float | None = None,
              end: float | None = None) -> OneCycle:
    return OneCycle(peak, steps, pct_start, anneal, div_factor, final_div_factor, three_phase, start, end)


one_cycle.__doc__ = OneCycle.__doc__
