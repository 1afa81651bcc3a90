"""Freezing parameters, and unfreezing them gradually on a schedule (Howard & Ruder 2018, ULMFiT).

A frozen parameter has ``requires_grad=False``: backward computes no gradient for it (which
also saves the time), and every optimizer step skips a parameter whose gradient is None, so
its weights, its optimizer state and its weight decay stay untouched. Parameters can therefore
be in the optimizer from the start and join the training when they are unfrozen; Adam's bias
correction then counts each parameter's own steps, so a late-joining layer starts cleanly.

Gradual unfreezing trains the new head alone first (the random head's large gradients would
otherwise wreck the pretrained features below it), then unfreezes one more layer, top down,
every ``every`` steps::

    unfreeze = GradualUnfreezing(model, [["classifier"], ["encoder.layer.5"], ["encoder.layer.4"], ...], every=50)
    for batch in data:
        ...; optimizer.step(); scheduler.step(); unfreeze.step()

:func:`top_down_stages` builds such stages for a transformer.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torch import nn

from optimlab.finetune.groups import Depth, matches, transformer_depth


def select(model: nn.Module, prefixes: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    """The named parameters at or under any of ``prefixes`` ("" selects all); each prefix must
    select something (a misspelt name would otherwise freeze nothing, silently)."""
    prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
    named = list(model.named_parameters())
    chosen = []
    for prefix in prefixes:
        if not isinstance(prefix, str):
            raise TypeError(f"select: prefixes must be strings, got {prefix!r}")
        found = [(n, p) for n, p in named if prefix == "" or matches(n, prefix)]
        if not found:
            raise ValueError(f"select: no parameter of {type(model).__name__} is named {prefix!r} or lies under it; "
                             f"top-level names: {sorted({n.split('.')[0] for n, _ in named})}")
        chosen.extend(found)
    return chosen


def freeze(model: nn.Module, prefixes: Iterable[str] = ("",)) -> int:
    """Set ``requires_grad=False`` on the parameters under ``prefixes`` (default: all); returns
    how many tensors were frozen."""
    chosen = select(model, prefixes)
    for _, p in chosen:
        p.requires_grad_(False)
    return len(chosen)


def unfreeze(model: nn.Module, prefixes: Iterable[str] = ("",)) -> int:
    """Set ``requires_grad=True`` on the parameters under ``prefixes`` (default: all)."""
    chosen = select(model, prefixes)
    for _, p in chosen:
        p.requires_grad_(True)
    return len(chosen)


def trainable_count(model: nn.Module) -> int:
    """Number of trainable scalars (elements of parameters with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def top_down_stages(model: nn.Module, head: Sequence[str], depth: Depth = transformer_depth) -> list[list[str]]:
    """Stages for :class:`GradualUnfreezing`: the head (with anything above the numbered layers,
    such as a pooler), then each numbered layer from the top down, then the embeddings.

    Stages are lists of parameter *names* grouped by ``depth``; the names are exact, so each
    stage unfreezes exactly its layer.
    """
    head = [head] if isinstance(head, str) else list(head)
    by_depth: dict[int | None, list[str]] = {}
    first: list[str] = []
    for name, _ in model.named_parameters():
        if any(matches(name, prefix) for prefix in head):
            first.append(name)
        else:
            by_depth.setdefault(depth(name), []).append(name)
    if not first:
        raise ValueError(f"top_down_stages: no parameter lies under the head prefixes {head}")
    stages = [first + by_depth.pop(None, [])]
    stages.extend(by_depth[d] for d in sorted(by_depth, reverse=True))
    return stages


class GradualUnfreezing:
    """Unfreeze ``stages[k]`` at step ``k * every`` (stage 0 at once); everything else starts frozen.

    ``step()`` after each optimizer step (as a scheduler); ``stage`` is the number of stages
    unfrozen so far. As a hook of the lab's training loop (:func:`optimlab.lab.training.loop.train`),
    ``after_step`` calls ``step()``. ``state_dict()`` / ``load_state_dict()`` restore the
    position (and the ``requires_grad`` flags) when a run resumes from a checkpoint.
    """

    def __init__(self, model: nn.Module, stages: Sequence[Iterable[str]], every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"GradualUnfreezing: every must be an int >= 1 (steps between stages), got {every!r}")
        self.model = model
        self.stages = [[s] if isinstance(s, str) else list(s) for s in stages]
        if not self.stages or any(not s for s in self.stages):
            raise ValueError(f"GradualUnfreezing: stages must be a non-empty list of non-empty lists of names, "
                             f"got {stages!r}")
        for stage in self.stages:
            select(model, stage)  # every name must exist
        self.every = int(every)
        self.steps = 0
        freeze(model)
        self.stage = 0
        self._unfreeze_due()

    def _unfreeze_due(self) -> None:
        due = min(len(self.stages), self.steps // self.every + 1)
        while self.stage < due:
            unfreeze(self.model, self.stages[self.stage])
            self.stage += 1

    def step(self) -> None:
        """Count one optimizer step; unfreeze the stages that are due."""
        self.steps += 1
        self._unfreeze_due()

    def after_step(self, loop: Any) -> None:
        self.step()

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        freeze(self.model)
        self.steps = int(state["steps"])
        self.stage = 0
        self._unfreeze_due()
