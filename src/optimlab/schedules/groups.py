"""Reading and writing one hyperparameter of a parameter group, including one entry of a tuple
such as ``betas``. Both ways of scheduling (:class:`~.scheduler.Scheduler` and schedules given
to an optimizer directly) write through here.

A value held as a tensor is updated in place (``fill_``), as torch.optim.lr_scheduler does, so
a compiled step that captured the tensor sees the new value without recompiling; a plain number
is replaced by the new plain number.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from torch import Tensor

#: Names for one entry of a tuple hyperparameter: ``"beta1"`` is ``group["betas"][0]``.
ALIASES = {"beta1": ("betas", 0), "beta2": ("betas", 1)}

#: Where a scheduled value lives: (group key, index into a tuple value or None).
Slot = tuple[str, "int | None"]


def slot_name(slot: Slot) -> str:
    key, index = slot
    return key if index is None else f"{key}[{index}]"


def read(group: Mapping[str, Any], slot: Slot) -> Any:
    key, index = slot
    return group[key] if index is None else group[key][index]


def write(group: MutableMapping[str, Any], slot: Slot, value: float) -> None:
    key, index = slot
    if index is None:
        group[key] = _updated(group[key], value)
    else:
        items = list(group[key])
        items[index] = _updated(items[index], value)
        group[key] = type(group[key])(items) if isinstance(group[key], (tuple, list)) else tuple(items)


def _updated(current: Any, value: float) -> Any:
    if isinstance(current, Tensor):
        current.fill_(value)
        return current
    return value


def check_slot(owner: str, group: Mapping[str, Any], group_index: int, slot: Slot) -> None:
    """Raise a clear error if the group has nothing at ``slot`` to schedule."""
    key, index = slot
    if key not in group:
        known = ", ".join(k for k in group if k not in ("params", "param_names"))
        raise ValueError(f"{owner}: param group {group_index} has no {key!r} to schedule (it has: {known})")
    if index is not None:
        value = group[key]
        if not isinstance(value, (tuple, list)) or not 0 <= index < len(value):
            raise ValueError(f"{owner}: cannot schedule {slot_name(slot)}: param group {group_index}'s {key} "
                             f"is {value!r}, not a tuple with an entry {index}")
