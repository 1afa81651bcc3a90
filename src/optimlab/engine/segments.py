"""Chains that mix kinds: their elementwise parts on the fused kernel, the rest as torch ops.

Muon is ``chain(EMAMomentum, Orthogonalize, ScaleByAdjustedLearningRate, DecoupledWeightDecay)``:
momentum and weight decay are elementwise, Newton-Schulz is matrix math on the true shape. Such
a chain is cut into its maximal runs of one kind (*segments*). A step then

1. checks the group (as every step does) and advances each parameter's step count once;
2. runs the segments in order, each handing its update ``u`` to the next: an elementwise
   segment is one kernel call over the group (C on the CPU, :mod:`optimlab.engine.fused`;
   Triton on CUDA, :mod:`optimlab.engine.triton`), writing ``u``
   into a buffer the engine keeps per parameter (:data:`~optimlab.engine.trace.DIRECTION`), or
   ``param += u`` if it is the last; any other segment runs its torch ops on each parameter's
   true shape, as the eager path does;
3. the last segment changes the parameter.

The numbers are the eager path's: the same math in the same order, only the elementwise runs
compiled. Groups no kernel can take (complex, unusual layouts, devices without one) and chains
with a group-kind link step on the eager path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.weak import WeakTensorKeyDictionary

from optimlab.core import ELEMENTWISE, GROUP, Chain, Transform, chain
from optimlab.engine import fused, triton
from optimlab.engine.eager import advance_steps, initialize
from optimlab.engine.paths import get_path, path_counts
from optimlab.engine.trace import DIRECTION, DIRECTION_KEY, FINAL
from optimlab.engine.work import GroupStep, plain_hyperparams, transform_hyperparams

_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Segment:
    """A maximal run of links of one kind, as one transform; ``fused``: elementwise."""

    transform: Transform
    fused: bool
    last: bool
    #: The state keys its links keep (for an elementwise segment; the kernel sees only these).
    keys: frozenset[str] = frozenset()


#: chain -> its segments (the same segment objects every step, so their kernels stay cached).
_segments: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: parameter -> {segment index: the buffer its DIRECTION kernel writes ``u`` into}
_buffers: WeakTensorKeyDictionary = WeakTensorKeyDictionary()


def segments_of(transform: Transform) -> list[Segment] | None:
    """The chain's segments, if it mixes elementwise links with tensor ones (else None)."""
    if not isinstance(transform, Chain):
        return None
    found = _segments.get(transform)
    if found is None:
        runs: list[list[Transform]] = []
        for link in transform.transforms:
            if runs and (link.kind == ELEMENTWISE) == (runs[-1][0].kind == ELEMENTWISE):
                runs[-1].append(link)
            else:
                runs.append([link])
        kinds = {link.kind for link in transform.transforms}
        if GROUP in kinds or ELEMENTWISE not in kinds or len(runs) < 2:
            found = []
        else:
            found = [segment(chain(*run), i == len(runs) - 1) for i, run in enumerate(runs)]
        _segments[transform] = found
    return found or None


def segment(transform: Transform, last: bool) -> Segment:
    if transform.kind != ELEMENTWISE:
        return Segment(transform, False, last)
    # Elementwise state is shaped like the parameter or 0-d, whatever the parameter's shape.
    keys = frozenset(transform.init(torch.empty(3, device="meta"))) | frozenset(transform.lazy_state)
    return Segment(transform, True, last, keys | {"step"})


def kernel_path(work: GroupStep) -> str | None:
    """Which kernel the group's elementwise parts take: ``"fused"`` (C, CPU parameters),
    ``"triton"`` (CUDA parameters, or any device when the path is ``"triton"``: its interpreter
    on the CPU), or None (the eager path steps the group): every parameter a plain real float
    tensor, contiguous, with a dense gradient of its dtype and shape, all on one kind of device."""
    devices = set()
    for p, g in zip(work.params, work.grads):
        if not (type(p) in (Tensor, torch.nn.Parameter) and type(g) is Tensor and p.dtype in _FLOATS
                and g.dtype is p.dtype and g.device == p.device and g.layout is torch.strided
                and g.shape == p.shape and p.is_contiguous() and g.is_contiguous()):
            return None
        devices.add(p.device.type)
    path = get_path()
    if devices == {"cpu"} and path in ("auto", "fused"):
        return "fused"
    if (devices == {"cuda"} and triton.chosen(path) or path == "triton") and triton.available():
        return "triton"
    return None


