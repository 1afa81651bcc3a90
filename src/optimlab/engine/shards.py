"""Distributed tensors (FSDP2's ``fully_shard``, ``torch.distributed.tensor``) on the fast paths.

An optimizer step is elementwise per element of each parameter, so a group of DTensor
parameters steps exactly as the group of their local shards does: each rank updates the
elements it holds, with state sharded alike. :func:`local_work` makes that group of local
tensors (the same tensor objects on every step, so the fast paths' steady checks hold), and
:func:`keep_new_state` puts state that the math created on the shards back as DTensors laid out
like their parameter. Only elementwise transforms take this way (the engine sends the others
to the eager path, where torch's DTensor operations see the whole tensor): a norm or a
matrix product over a shard is not the one over the parameter.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from optimlab.engine.work import GroupStep

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch built without distributed support
    DTensor = None  # type: ignore[assignment,misc]


def has_shards(work: GroupStep) -> bool:
    return DTensor is not None and any(isinstance(p, DTensor) for p in work.params)


def local_work(work: GroupStep) -> GroupStep | None:
    """The group as its local shards, or None when that would not be the same step: a parameter
    that is not a DTensor, or a gradient or state tensor laid out otherwise than its parameter."""
    params, grads, states = [], [], []
    for p, g, state in zip(work.params, work.grads, work.states):
        if not (isinstance(p, DTensor) and isinstance(g, DTensor) and same_layout(g, p)):
            return None
        local_state = {}
        for key, value in state.items():
            if isinstance(value, DTensor):
                if not same_layout(value, p):
                    return None
                value = value._local_tensor
            local_state[key] = value
        params.append(p._local_tensor)
        grads.append(g._local_tensor)
        states.append(local_state)
    return GroupStep(work.transform, work.hyperparams, params, grads, states, work.names, work.counts_steps,
                     work.owner)


def same_layout(t: Any, param: Any) -> bool:
    return t.device_mesh == param.device_mesh and t.placements == param.placements and t.shape == param.shape


def keep_new_state(local: GroupStep, work: GroupStep) -> None:
    """State the step created on the shards (a fresh parameter's, or a momentum buffer made on
    its first step), kept in the parameters' own state: as a DTensor laid out like the parameter
    where it has the parameter's local shape, as it is otherwise (a step count)."""
    for p, local_p, local_state, state in zip(work.params, local.params, local.states, work.states):
        for key, value in local_state.items():
            if key in state:
                continue
            if isinstance(value, Tensor) and value.dim() and value.shape == local_p.shape:
                value = DTensor.from_local(value, p.device_mesh, p.placements, run_check=False, shape=p.shape,
                                           stride=p.stride())
            state[key] = value
