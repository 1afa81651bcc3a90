"""The operations a traced program is made of: which ATen calls they come from.

Each entry of :data:`ATEN` turns one ATen call (by its schema's argument names) into a program
operation and its operands. The code generators (:mod:`optimlab.engine.codegen_c`,
:mod:`optimlab.engine.triton`) write each operation from :data:`optimlab.engine.expressions.EXPRESSIONS`.
"""

from __future__ import annotations

from typing import Any

from optimlab.engine.errors import Unsupported


def _binary(op: str):
    return lambda a: (op, (a["self"], a["other"]))


def _with_alpha(op: str):
    """add/sub: ``self op alpha * other`` (ATen computes ``alpha * other`` with one rounding: fma)."""
    def rule(a: dict) -> tuple[str, tuple]:
        alpha = a.get("alpha", 1)
        if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha == 1:
            return op, (a["self"], a["other"])
        return op + "_alpha", (a["self"], a["other"], alpha)
    return rule


def _rsub(a: dict) -> tuple[str, tuple]:
    alpha = a.get("alpha", 1)
    if isinstance(alpha, (int, float)) and alpha == 1:
        return "sub", (a["other"], a["self"])
    return "sub_alpha", (a["other"], a["self"], alpha)


def _unary(op: str):
    return lambda a: (op, (a["self"],))


def _pow(a: dict) -> tuple[str, tuple]:
    return "pow", (a["self"], a["exponent"])


def _lerp(a: dict) -> tuple[str, tuple]:
    return "lerp", (a["self"], a["end"], a["weight"])


def _div(a: dict) -> tuple[str, tuple]:
    if a.get("rounding_mode") is not None:
        raise Unsupported("division with a rounding mode")
    return "div", (a["self"], a["other"])


def _clamp(a: dict) -> tuple[str, tuple]:
    low, high = a.get("min"), a.get("max")
    if low is None and high is None:
        raise Unsupported("clamp without bounds")
    if low is None:
        return "clamp_max", (a["self"], high)
    if high is None:
        return "clamp_min", (a["self"], low)
    return "clamp", (a["self"], low, high)


def _copy_like(a: dict) -> tuple[str, tuple]:
    return "copy", (a["self"],)


def _copy_into(a: dict) -> tuple[str, tuple]:
    return "copy", (a["src"],)


def _fill(a: dict) -> tuple[str, tuple]:
    return "fill", (a["value"],)


def _full_like(value: Any):
    return lambda a: ("fill", (a.get("fill_value", value),))


#: ATen operation (without a trailing ``_``) -> rule giving (program operation, operands).
ATEN: dict[str, Any] = {
    "add": _with_alpha("add"),
    "sub": _with_alpha("sub"),
    "rsub": _rsub,
    "mul": _binary("mul"),
    "div": _div,
    "neg": _unary("neg"),
    "sqrt": _unary("sqrt"),
    "rsqrt": _unary("rsqrt"),
    "reciprocal": _unary("reciprocal"),
    "abs": _unary("abs"),
    "sign": _unary("sign"),
    "sgn": _unary("sign"),
    "exp": _unary("exp"),
    "log": _unary("log"),
    "pow": _pow,
    "lerp": _lerp,
    "maximum": _binary("maximum"),
    "minimum": _binary("minimum"),
    "clamp": _clamp,
    "clamp_min": lambda a: ("clamp_min", (a["self"], a["min"])),
    "clamp_max": lambda a: ("clamp_max", (a["self"], a["max"])),
    "addcmul": lambda a: ("addcmul", (a["self"], a["tensor1"], a["tensor2"], a.get("value", 1))),
    "addcdiv": lambda a: ("addcdiv", (a["self"], a["tensor1"], a["tensor2"], a.get("value", 1))),
    "where": lambda a: ("where", (a["condition"], a["self"], a["other"])),
    "gt": _binary("gt"),
    "lt": _binary("lt"),
    "ge": _binary("ge"),
    "le": _binary("le"),
    "eq": _binary("eq"),
    "ne": _binary("ne"),
    "clone": _copy_like,
    "_to_copy": _copy_like,
    "copy": _copy_into,
    "fill": _fill,
    "zero": lambda a: ("fill", (0.0,)),
    "zeros_like": _full_like(0.0),
    "ones_like": _full_like(1.0),
    "full_like": _full_like(None),
    "scalar_tensor": lambda a: ("fill", (a["s"],)),
}
