"""Hyperparameters on the fast paths: what shapes a traced program, and what it reads at run time.

A group's hyperparameters (numbers, flags, tuples of them, one-element tensors) split into a
hashable *structure* (which values are exact zeros, the flags, the tuple lengths), which
identifies the traced program, and the non-zero numbers, passed to the kernel as float64 on
every step, so that changing a learning rate never re-traces or recompiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from optimlab.engine.errors import Unsupported


def hp_structure(hyperparams: Mapping[str, Any]) -> tuple[tuple, list[str], list[float]]:
    """Split a group's hyperparameters into what shapes the program and what it reads at run time.

    Returns ``(structure, names, values)``: ``structure`` is hashable and identifies the traced
    program (which values are exact zeros, the flags, the tuple lengths); ``names``/``values``
    are the non-zero numbers, passed to the kernel as float64 on every step, so changing a
    learning rate never re-traces or recompiles.
    """
    names: list[str] = []
    values: list[float] = []

    def visit(name: str, value: Any) -> Any:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return ("static", value)
        if isinstance(value, Tensor):
            if value.numel() != 1 or value.is_complex():
                raise Unsupported(f"hyperparameter {name} is a tensor of shape {tuple(value.shape)}")
            value = value.item()
        if isinstance(value, (int, float)):
            number = float(value)
            if number == 0.0:
                return ("zero",)
            names.append(name)
            values.append(number)
            return ("number",)
        if isinstance(value, (tuple, list)):
            return ("seq", type(value).__name__, tuple(visit(f"{name}[{i}]", v) for i, v in enumerate(value)))
        raise Unsupported(f"hyperparameter {name} is a {type(value).__name__}")

    structure = tuple((key, visit(key, value)) for key, value in hyperparams.items())
    return structure, names, values


_plain = frozenset((int, float, bool, str, type(None)))
_recent: dict[tuple, tuple[tuple, list[float]]] = {}


def _is_plain(value: Any) -> bool:
    kind = type(value)
    return kind in _plain or (kind is tuple and all(type(v) in _plain for v in value))


def hp_key(hyperparams: Mapping[str, Any]) -> tuple | None:
    """A key equal for equal hyperparameters of equal types (``1 == True == 1.0``, but not as
    hyperparameters), or None when one is not a plain number, flag, string or None (or a tuple
    of those): a tensor's value can change in place, so it is read every time."""
    items = tuple(hyperparams.items())
    for _, value in items:
        if not _is_plain(value):
            return None
    return items + tuple(type(v) for _, v in items)


def hp_values(hyperparams: Mapping[str, Any], key: tuple | None = None) -> tuple[tuple, list[float]]:
    """The structure and runtime values only (what a step needs once the program exists).

    Remembers recent answers for hyperparameters made of plain numbers (``key``: their
    :func:`hp_key`, if the caller has it).
    """
    if key is None:
        key = hp_key(hyperparams)
        if key is None:
            structure, _, values = hp_structure(hyperparams)
            return structure, values
    found = _recent.get(key)
    if found is None:
        if len(_recent) > 256:
            _recent.clear()
        structure, _, values = hp_structure(hyperparams)
        found = _recent[key] = (structure, values)
    return found


def hp_rebuild(hyperparams: Mapping[str, Any], structure: tuple, number: Any) -> dict[str, Any]:
    """The hyperparameters as a transform sees them on a fast path: exact zeros as plain ``0``,
    the i-th runtime number as ``number(i)`` (a meta tensor to trace, a 0-d tensor to run)."""
    counter = iter(range(1 << 30))

    def rebuild(value: Any, shape: tuple) -> Any:
        kind = shape[0]
        if kind == "static":
            return shape[1]
        if kind == "zero":
            return 0
        if kind == "number":
            return number(next(counter))
        items = [rebuild(v, s) for v, s in zip(value, shape[2])]
        return tuple(items) if shape[1] == "tuple" else items

    return {key: rebuild(hyperparams[key], shape) for key, shape in structure}
