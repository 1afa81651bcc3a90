"""How each program operation is written: the one table every code generator reads.

An operation of a traced program (:mod:`optimlab.engine.ops` says which ATen calls make it) is
written here once, as an expression over its operands in terms of a few primitives (a
conditional, a fused multiply-add, division, square root, ...). Each code generator supplies a
:class:`Dialect` that spells those primitives in its language: C for the CPU kernel
(:mod:`optimlab.engine.codegen_c`), Triton for the GPU kernel (:mod:`optimlab.engine.triton`).
:data:`SCALARS` gives the same operations on Python floats, for per-tensor scalars a host
computes in double precision as the eager path does.

The semantics are ATen's CPU kernels': ``lerp`` is a fused multiply-add around the nearer end,
``maximum``/``minimum``/``clamp`` propagate NaN, ``pow`` special-cases a few exponents.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from optimlab.engine.errors import Unsupported

#: Divide a tensor by a per-tensor scalar (Adam's bias corrections) as a product with the
#: scalar's reciprocal: within one unit in the last place of torch's true division, and one
#: fewer vector division per element, which is what bounds the step while the data sit in cache
#: (docs/performance.md). OPTIMLAB_RECIPROCAL_DIVISION=0 keeps true division.
RECIPROCAL_DIVISION = os.environ.get("OPTIMLAB_RECIPROCAL_DIVISION", "1") != "0"

#: The program's comparisons, as C and Python (Triton) write them; their result is a boolean.
COMPARISONS = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "eq": "==", "ne": "!="}


class Dialect:
    """The primitives one language writes operations with, for one compute dtype."""

    def number(self, value: float) -> str:
        raise NotImplementedError

    def where(self, condition: str, if_true: str, if_false: str) -> str:
        raise NotImplementedError

    def fma(self, a: str, b: str, c: str) -> str:
        """``a * b + c`` with one rounding."""
        raise NotImplementedError

    def div(self, a: str, b: str) -> str:
        raise NotImplementedError

    def sqrt(self, a: str) -> str:
        raise NotImplementedError

    def call(self, function: str, a: str) -> str:
        """``abs``, ``exp`` or ``log`` of ``a``."""
        raise NotImplementedError

    def from_bool(self, condition: str) -> str:
        """A comparison's result as 0 or 1 of the compute dtype."""
        raise NotImplementedError

    def pow(self, base: str, exponent: str) -> str:
        """A power with an exponent other than the special ones of :func:`power`."""
        raise NotImplementedError


Write = Callable[[Dialect, list[str]], str]


def _clamp_min(d: Dialect, a: str, low: str) -> str:
    # A NaN ``a`` fails the comparison and is kept, as torch keeps it.
    return d.where(f"({a} < {low})", low, a)


def _clamp_max(d: Dialect, a: str, high: str) -> str:
    return d.where(f"({high} < {a})", high, a)


def _lerp(d: Dialect, start: str, end: str, weight: str) -> str:
    difference = f"({end} - {start})"
    return d.where(f"({d.call('abs', weight)} < {d.number(0.5)})", d.fma(weight, difference, start),
                   d.fma(f"({weight} - {d.number(1.0)})", difference, end))


def _nan_or(d: Dialect, a: str, b: str, choice: str) -> str:
    return d.where(f"({a} != {a})", a, d.where(f"({b} != {b})", b, choice))


#: program operation -> how to write it from its operands (already in the compute dtype).
EXPRESSIONS: dict[str, Write] = {
    "add": lambda d, a: f"({a[0]} + {a[1]})",
    "sub": lambda d, a: f"({a[0]} - {a[1]})",
    "mul": lambda d, a: f"({a[0]} * {a[1]})",
    "neg": lambda d, a: f"(-{a[0]})",
    "addcmul": lambda d, a: f"({a[0]} + {a[3]} * {a[1]} * {a[2]})",
    "copy": lambda d, a: a[0],
    "fill": lambda d, a: a[0],
    # ATen computes ``alpha * other`` and the sum with one rounding.
    "add_alpha": lambda d, a: d.fma(a[2], a[1], a[0]),
    "sub_alpha": lambda d, a: d.fma(f"-{a[2]}", a[1], a[0]),
    "div": lambda d, a: d.div(a[0], a[1]),
    "addcdiv": lambda d, a: f"({a[0]} + {d.div(f'{a[3]} * {a[1]}', a[2])})",
    "sqrt": lambda d, a: d.sqrt(a[0]),
    "rsqrt": lambda d, a: d.div(d.number(1.0), d.sqrt(a[0])),
    "reciprocal": lambda d, a: d.div(d.number(1.0), a[0]),
    "abs": lambda d, a: d.call("abs", a[0]),
    "exp": lambda d, a: d.call("exp", a[0]),
    "log": lambda d, a: d.call("log", a[0]),
    "sign": lambda d, a: (f"({d.from_bool(f'({d.number(0.0)} < {a[0]})')} - "
                          f"{d.from_bool(f'({a[0]} < {d.number(0.0)})')})"),
    "lerp": lambda d, a: _lerp(d, a[0], a[1], a[2]),
    "maximum": lambda d, a: _nan_or(d, a[0], a[1], d.where(f"({a[0]} < {a[1]})", a[1], a[0])),
    "minimum": lambda d, a: _nan_or(d, a[0], a[1], d.where(f"({a[1]} < {a[0]})", a[1], a[0])),
    "clamp_min": lambda d, a: _clamp_min(d, a[0], a[1]),
    "clamp_max": lambda d, a: _clamp_max(d, a[0], a[1]),
    "clamp": lambda d, a: _clamp_max(d, _clamp_min(d, a[0], a[1]), a[2]),
    "where": lambda d, a: d.where(a[0], a[1], a[2]),
    **{op: (lambda symbol: lambda d, a: f"({a[0]} {symbol} {a[1]})")(symbol) for op, symbol in COMPARISONS.items()},
}

