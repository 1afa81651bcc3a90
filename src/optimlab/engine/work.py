"""A parameter group's share of a step: what to run, on which tensors, with which hyperparameters."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from optimlab.core import State, Transform
from optimlab.engine.state import StateTable


@dataclass
class GroupStep:
    """One parameter group's share of a step: only the parameters that have a gradient."""

    transform: Transform
    hyperparams: Mapping[str, Any]
    params: list[Tensor]
    grads: list[Tensor]
    states: list[State]
    #: Names for messages (a list, or :class:`LazyNames`, which makes them only when read).
    names: Sequence[str]
    #: Keep torch.optim's per-parameter ``state['step']`` and pass the count to the transform.
    counts_steps: bool
    owner: str = "optimizer"
    #: ``(state table, its version)`` when every state dict here is counted by that table
    #: (:mod:`optimlab.engine.state`): the same token on a later step means no state changed.
    state_token: tuple | None = None
    #: What a kernel does with the update: ``"step"`` (``param += u``, counts advanced in the
    #: kernel), or a part of a chain of mixed kinds (:data:`optimlab.engine.trace.DIRECTION`, ...).
    form: str = "step"


class LazyNames(Sequence[str]):
    """Parameter names for error messages, made only when one is read (a step makes none)."""

    def __init__(self, positions: Sequence[int], name_of: Callable[[int], str]) -> None:
        self.positions = positions
        self.name_of = name_of

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.name_of(i) for i in self.positions[index]]
        return self.name_of(self.positions[index])


_grad = operator.attrgetter("grad")


def collect(transform: Transform, group: Mapping[str, Any], state: Mapping[Tensor, State], counts_steps: bool,
            owner: str, name_of: Callable[[int], str]) -> GroupStep:
    """A group's share of a step: the parameters that have a gradient (the others are skipped,
    and their step counts do not advance), with their gradients and states."""
    every = group["params"]
    grads = list(map(_grad, every))
    if not any(map(operator.is_, grads, itertools.repeat(None))):  # the usual case: all of them
        if type(state) is StateTable:
            states, counted = state.states_of(every)
            # (table, version): while both are the same, no state dict of this group changed.
            token = (state, state.version) if counted else None
            return GroupStep(transform, group, list(every), grads, states,
                             LazyNames(range(len(every)), name_of), counts_steps, owner, token)
        states = list(map(state.__getitem__, every))
        return GroupStep(transform, group, list(every), grads, states, LazyNames(range(len(every)), name_of),
                         counts_steps, owner)
    params: list[Tensor] = []
    kept: list[Tensor] = []
    states = []
    positions: list[int] = []
    for i, (p, g) in enumerate(zip(every, grads)):
        if g is not None:
            params.append(p)
            kept.append(g)
            states.append(state[p])
            positions.append(i)
    return GroupStep(transform, group, params, kept, states, LazyNames(positions, name_of), counts_steps, owner)


def collect_plain(transform: Transform, group: Mapping[str, Any], state: Mapping[Tensor, State], counts_steps: bool,
                  owner: str, name_of: Callable[[int], str]) -> GroupStep:
    """:func:`collect` in plain loops, for a step that ``torch.compile`` records: no shortcut
    that dynamo cannot follow (``operator.attrgetter``, the state table's answer cache)."""
    params, grads, states, positions = [], [], [], []
    for i, p in enumerate(group["params"]):
        if p.grad is not None:
            params.append(p)
            grads.append(p.grad)
            states.append(state[p])
            positions.append(i)
    return GroupStep(transform, group, params, grads, states, LazyNames(positions, name_of), counts_steps, owner)


def transform_hyperparams(work: GroupStep) -> dict[str, Any]:
    """The group's values of the hyperparameters its transform reads."""
    return {k: work.hyperparams[k] for k in work.transform.hyperparams if k in work.hyperparams}


def subset(work: GroupStep, indices: Sequence[int]) -> GroupStep:
    """The same group step restricted to some of its parameters."""
    pick = lambda items: [items[i] for i in indices]  # noqa: E731
    return GroupStep(work.transform, work.hyperparams, pick(work.params), pick(work.grads), pick(work.states),
                     pick(work.names), work.counts_steps, work.owner, form=work.form)


def plain_hyperparams(work: GroupStep) -> dict[str, Any]:
    """The group's hyperparameters as Python numbers (0-d tensors read once per step)."""
    def plain(value: Any) -> Any:
        if isinstance(value, Tensor) and value.numel() == 1:
            return value.item()
        if isinstance(value, tuple):
            return tuple(plain(v) for v in value)
        return value

    return {k: plain(work.hyperparams[k]) for k in work.transform.hyperparams if k in work.hyperparams}


def autograd_hyperparams(work: GroupStep) -> dict[str, Any]:
    """The group's hyperparameters as a step recorded by autograd reads them: tensors stay
    tensors (one-element ones made 0-d, as torch.optim squeezes them), so that the new
    parameters are functions of them."""
    def kept(value: Any) -> Any:
        if isinstance(value, Tensor) and value.numel() == 1:
            return value.reshape(())
        if isinstance(value, tuple):
            return tuple(kept(v) for v in value)
        return value

    return {k: kept(work.hyperparams[k]) for k in work.transform.hyperparams if k in work.hyperparams}
