"""Optimizer state that counts its own changes, so a step can tell in O(1) that nothing changed.

A steady step of the fused path (:mod:`optimlab.engine.fused`) needs each parameter's state
dict, and needs to know that the dict still holds the tensors the kernel was set up with.
Asking costs per parameter and step: ``state[p]`` calls ``Tensor.__hash__`` (Python code), and
reading a dict touches memory that the previous step has long evicted from the caches. So the
facade keeps its ``state`` as a :class:`StateTable`: torch.optim's ``defaultdict(dict)`` in
every way users see, whose every change (an entry added, replaced or removed, or anything
written into a state dict it made) bumps :attr:`StateTable.version`. While the version is the
one a step saw, the next step can reuse that step's lookups and confirmations.

What is not counted, so still confirmed by the fast paths or documented: a state dict that the
table did not make (``opt.state[p] = {...}``: counted as a change of the table, but writes into
that dict later are not), and tensors changed in place (their values are the kernel's input, not
its setup; a storage swapped with ``t.set_(...)`` is the documented exception).
"""

from __future__ import annotations

import collections
import operator
from typing import Any

from torch import Tensor


class _Counting:
    """The mutating methods of ``dict``, each calling :meth:`_changed` first."""

    __slots__ = ()

    def _changed(self) -> None:
        raise NotImplementedError

    def __setitem__(self, key: Any, value: Any) -> None:
        self._changed()
        super().__setitem__(key, value)  # type: ignore[misc]

    def __delitem__(self, key: Any) -> None:
        self._changed()
        super().__delitem__(key)  # type: ignore[misc]

    def __ior__(self, other: Any) -> Any:
        self._changed()
        return super().__ior__(other)  # type: ignore[misc]

    def clear(self) -> None:
        self._changed()
        super().clear()  # type: ignore[misc]

    def pop(self, *args: Any) -> Any:
        self._changed()
        return super().pop(*args)  # type: ignore[misc]

    def popitem(self) -> Any:
        self._changed()
        return super().popitem()  # type: ignore[misc]

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._changed()
        return super().setdefault(key, default)  # type: ignore[misc]

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._changed()
        super().update(*args, **kwargs)  # type: ignore[misc]


class StateDict(_Counting, dict):
    """One parameter's state, made by a :class:`StateTable`: a dict whose changes count as
    changes of the table."""

    __slots__ = ("table",)

    def __init__(self, table: StateTable | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.table = table

    def _changed(self) -> None:
        table = self.table
        if table is not None:
            table.version += 1

    def __reduce__(self) -> Any:
        # Pickled and copied as a plain dict: checkpoints never refer to this class, and a
        # table that is unpickled makes its dicts counted again (:func:`adopt`).
        return dict, (dict(self),)


class StateTable(_Counting, collections.defaultdict):
    """An optimizer's ``state`` (parameter -> state dict), as torch.optim keeps it, counting
    changes in :attr:`version`. A missing parameter gets a fresh :class:`StateDict` (the
    ``default_factory`` stays ``dict``, as torch.optim's, and is not called)."""

    def __init__(self, default_factory: Any = dict, *args: Any, **kwargs: Any) -> None:
        super().__init__(default_factory, *args, **kwargs)
        #: Bumped by every change of an entry and of every state dict this table made.
        self.version = 0
        #: id(parameter list) -> (version, the parameters, their states, all counted here).
        self._answers: dict[int, tuple[int, list[Tensor], list[Any], bool]] = {}

    def _changed(self) -> None:
        self.version += 1

    def __missing__(self, key: Any) -> Any:
        value = self[key] = StateDict(self)
        return value

    def __reduce__(self) -> Any:
        return adopt, (list(self.items()), self.default_factory)

    def states_of(self, params: list[Tensor]) -> tuple[list[Any], bool]:
        """``[self[p] for p in params]`` (a fresh state dict for a parameter new here, as the
        defaultdict makes one), and whether all of them are counted by this table. The same
        answer as last time for the same parameters while :attr:`version` has not changed."""
        answer = self._answers.get(id(params))
        if (answer is not None and answer[0] == self.version and len(answer[1]) == len(params)
                and all(map(operator.is_, params, answer[1]))):
            return answer[2], answer[3]
        states = list(map(self.__getitem__, params))
        counted = all(type(s) is StateDict and s.table is self for s in states)
        if len(self._answers) > 64:  # answers for parameter lists no longer stepped
            self._answers.clear()
        self._answers[id(params)] = (self.version, list(params), states, counted)
        return states, counted


def adopt(items: Any, default_factory: Any = dict) -> StateTable:
    """A table holding ``items`` (a mapping or (key, value) pairs), its plain dict values made
    counted state dicts: for state that nothing else refers to yet (just loaded or unpickled)."""
    table = StateTable(default_factory)
    for key, value in (items.items() if hasattr(items, "items") else items):
        dict.__setitem__(table, key, StateDict(table, value) if type(value) is dict else value)
    return table
