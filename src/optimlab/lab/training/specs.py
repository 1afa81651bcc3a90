"""Named things with parameters, written as one string: ``name`` or ``name:key=value,key=value``.

Problems (``quadratic:cond=1000``, ``mlp-mnist:dropout=0.2,l2=0.0001``) and learning-rate
schedules (``warmup-cosine:warmup=100``) are stored and hashed as such strings, so a string has
one canonical form: :func:`format_spec` sorts the keys and writes each value by ``repr``, and
parsing a canonical string gives it back unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

Value = bool | int | float | str


def parse_spec(spec: str, what: str = "spec") -> tuple[str, dict[str, str]]:
    """``"name:a=1,b=x"`` -> ``("name", {"a": "1", "b": "x"})`` (values still strings)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{what} must be a name or 'name:key=value,...', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{what} {spec!r}: expected key=value after the ':', got {item!r}")
        if key.strip() in params:
            raise ValueError(f"{what} {spec!r}: {key.strip()!r} is given twice")
        params[key.strip()] = value.strip()
    return name.strip(), params


def format_spec(name: str, params: Mapping[str, Value]) -> str:
    """The canonical string of ``name`` with ``params`` (keys sorted; no ':' without params)."""
    if not params:
        return name
    return name + ":" + ",".join(f"{key}={format_value(params[key])}" for key in sorted(params))


def format_value(value: Value) -> str:
    return str(value) if isinstance(value, (bool, str)) else repr(value)


def convert(what: str, key: str, text: str, default: Value) -> Value:
    """``text`` as the type of ``default`` (an int parameter also takes '1e3' if it is whole)."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(default, int):
            number = float(text)
            if number != int(number):
                raise ValueError
            return int(number)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ValueError(f"{what}: {key} must be {type(default).__name__}, got {text!r}") from None
    return text


def bind(what: str, factory: Callable[..., Any], params: Mapping[str, str]) -> dict[str, Value]:
    """Convert string ``params`` to the types of ``factory``'s keyword defaults; unknown keys
    raise ``ValueError`` naming the valid ones. Returns only the parameters that differ from the
    defaults, so that ``name:a=<default>`` and ``name`` are the same spec."""
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()
                if p.default is not inspect.Parameter.empty}
    bound = {}
    for key, text in params.items():
        if key not in defaults:
            valid = ", ".join(f"{k} (default {format_value(v)})" for k, v in defaults.items()) or "none"
            raise ValueError(f"{what}: unknown parameter {key!r}; valid parameters: {valid}")
        value = convert(what, key, text, defaults[key])
        if value != defaults[key]:
            bound[key] = value
    return bound


class UnknownNameError(KeyError, ValueError):
    """A name not in a registry. Both a ``KeyError`` (a failed lookup) and a ``ValueError`` (a
    bad argument); its message lists the valid names and prints without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def unknown(kind: str, name: Any, valid: Any) -> UnknownNameError:
    return UnknownNameError(f"unknown {kind} {name!r}; valid names: {', '.join(valid)}")
