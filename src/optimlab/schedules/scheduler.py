"""Attach schedules to any torch.optim optimizer through torch's ``LRScheduler`` protocol.

``Scheduler(optimizer, {"lr": cosine(0.1, 1000), "weight_decay": linear(0.0, 0.05, 1000)})``
writes each schedule's value into ``optimizer.param_groups[i][name]``. It is a
``torch.optim.lr_scheduler.LRScheduler`` (``step()``, ``get_last_lr()``, ``last_epoch``,
``base_lrs``, ``optimizer``, ``state_dict()`` / ``load_state_dict()``), so Hugging Face's
Trainer and Lightning accept it as they accept torch's schedulers.

What ``step()`` means: the values for step ``t`` are written when ``last_epoch`` becomes ``t``.
Construction writes step 0's values, so the optimizer's first ``step()`` already uses them;
call ``scheduler.step()`` after each ``optimizer.step()``, and the optimizer's ``k``-th step
(from 0) uses ``schedule(k)``. Values are closed forms of ``last_epoch``, never of the previous
value, so nothing drifts and a checkpoint restores them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from optimlab.schedules.base import Constant, Product, Schedule, stateful_parts
from optimlab.schedules.direct import DirectSchedules
from optimlab.schedules.groups import ALIASES, Slot, check_slot, read, slot_name, write

#: One scheduled value: (param group index, slot, schedule).
Target = tuple[int, Slot, Schedule]


#: Hyperparameters that no optimizer takes below zero: a schedule that would take one there is
#: refused when it gets there (torch.optim checks its values only at construction).
NON_NEGATIVE = frozenset({"lr", "weight_decay", "momentum", "dampening", "eps", "lr_decay", "initial_lr"})


def _plain(value: Any) -> Any:
    """A copy that does not alias the group's value (torch returns tensor lrs cloned)."""
    return value.clone() if isinstance(value, torch.Tensor) else value