def plan(work: GroupStep) -> Callable[[], None] | None:
    """The step of a checked group in segments, or None if it is not a chain of mixed kinds
    that a kernel can take (the eager path steps it then)."""
    found = segments_of(work.transform)
    if found is None or work.hyperparams.get("differentiable"):
        return None
    kernel = kernel_path(work)
    return None if kernel is None else lambda: run(work, found, kernel)


def run(work: GroupStep, found: list[Segment], kernel: str) -> None:
    hp = plain_hyperparams(work)
    steps = advance_steps(work, traced=False)  # state made where there is none; counts once
    directions = list(work.grads)
    for index, segment in enumerate(found):
        if segment.fused:
            directions = run_fused(work, segment, index, directions, hp, steps, kernel)
        else:
            directions = run_eager(work, segment, range(len(work.params)), directions, hp, steps)
    path_counts["segments"] += len(work.params)


def run_fused(work: GroupStep, segment: Segment, index: int, directions: list[Tensor], hp: dict,
              steps: list[Any], kernel: str) -> list[Tensor]:
    """One elementwise segment on the kernel; the parameters it cannot take run it eagerly."""
    # Each parameter's state as the segment sees it: the keys its links keep (the kernel's
    # arguments), the same tensors; and the buffer it writes its update into.
    keys = segment.keys
    states = [{k: v for k, v in state.items() if k in keys} for state in work.states]
    if not segment.last:
        for p, state in zip(work.params, states):
            state[DIRECTION_KEY] = buffer(p, index)
    part = GroupStep(segment.transform, work.hyperparams, work.params, directions, states, work.names,
                     work.counts_steps, work.owner, form=FINAL if segment.last else DIRECTION)
    if not all(d.dtype is p.dtype and d.shape == p.shape for p, d in zip(part.params, directions)):
        return run_eager(work, segment, range(len(work.params)), directions, hp, steps)
    # (Newton-Schulz hands back the transpose of a transposed matrix: laid out in memory order.)
    part.grads = directions = [d if d.is_contiguous() else d.contiguous() for d in directions]
    if kernel == "triton":
        left = triton.run(part, range(len(part.params)), transform_hyperparams(part), initialize)
        path_counts["triton"] += len(part.params) - len(left)
    else:
        batches, fresh, other = fused.prepare(part)
        left = sorted(other + fresh + fused.run_group(part, transform_hyperparams(part), batches))
    out = directions if segment.last else [state[DIRECTION_KEY] for state in states]
    if left:
        done = run_eager(work, segment, left, [directions[i] for i in left], hp, [steps[i] for i in left])
        for i, u in zip(left, done):
            out[i] = u
    return out


def run_eager(work: GroupStep, segment: Segment, indices: Any, directions: list[Tensor], hp: dict,
              steps: list[Any]) -> list[Tensor]:
    """One segment as torch ops on the parameters at ``indices`` (``directions`` and ``steps``
    in the same order); the last segment adds its update to each parameter."""
    transform = segment.transform
    out = []
    for i, u, step in zip(indices, directions, steps):
        p = work.params[i]
        u = transform.update(u, p, work.states[i], hp, step)
        if segment.last:
            p.add_(u)
        out.append(u)
    return out


def buffer(param: Tensor, index: int) -> Tensor:
    """The engine's buffer for segment ``index``'s update of ``param`` (kept from step to step)."""
    kept = _buffers.get(param)
    if kept is None:
        kept = _buffers[param] = {}
    found = kept.get(index)
    if found is None or found.shape != param.shape or found.dtype is not param.dtype:
        found = kept[index] = torch.empty_like(param, memory_format=torch.contiguous_format)
    return found