#: ``tensor ** c`` for these constants is what ATen's pow kernel computes without calling pow.
SPECIAL_POWERS: dict[float, Write] = {
    1.0: lambda d, a: a[0],
    2.0: lambda d, a: f"({a[0]} * {a[0]})",
    3.0: lambda d, a: f"({a[0]} * {a[0]} * {a[0]})",
    0.5: lambda d, a: d.sqrt(a[0]),
    -0.5: lambda d, a: d.div(d.number(1.0), d.sqrt(a[0])),
    -1.0: lambda d, a: d.div(d.number(1.0), a[0]),
    -2.0: lambda d, a: d.div(d.number(1.0), f"({a[0]} * {a[0]})"),
}


def expression(dialect: Dialect, op: str, operands: list[str], constant_exponent: float | None = None) -> str:
    """``op`` over ``operands`` in ``dialect``. For ``pow``, ``constant_exponent`` is the
    exponent when it is a constant and the base a tensor (else None): ATen's special cases."""
    if op == "pow":
        special = SPECIAL_POWERS.get(constant_exponent) if constant_exponent is not None else None
        return special(dialect, operands) if special else dialect.pow(operands[0], operands[1])
    write = EXPRESSIONS.get(op)
    if write is None:
        raise Unsupported(f"no code for operation {op!r}")
    return write(dialect, operands)


def comparison_dtype(nodes: list[Any], args: tuple[int, ...]) -> torch.dtype:
    """The dtype torch computes a comparison in: vectors win over 0-d values, which win over numbers."""
    for tier in (lambda n: n.vector and n.dtype is not None, lambda n: not n.vector and n.dtype is not None):
        dtypes = [nodes[i].dtype for i in args if tier(nodes[i])]
        if dtypes:
            result = dtypes[0]
            for dtype in dtypes[1:]:
                result = torch.promote_types(result, dtype)
            return result
    return torch.float64


# -- the same operations on Python floats (a host's per-tensor scalars) ---------------------------
# Python floats are IEEE doubles, as the eager path's scalar math; these give the results C's
# libm gives where Python would raise instead (x / 0, overflow, domain errors).
def divide(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        return float(np.float64(a) / np.float64(b))


def _libm(function: Any, fallback: Any) -> Any:
    def call(*args: float) -> float:
        try:
            return function(*args)
        except (ValueError, OverflowError):
            return float(fallback(*(np.float64(a) for a in args)))
    return call


def _nan_first(choose: Any) -> Any:
    return lambda a, b: a if a != a else (b if b != b else choose(a, b))


_sqrt = _libm(math.sqrt, np.sqrt)

#: program operation -> the function computing it on Python floats.
SCALARS: dict[str, Any] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": divide, "neg": operator.neg,
    "sqrt": _sqrt, "rsqrt": lambda a: divide(1.0, _sqrt(a)), "reciprocal": lambda a: divide(1.0, a), "abs": abs,
    "sign": lambda a: float((0 < a) - (a < 0)), "exp": _libm(math.exp, np.exp), "log": _libm(math.log, np.log),
    "add_alpha": lambda a, b, alpha: a + alpha * b, "sub_alpha": lambda a, b, alpha: a - alpha * b,
    "pow": _libm(math.pow, np.power), "lerp": lambda a, b, w: a + w * (b - a),
    "maximum": _nan_first(max), "minimum": _nan_first(min),
    "clamp_min": lambda a, lo: a if a != a else max(a, lo), "clamp_max": lambda a, hi: a if a != a else min(a, hi),
    "clamp": lambda a, lo, hi: a if a != a else min(max(a, lo), hi),
    "addcmul": lambda a, b, c, v: a + v * b * c, "addcdiv": lambda a, b, c, v: a + divide(v * b, c),
    "where": lambda c, a, b: a if c else b, "copy": lambda a: a, "fill": lambda a: a,
    **{op: getattr(operator, op) for op in COMPARISONS},
}
