"""Schedules given to an optimlab optimizer in place of numbers: ``optimlab.SGD(params, lr=cosine(0.1, 1000))``.

The optimizer keeps them here, *beside* its ``param_groups``, never inside: the groups always
hold the plain number the schedule gives for the coming step, so torch schedulers, Hugging Face,
Lightning and ``state_dict`` see the groups they always see. Before each step the optimizer
writes ``group[name] = schedule(t)``, ``t`` counting its own steps from 0 (and after it, the
value for ``t + 1``), so there is no call order to get wrong. ``t`` and the state of stateful schedules travel in the optimizer's
``state_dict()`` under the extra key ``"schedules"`` (torch.optim ignores it).

A scheduled value that something else changes between steps (a torch.optim.lr_scheduler
attached to the same ``lr``, a hand edit) is an error at the next step: each hyperparameter
is scheduled in one place. To change the schedule itself, assign a new one into the group
(``optimizer.param_groups[0]["lr"] = constant(1e-4)``): the next step adopts it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import torch

from optimlab.schedules.base import Schedule, stateful_parts
from optimlab.schedules.groups import Slot, read, slot_name, write

#: A check as optimlab.checks defines it: (owner, argument name, value) -> None or raise.
Check = Any


def found(group: Mapping[str, Any]) -> dict[Slot, Schedule]:
    """The schedules in a group: top-level values, and entries of tuple values (``betas``)."""
    slots: dict[Slot, Schedule] = {}
    for key, value in group.items():
        if key in ("params", "param_names"):
            continue
        if isinstance(value, Schedule):
            slots[(key, None)] = value
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if isinstance(item, Schedule):
                    slots[(key, i)] = item
    return slots


class DirectSchedules:
    """The schedules of an optimizer's groups, its step count ``t``, and the values last written."""

    def __init__(self) -> None:
        #: The optimizer's steps so far: the next step uses ``schedule(t)``.
        self.t = 0
        self.groups: list[dict[Slot, Schedule]] = []
        self.written: list[dict[Slot, float]] = []
        #: Steps recorded by torch.compile, not yet in ``t`` (see :meth:`count_compiled_step`).
        self.compiled_steps = torch.zeros((), dtype=torch.int64)
        self.unsettled = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("compiled_steps", torch.zeros((), dtype=torch.int64))
        self.__dict__.setdefault("unsettled", False)

    def count_compiled_step(self) -> None:
        """Count a step that torch.compile records, when no schedule needs ``t`` in it: in a 0-d
        tensor that the graph adds to, never in ``t`` itself, which the graph would be guarded
        on (and recompiled for on every step). :meth:`settle` moves the count into ``t``."""
        self.compiled_steps.add_(1)
        self.unsettled = True

    def settle(self) -> None:
        """Steps counted by compiled steps, added to ``t`` (outside any compiled graph)."""
        if self.unsettled:
            self.t += int(self.compiled_steps.item())
            self.compiled_steps.zero_()
            self.unsettled = False

    def __bool__(self) -> bool:
        return any(self.groups)

    def scheduled(self, group_index: int, slot: Slot) -> Schedule | None:
        if group_index >= len(self.groups):
            return None
        return self.groups[group_index].get(slot)

    def stateful(self) -> list[Schedule]:
        return stateful_parts(s for slots in self.groups for s in slots.values())

    # -- groups coming in --------------------------------------------------------------------
    def check(self, checks: Mapping[str, Check], owner: str, group: Mapping[str, Any]) -> None:
        """Check each scheduled entry with the optimizer's check for its key (checks accept
        schedules: they check the schedule's range where it is known)."""
        for key in dict.fromkeys(key for key, _ in found(group)):
            if key in checks:
                checks[key](owner, key, group[key])

    def resolved(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``group`` with each schedule replaced by its value at step ``t``."""
        plain = dict(group)
        for slot, schedule in found(group).items():
            write(plain, slot, schedule(self.t))
        return plain

    def take(self, group: MutableMapping[str, Any]) -> None:
        """Move a new group's schedules out of it, leaving their values at step ``t`` in their place."""
        slots = found(group)
        for slot, schedule in slots.items():
            write(group, slot, schedule(self.t))
        self.groups.append(slots)
        self.written.append({slot: float(read(group, slot)) for slot in slots})

    def truncate(self, count: int) -> None:
        """Forget the schedules of groups from ``count`` on (a group that failed its checks)."""
        del self.groups[count:], self.written[count:]

    # -- steps -------------------------------------------------------------------------------
    def apply(self, param_groups: Iterable[MutableMapping[str, Any]], owner: str) -> None:
        """Write ``schedule(t)`` into the groups (before a step), after checking that nothing
        else changed a scheduled value since the last write.

        A schedule assigned into a group since the last step (``group["lr"] = cosine(...)``)
        is adopted: it replaces whatever scheduled that entry before.
        """
        self.settle()
        pairs = list(zip(param_groups, self.groups, self.written))
        for index, (group, slots, written) in enumerate(pairs):
            for slot, schedule in found(group).items():
                slots[slot] = schedule
                written.pop(slot, None)
            for slot, schedule in slots.items():
                if slot not in written:
                    continue
                current = float(read(group, slot))
                if current != written[slot]:
                    raise RuntimeError(
                        f"{owner}: param group {index}'s {slot_name(slot)} follows {schedule!r}, given to the "
                        f"optimizer, but something else changed it from {written[slot]!r} to {current!r} (a "
                        "torch.optim.lr_scheduler on the same value?): schedule each hyperparameter in one "
                        "place, either in the optimizer or in a scheduler")
        self._write(pairs)

    def advance(self, param_groups: Iterable[MutableMapping[str, Any]]) -> None:
        """After a step: count it, and write the values for the next one, so ``param_groups``
        always show what the coming step will use (as after a scheduler's ``step()``)."""
        self.settle()
        self.t += 1
        self._write(list(zip(param_groups, self.groups, self.written)))

    def _write(self, pairs: list[tuple[MutableMapping[str, Any], dict[Slot, Schedule], dict[Slot, float]]]) -> None:
        for group, slots, written in pairs:
            for slot, schedule in slots.items():
                write(group, slot, schedule(self.t))
                written[slot] = float(read(group, slot))

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.settle()
        return {"t": self.t, "stateful": [s.state_dict() for s in self.stateful()]}  # type: ignore[attr-defined]

    def checked_state_dict(self, state: Any, owner: str) -> dict[str, Any] | None:
        """``state`` (from :meth:`state_dict`, or None) checked against these schedules."""
        if state is None:
            return None
        where = f"{owner}.load_state_dict: state_dict['schedules']"
        if not isinstance(state, Mapping) or set(state) != {"t", "stateful"}:
            raise ValueError(f"{where} must be a dict with keys 't' and 'stateful', got {state!r}")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"{where}['t'] must be a step count >= 0, got {t!r}")
        parts = self.stateful()
        if not isinstance(state["stateful"], list) or len(state["stateful"]) != len(parts):
            raise ValueError(f"{where} holds the state of {len(state['stateful'])} stateful schedule(s), this "
                             f"optimizer has {len(parts)}: {parts!r}")
        for part, saved in zip(parts, state["stateful"]):
            copy.deepcopy(part).load_state_dict(saved)  # type: ignore[attr-defined]  # raises if it does not fit
        return dict(state)

    def load(self, state: Mapping[str, Any] | None, param_groups: Iterable[Mapping[str, Any]]) -> None:
        """Restore ``t`` and the stateful schedules (if ``state`` is not None) and take the loaded
        groups' values as the last written ones. Without ``state`` the count ``t`` is kept."""
        if state is not None:
            self.settle()
            self.t = state["t"]
            for part, saved in zip(self.stateful(), state["stateful"]):
                part.load_state_dict(saved)  # type: ignore[attr-defined]
        for group, slots, written in zip(param_groups, self.groups, self.written):
            for slot in slots:
                written[slot] = float(read(group, slot))
