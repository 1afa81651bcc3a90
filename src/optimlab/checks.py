"""Hyperparameter checks: each names the argument, the value it got and what it expected."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optimlab.schedules.base import Schedule

#: A check takes (owner, argument name, value) and raises TypeError/ValueError if it is bad.
Check = Callable[[str, str, Any], None]


def as_real(owner: str, name: str, value: Any) -> float:
    """The value as a float, if it is a real number or a one-element real tensor."""
    real_tensor = isinstance(value, Tensor) and not value.is_complex() and value.dtype != torch.bool
    if real_tensor and value.numel() != 1:  # a ValueError, as torch.optim's "Tensor lr must be 1-element"
        raise ValueError(f"{owner}: {name} must be a real number or a one-element tensor, got a tensor of "
                         f"shape {tuple(value.shape)}")
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or real_tensor):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__} {value!r}")
    number = float(value.detach() if isinstance(value, Tensor) else value)
    if number != number:
        raise ValueError(f"{owner}: {name} must be a real number, got nan")
    return number


def schedulable(check: Check) -> Check:
    """``check``, also accepting a :class:`~optimlab.schedules.Schedule` where a number goes.

    A schedule that knows its range (``bounds()``) has both ends checked now, so a schedule that
    would leave the allowed range fails before training; one that does not is left to the
    optimizer, which checks the value it writes before every step.
    """
    @functools.wraps(check)
    def checked(owner: str, name: str, value: Any) -> None:
        if isinstance(value, Schedule):
            bounds = value.bounds()
            if bounds is not None:
                for end, which in zip(bounds, ("lowest", "highest")):
                    if not math.isinf(end):  # unbounded: every value it takes is checked when written
                        check(owner, f"{name} ({which} value of {value!r})", end)
            return
        check(owner, name, value)
    return checked


def bounded(accepts: Callable[[float], bool], expected: str) -> Check:
    """A check of a real number: ``accepts(number)`` must hold; ``expected`` says what it wants
    ("in [0, 1)"), for the message."""
    @schedulable
    def check(owner: str, name: str, value: Any) -> None:
        number = as_real(owner, name, value)
        if not accepts(number):
            raise ValueError(f"{owner}: {name} must be {expected}, got {number!r}")
    return check


def at_least(low: float) -> Check:
    """``low`` or more, and finite: an infinite step size or decay is never meant."""
    return bounded(lambda number: low <= number < math.inf, f"a finite number >= {low:g}")


def at_most(high: float) -> Check:
    return bounded(lambda number: number <= high, f"<= {high:g}")


def greater_than(low: float) -> Check:
    return bounded(lambda number: number > low, f"> {low:g}")


def open_interval(low: float, high: float) -> Check:
    return bounded(lambda number: low < number < high, f"in ({low:g}, {high:g})")


@schedulable
def real(owner: str, name: str, value: Any) -> None:
    """Any real number (not NaN)."""
    as_real(owner, name, value)


non_negative = at_least(0.0)
#: More than 0, and finite (SparseAdam's lr and eps, as torch checks them).
positive = bounded(lambda number: 0.0 < number < math.inf, "a finite number > 0")
non_positive = at_most(0.0)
#: 0 <= value < 1: a decay rate (the weight kept from the past).
unit_interval = bounded(lambda number: 0.0 <= number < 1.0, "in [0, 1)")
closed_unit_interval = bounded(lambda number: 0.0 <= number <= 1.0, "in [0, 1]")


def optional(check: Check) -> Check:
    """``check``, also accepting None (a value that defaults to something else)."""
    @functools.wraps(check)
    def checked(owner: str, name: str, value: Any) -> None:
        if value is not None:
            check(owner, name, value)
    return checked


def pair(first: Check, second: Check, what: str) -> Check:
    """A pair (tuple or list) whose items pass ``first`` and ``second``; ``what`` describes the
    pair for the message ("(beta1, beta2) of numbers in [0, 1)")."""
    def check(owner: str, name: str, value: Any) -> None:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{owner}: {name} must be a pair {what}, got {value!r}")
        first(owner, f"{name}[0]", value[0])
        second(owner, f"{name}[1]", value[1])
    return check


pair_of_unit_interval = pair(unit_interval, unit_interval, "(beta1, beta2) of numbers in [0, 1)")


def flag(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}")


def optional_flag(owner: str, name: str, value: Any) -> None:
    if value is not None:
        flag(owner, name, value)


def integer(low: int, high: int | None = None) -> Check:
    """An int (not a bool) with ``low <= value`` (and ``value < high`` if given): counts of
    iterations, history lengths."""
    def check(owner: str, name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{owner}: {name} must be an integer, got {type(value).__name__} {value!r}")
        if value < low or (high is not None and value >= high):
            expected = f">= {low}" if high is None else f"in [{low}, {high})"
            raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")
    return check


def one_of(*allowed: Any) -> Check:
    """One of a few named choices (a string option, or None for its default)."""
    def check(owner: str, name: str, value: Any) -> None:
        if not any(value is choice or (isinstance(value, str) and value == choice) for choice in allowed):
            raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return check


def real_tuple(length: int) -> Check:
    """A tuple (or list) of ``length`` real numbers (Muon's Newton-Schulz coefficients)."""
    def check(owner: str, name: str, value: Any) -> None:
        if not isinstance(value, (tuple, list)) or len(value) != length:
            raise ValueError(f"{owner}: {name} must be a tuple of {length} real numbers, got {value!r}")
        for i, item in enumerate(value):
            schedulable(as_real)(owner, f"{name}[{i}]", item)
    return check
