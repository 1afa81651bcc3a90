"""Schedules in sequence: :func:`join`, :func:`sequence`, and warmup-stable-decay (:func:`wsd`).

Each piece sees the step relative to its own start (as ``optax.join_schedules`` does), so a
piece is written as if it ran alone: ``join([linear_warmup(0.1, 100), cosine(0.1, 900)], [100])``
warms up for steps 0..99 and runs the cosine's steps 0..899 at steps 100..999.
(The product of schedules, ``a * b``, lives with the base class: :class:`~.base.Product`.)
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from typing import Any, ClassVar

from optimlab.schedules.base import Bounds, Constant, Schedule, choice, integer, real, walk
from optimlab.schedules.ramps import Ramp


@dataclasses.dataclass(frozen=True, repr=False)
class Join(Schedule):
    """``schedules[i](step - boundaries[i - 1])`` for ``boundaries[i - 1] <= step < boundaries[i]``
    (the first piece starts at 0, the last runs on for ever).

    torch's nearest: ``SequentialLR(schedulers, milestones=boundaries)``.
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]
    name: ClassVar[str] = "join"

    def __post_init__(self) -> None:
        schedules, boundaries = tuple(self.schedules), tuple(self.boundaries)
        if not schedules:
            raise ValueError("join: schedules must not be empty")
        for i, s in enumerate(schedules):
            if not isinstance(s, Schedule):
                raise TypeError(f"join: schedules[{i}] must be a Schedule, got {type(s).__name__} {s!r}")
            for part in walk(s):
                if part.stateful:
                    raise ValueError(f"join: schedules[{i}] contains {part!r}, which is fed a metric and so "
                                     "cannot start part-way; to warm up first, multiply instead: "
                                     "linear_warmup(1.0, steps) * reduce_on_plateau(...)")
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(f"join: boundaries must have one entry fewer than schedules ({len(schedules) - 1}), "
                             f"got {len(boundaries)}: {list(boundaries)}")
        for i, b in enumerate(boundaries):
            integer(self.name, f"boundaries[{i}]", b, low=1)
            if i and b <= boundaries[i - 1]:
                raise ValueError(f"join: boundaries must be strictly increasing, got {list(boundaries)}")
        object.__setattr__(self, "schedules", schedules)
        object.__setattr__(self, "boundaries", tuple(int(b) for b in boundaries))

    def piece(self, step: int | float) -> tuple[Schedule, int]:
        """The piece that runs at ``step`` and the step it started at."""
        i = bisect_right(self.boundaries, step)
        return self.schedules[i], (self.boundaries[i - 1] if i else 0)

    def at(self, step: int | float) -> float:
        schedule, begin = self.piece(step)
        return schedule.at(step - begin)

    def bounds(self, window: int | None = None) -> Bounds | None:
        low, high = math.inf, -math.inf
        starts = (0, *self.boundaries)
        for i, schedule in enumerate(self.schedules):
            begin = starts[i]
            if window is not None and begin >= window:
                break
            length = self.boundaries[i] - begin if i < len(self.boundaries) else None
            if window is not None:
                length = window - begin if length is None else min(length, window - begin)
            b = schedule.bounds(length)
            if b is None:
                return None
            low, high = min(low, b[0]), max(high, b[1])
        return (low, high)

    def duration(self) -> int | None:
        last = self.schedules[-1].duration()
        return None if last is None else self.boundaries[-1] + last if self.boundaries else last

    def span(self) -> int:
        if not self.boundaries:
            return self.schedules[0].span()
        last = self.schedules[-1]
        tail = last.duration() if last.duration() is not None else last.span()
        return self.boundaries[-1] + max(tail, self.boundaries[-1] // 10)

    def children(self) -> tuple[Schedule, ...]:
        return self.schedules

    def __repr__(self) -> str:
        return f"join([{', '.join(map(repr, self.schedules))}], {list(self.boundaries)})"


def join(schedules: list[Schedule] | tuple[Schedule, ...], boundaries: list[int] | tuple[int, ...]) -> Join:
    return Join(tuple(schedules), tuple(boundaries))


join.__doc__ = Join.__doc__


def sequence(*pieces: Schedule | tuple[Schedule, int]) -> Schedule:
    """Pieces one after another, each for its own length: ``sequence(linear_warmup(0.1, 100),
    cosine(0.1, 900))`` is ``join([...], [100])``.

    A piece is a schedule, which runs for its :meth:`~.Schedule.duration` (a warm-up's
    ``steps``), or a pair ``(schedule, steps)`` for pieces with no end of their own
    (``(constant(0.1), 500)``). The last piece runs on for ever.
    """
    if not pieces:
        raise ValueError("sequence: needs at least one piece")
    schedules, boundaries, begin = [], [], 0
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if isinstance(piece, tuple) and len(piece) == 2:
            schedule, steps = piece
            steps = integer("sequence", f"pieces[{i}] steps", steps, low=1)
        else:
            schedule, steps = piece, None
        if not isinstance(schedule, Schedule):
            raise TypeError(f"sequence: pieces[{i}] must be a Schedule or (Schedule, steps), got {piece!r}")
        if steps is None and not last:
            steps = schedule.duration()
            if not steps:
                raise ValueError(f"sequence: pieces[{i}] {schedule!r} has no length of its own; "
                                 "give it as (schedule, steps)")
        schedules.append(schedule)
        if not last:
            begin += steps
            boundaries.append(begin)
    return schedules[0] if len(schedules) == 1 else Join(tuple(schedules), tuple(boundaries))


WSD_SHAPES = ("linear", "cos", "sqrt")


def wsd(peak: float, steps: int, warmup: int, decay: int, floor: float = 0.0, shape: str = "linear",
        start: float = 0.0) -> Schedule:
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM; Hägele et al. 2024): a linear warm-up from
    ``start`` to ``peak`` over ``warmup`` steps, ``peak`` until ``steps - decay``, then a decay
    to ``floor`` over the last ``decay`` steps along ``shape``: ``"linear"``, ``"cos"`` or
    ``"sqrt"`` (``peak - (peak - floor) sqrt(x)``, the "1 - sqrt" cool-down).

    Built as a :func:`join` of those pieces (a zero-length phase is left out).
    """
    name = "wsd"
    peak, floor, start = real(name, "peak", peak), real(name, "floor", floor), real(name, "start", start)
    steps = integer(name, "steps", steps, low=1)
    warmup = integer(name, "warmup", warmup, low=0)
    decay = integer(name, "decay", decay, low=1)
    choice(name, "shape", shape, WSD_SHAPES)
    if warmup + decay > steps:
        raise ValueError(f"wsd: warmup + decay must be <= steps, got warmup={warmup}, decay={decay}, steps={steps}")
    pieces: list[Any] = []
    if warmup:
        pieces.append((Ramp(start, peak, warmup, "linear"), warmup))
    if steps - warmup - decay:
        pieces.append((Constant(peak), steps - warmup - decay))
    pieces.append(Ramp(peak, floor, decay, shape))
    return sequence(*pieces)