class Scheduler(LRScheduler):
    """Schedules for any numeric hyperparameters of any optimizer (torch.optim's or optimlab's).

    Args:
        optimizer: a ``torch.optim.Optimizer``.
        schedules: hyperparameter name -> what to schedule it with:

            * a :class:`~optimlab.schedules.Schedule` (or a number: a constant), for every
              selected group;
            * a list with one entry per selected group (``None``: leave that group alone);
            * for a tuple hyperparameter, a tuple with one entry per element, ``None`` to leave
              it alone: ``{"betas": (cosine(0.95, 1000, 0.9), None)}``; or the names
              ``"beta1"`` / ``"beta2"`` for ``betas[0]`` / ``betas[1]``.
        groups: the indices of the param groups to schedule (default: all).
        relative: if True, each schedule gives a *factor* of the value the group had when the
            scheduler was built (torch's convention: ``lr = base_lr * factor``); if False
            (default) it gives the value itself.

    ``step(metrics)`` also feeds ``metrics`` to every ``reduce_on_plateau`` schedule attached.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedules: Mapping[str, Any],
                 groups: Iterable[int] | None = None, *, relative: bool = False) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Scheduler: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not isinstance(relative, bool):
            raise TypeError(f"Scheduler: relative must be True or False, got {relative!r}")
        self.optimizer = optimizer
        self.relative = relative
        self.targets: list[Target] = resolve_targets(optimizer, schedules, groups)
        self.base_values = [float(read(optimizer.param_groups[g], slot)) for g, slot, _ in self.targets]
        self.base_lrs = [_plain(group.get("lr")) for group in optimizer.param_groups]
        self._check_ranges()
        self._stateful = stateful_parts(s for _, _, s in self.targets)
        self.last_epoch = 0
        self._write()

    # -- the protocol ------------------------------------------------------------------------
    def step(self, metrics: Any = None) -> None:  # type: ignore[override]
        """Advance one step (call after ``optimizer.step()``) and write the new values.

        ``metrics`` (optional) is fed to every ``reduce_on_plateau`` schedule attached first.
        """
        if metrics is not None:
            if not self._stateful:
                raise TypeError(f"Scheduler.step: got metrics={metrics!r}, but no schedule here is fed a metric "
                                "(reduce_on_plateau); call step() without arguments")
            for part in self._stateful:
                part.step(metrics)  # type: ignore[attr-defined]
        self.last_epoch += 1
        self._write()

    def get_last_lr(self) -> list[Any]:
        """Each group's ``lr`` as last written (unscheduled groups: their current lr)."""
        return list(self._last_lr)

    def get_lr(self) -> list[Any]:
        """Each group's ``lr`` for step ``last_epoch``."""
        lrs = [_plain(group.get("lr")) for group in self.optimizer.param_groups]
        for (g, slot, _), value in zip(self.targets, self.values(self.last_epoch)):
            if slot == ("lr", None):
                lrs[g] = value
        return lrs

    def values(self, step: int) -> list[float]:
        """The value of every target at ``step`` (in the order of :attr:`targets`)."""
        if self.relative:
            return [base * s(step) for (_, _, s), base in zip(self.targets, self.base_values)]
        return [s(step) for _, _, s in self.targets]

    def state_dict(self) -> dict[str, Any]:
        """``last_epoch``, the base values, and the state of stateful schedules: plain Python
        values (and tensor lrs), loadable with ``torch.load(..., weights_only=True)``."""
        return {
            "last_epoch": self.last_epoch,
            "relative": self.relative,
            "slots": [[g, slot[0], slot[1]] for g, slot, _ in self.targets],
            "base_values": list(self.base_values),
            "base_lrs": [_plain(v) for v in self.base_lrs],
            "stateful": [part.state_dict() for part in self._stateful],  # type: ignore[attr-defined]
            "_last_lr": [_plain(v) for v in self._last_lr],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` and write the values it stands for into the groups
        (so it does not matter whether the optimizer's state was loaded before or after)."""
        keys = {"last_epoch", "relative", "slots", "base_values", "base_lrs", "stateful", "_last_lr"}
        if not isinstance(state_dict, Mapping) or not keys <= set(state_dict):
            raise ValueError(f"Scheduler.load_state_dict: expected a dict with keys {sorted(keys)} "
                             f"(from Scheduler.state_dict()), got {type(state_dict).__name__}")
        mine = [[g, slot[0], slot[1]] for g, slot, _ in self.targets]
        saved = [list(s) for s in state_dict["slots"]]
        if saved != mine or state_dict["relative"] != self.relative:
            raise ValueError(f"Scheduler.load_state_dict: the state dict schedules {saved} "
                             f"(relative={state_dict['relative']}), this scheduler {mine} (relative={self.relative})")
        if len(state_dict["stateful"]) != len(self._stateful):
            raise ValueError(f"Scheduler.load_state_dict: the state dict holds {len(state_dict['stateful'])} "
                             f"stateful schedule state(s), this scheduler has {len(self._stateful)}")
        for part, saved_state in zip(self._stateful, state_dict["stateful"]):
            part.load_state_dict(saved_state)  # type: ignore[attr-defined]
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_values = [float(v) for v in state_dict["base_values"]]
        self.base_lrs = [_plain(v) for v in state_dict["base_lrs"]]
        self._write()

    # -- internals ---------------------------------------------------------------------------
    def _write(self) -> None:
        """Write every target's value for ``last_epoch``, all checked before any is written."""
        groups = self.optimizer.param_groups
        values = self.values(self.last_epoch)
        for (g, slot, schedule), value in zip(self.targets, values):
            low = 0.0 if slot[0] in NON_NEGATIVE else -math.inf
            if not low <= value < math.inf:
                expected = "a finite number >= 0" if low == 0.0 else "a finite number"
                raise ValueError(f"Scheduler: param group {g}'s {slot_name(slot)} at step {self.last_epoch} would be "
                                 f"{value!r} ({schedule!r}): it must be {expected}")
        for (g, slot, _), value in zip(self.targets, values):
            write(groups[g], slot, value)
        self._last_lr = [_plain(group.get("lr")) for group in groups]

    def _check_ranges(self) -> None:
        """Refuse, before training, a schedule whose range an optimlab optimizer's checks reject."""
        checks = getattr(self.optimizer, "checks", None)
        if not isinstance(checks, Mapping):
            return  # torch.optim optimizers check nothing after construction
        owner = getattr(self.optimizer, "owner", type(self.optimizer).__name__)
        for (g, (key, index), schedule), base in zip(self.targets, self.base_values):
            if key not in checks:
                continue
            value: Any = Product((schedule, Constant(base))) if self.relative else schedule
            if index is not None:
                items = list(self.optimizer.param_groups[g][key])
                items[index] = value
                value = tuple(items)
            checks[key](owner, key, value)

    def __repr__(self) -> str:
        lines = [f"  group {g} {slot_name(slot)}: {s!r}" for g, slot, s in self.targets]
        kind = ", relative" if self.relative else ""
        return f"Scheduler(step {self.last_epoch}{kind}\n" + "\n".join(lines) + "\n)"


def resolve_targets(optimizer: torch.optim.Optimizer, schedules: Mapping[str, Any],
                    groups: Iterable[int] | None) -> list[Target]:
    """Turn the ``schedules`` argument into a checked list of (group, slot, schedule)."""
    owner = "Scheduler"
    if not isinstance(schedules, Mapping) or not schedules:
        raise TypeError(f"{owner}: schedules must be a non-empty dict of hyperparameter name -> schedule, "
                        f"got {schedules!r}")
    count = len(optimizer.param_groups)
    if groups is None:
        selected = list(range(count))
    else:
        selected = list(groups)
        for g in selected:
            if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < count:
                raise ValueError(f"{owner}: groups must hold param group indices in [0, {count}), got {g!r}")
        if len(set(selected)) != len(selected) or not selected:
            raise ValueError(f"{owner}: groups must be distinct param group indices, got {selected!r}")
    direct = getattr(optimizer, "schedules", None)
    targets: list[Target] = []
    for name, spec in schedules.items():
        if not isinstance(name, str):
            raise TypeError(f"{owner}: hyperparameter names must be strings, got {name!r}")
        base_slot: Slot = ALIASES.get(name, (name, None))
        if isinstance(spec, list):
            if len(spec) != len(selected):
                raise ValueError(f"{owner}: {name!r} is a list of {len(spec)} schedule(s); a list needs one "
                                 f"entry per scheduled param group ({len(selected)})")
            per_group = spec
        else:
            per_group = [spec] * len(selected)
        for g, item in zip(selected, per_group):
            for slot, schedule in _expand(name, base_slot, item):
                check_slot(owner, optimizer.param_groups[g], g, slot)
                if any(t[0] == g and t[1] == slot for t in targets):
                    raise ValueError(f"{owner}: param group {g}'s {slot_name(slot)} is given two schedules")
                if isinstance(direct, DirectSchedules) and direct.scheduled(g, slot) is not None:
                    raise ValueError(f"{owner}: param group {g}'s {slot_name(slot)} already follows "
                                     f"{direct.scheduled(g, slot)!r}, given to the optimizer: schedule each "
                                     "hyperparameter in one place")
                targets.append((g, slot, schedule))
    return targets


def _expand(name: str, slot: Slot, item: Any) -> list[tuple[Slot, Schedule]]:
    if item is None:
        return []
    if isinstance(item, tuple):
        if slot[1] is not None:
            raise TypeError(f"Scheduler: {name!r} is one entry of a tuple; give it a schedule, got {item!r}")
        return [((slot[0], i), _schedule(f"{name}[{i}]", x)) for i, x in enumerate(item) if x is not None]
    return [(slot, _schedule(name, item))]


def _schedule(name: str, item: Any) -> Schedule:
    if isinstance(item, Schedule):
        return item
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        try:
            return Constant(item)
        except ValueError as error:
            raise ValueError(f"Scheduler: {name!r}: {error}") from None
    raise TypeError(f"Scheduler: {name!r} must be a Schedule, a number, None, a tuple (for tuple "
                    f"hyperparameters) or a list (one per param group), got {type(item).__name__} {item!r}")
