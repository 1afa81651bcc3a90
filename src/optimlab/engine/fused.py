"""Running a parameter group on the fused CPU kernel (:mod:`optimlab.engine.cpu`).

The kernel itself is fast; what costs on many small tensors is Python work per parameter and
per step. This module keeps that small:

* a step sorts the group's parameters into *batches* (one per signature: dtype and state
  layout), *fresh* ones (no state yet) and *the rest* (eager path); everything it checks is
  what the kernel relies on, and anything unusual goes to the rest, where the engine's full
  checks run;
* once a group has stepped entirely on one kernel, the next step re-checks it with a few
  list-wide comparisons (same parameter and state objects, same addresses and shapes,
  contiguous gradients of the right dtype on the CPU) and reuses the pointer array, only
  refreshing the gradients' addresses.

Nothing here changes a tensor except :func:`run_batch`, which calls the kernel.
"""

from __future__ import annotations

import array
import itertools
import operator
import weakref
from typing import Any

import torch

from optimlab.core import Transform
from optimlab.engine import native
from optimlab.engine.cpu import BuildError, Compiled, kernel_for
from optimlab.engine.errors import EagerByDesign, Unsupported
from optimlab.engine.hyper import hp_key, hp_values
from optimlab.engine.paths import path_counts, warn_once

_strided = torch.strided
_float_dtypes = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_step_dtypes = (torch.float32, torch.float64)
_plain = (torch.Tensor, torch.nn.Parameter)
_shape = operator.attrgetter("shape")
_dtype = operator.attrgetter("dtype")
_is_cpu = operator.attrgetter("is_cpu")
_is_contiguous = torch.Tensor.is_contiguous
_numel = torch.Tensor.numel
_data_ptr = torch.Tensor.data_ptr
_values = dict.values


def _tensors(n: int) -> itertools.repeat:
    return itertools.repeat(torch.Tensor, n)


def dense_like(t: torch.Tensor, param: torch.Tensor) -> bool:
    """Whether ``t`` covers one block of memory with the parameter's layout, so that stepping
    both in memory order pairs the right elements (contiguous, or e.g. both channels_last)."""
    if t.is_contiguous() and param.is_contiguous():
        return True
    if t.stride() != param.stride() or t.shape != param.shape:
        return False
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda pair: pair[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


class StateEntry:
    """A parameter's state, checked in full for the kernel: its tensors in the kernel's order
    (:class:`~optimlab.engine.trace.Roles`: parameter-shaped state by key, 0-d state by key, the
    step count) and their addresses; ``sig`` is None if the kernel cannot use it. 0-d state of a
    parameter with elements is per-tensor state (NAdam's ``mu_product``, ASGD's ``eta``), in any
    float dtype; the state of a 0-d parameter is all parameter-shaped."""

    __slots__ = ("state", "keys", "tensors", "pointers", "shape", "sig")

    def __init__(self, state: dict, param: torch.Tensor, counts_steps: bool) -> None:
        self.state = state  # held, so that id(state) stays this dict's while the entry lives
        self.sig = None
        self.shape = param.shape
        dtype = param.dtype
        step_dtype = None
        if not isinstance(state, dict):
            return
        per_tensor = []
        for key, value in state.items():
            if key == "step":
                if not (counts_steps and type(value) is torch.Tensor and value.dim() == 0
                        and value.dtype in _step_dtypes and value.is_cpu):
                    return
                step_dtype = value.dtype
            elif not (type(value) is torch.Tensor and value.is_cpu and value.layout is _strided):
                return
            elif value.dim() == 0 and param.dim() != 0:
                if value.dtype not in _float_dtypes:
                    return
                per_tensor.append((key, value.dtype))
            elif not (value.dtype is dtype and value.shape == self.shape and dense_like(value, param)):
                return
        per_tensor.sort()
        like_param = sorted(k for k in state if k != "step" and (k, state[k].dtype) not in per_tensor)
        self.keys = like_param + [k for k, _ in per_tensor] + (["step"] if step_dtype is not None else [])
        self.tensors = [state[k] for k in self.keys]
        self.pointers = [t.data_ptr() for t in self.tensors]
        self.sig = (dtype, tuple(sorted(state)), step_dtype, tuple(per_tensor))

    def still_valid(self, state: dict, param: torch.Tensor) -> bool:
        if (self.sig is None or len(state) != len(self.tensors) or param.shape != self.shape
                or param.dtype is not self.sig[0]):
            return False
        for key, tensor, pointer in zip(self.keys, self.tensors, self.pointers):
            if state.get(key) is not tensor or tensor.data_ptr() != pointer:
                return False
        return True


class Batch:
    """Parameters of one group that share a signature: one kernel call.

    ``roles[r]``/``pointers[r]``: the r-th state tensor of every parameter and its address.
    ``arrays``, when set, are the ready pointer and size arrays of a steady-state step;
    ``kernel``, kept by a steady batch from step to step: (:func:`hp_key` of the last step's
    hyperparameters, its kernel, its float64 argument array).
    """

    __slots__ = ("indices", "params", "grads", "states", "entries", "roles", "pointers", "arrays", "kernel")

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.params: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.states: list[dict] = []
        self.entries: list[StateEntry] = []
        self.roles: list[list[torch.Tensor]] = []
        self.pointers: list[list[int]] = []
        self.arrays: tuple | None = None
        self.kernel: tuple | None = None

    def finish(self) -> Batch:
        count = len(self.entries[0].tensors) if self.entries else 0
        self.roles = [[e.tensors[r] for e in self.entries] for r in range(count)]
        self.pointers = [[e.pointers[r] for e in self.entries] for r in range(count)]
        return self


class Steady:
    """A group's last all-kernel step, to be confirmed in bulk on the next one.

    Every tensor touched costs a few cache misses once a step has streamed megabytes through
    the caches, and optimizer state is most of the tensors, so the state is confirmed by
    identity: the same tensor objects in the same dicts, or, cheaper still, the same version of
    the optimizer's :class:`~optimlab.engine.state.StateTable` (no state dict changed since the
    last confirmation). Its storages are held here, so the kernel can never write to freed
    memory; the one change this does not see is a state tensor's storage swapped in place
    (``t.set_(...)``, ``t.data = ...``) with nothing else in the group changed, after which the
    kernel keeps updating the old storage.
    """

    __slots__ = ("sig", "batch", "params", "param_pointers", "numels", "dtypes", "values", "storages",
                 "pointer_array", "numel_array", "token", "native_args")

    def __init__(self, sig: tuple, batch: Batch, work: Any) -> None:
        params, states = work.params, work.states
        n = len(params)
        self.sig = sig
        self.batch = batch
        self.params = list(params)
        self.param_pointers = list(map(_data_ptr, params))
        self.numels = list(map(_numel, params))
        self.dtypes = list(map(_dtype, params))
        self.values = list(itertools.chain.from_iterable(map(_values, states)))
        self.storages = [t.untyped_storage() for t in self.values]
        pointers = self.param_pointers + [0] * n
        for addresses in batch.pointers:
            pointers += addresses
        self.pointer_array = array.array("q", pointers)
        self.numel_array = array.array("q", self.numels)
        #: The state token (table, version) under which ``values`` were last confirmed.
        self.token = work.state_token or (None, None)
        #: (pointer array address, size array address, dtype code) for the native helper.
        self.native_args: tuple | None = None
        batch.arrays = None

    def confirm(self, work: Any) -> Batch | None:
        """The batch for this step if the group is as it was, else None (nothing is changed).

        Parameters: the same objects, at the same addresses (``p.data = ...`` moves them), of the
        same sizes, contiguous. Gradients: plain tensors on the CPU, contiguous, of the
        parameters' dtypes (and of their shapes: torch checks that when ``.grad`` is assigned).
        State: the same tensor objects. The native helper (:mod:`optimlab.engine.native`) checks
        the same in one pass, and a little more (the parameters' dtypes and devices, the
        gradients' sizes and layout).
        """
        params, grads = work.params, work.grads
        n = len(params)
        if n != len(self.params):
            return None
        helper = native.helper()
        try:
            if helper is not None:  # the same checks in one pass; writes the gradients' addresses
                if self.native_args is None:
                    self.native_args = (self.pointer_array.buffer_info()[0], self.numel_array.buffer_info()[0],
                                        helper.scalar_type(self.params[0]))
                if not helper.confirm(params, grads, self.params, *self.native_args):
                    return None
            elif not same_tensors(self, params, grads, _is_cpu):
                return None
            else:
                self.pointer_array[n:2 * n] = array.array("q", map(_data_ptr, grads))
            if not same_state(self, work):
                return None
        except (RuntimeError, TypeError):  # a sparse gradient, a state that is not a dict, a tensor
            return None                    # subclass without storage
        batch = self.batch
        batch.params, batch.grads, batch.states = params, grads, work.states
        batch.arrays = (self.pointer_array, self.numel_array, self.params)
        return batch


def same_tensors(steady: Any, params: list, grads: list, on_device: Any) -> bool:
    """A steady group's tensors, confirmed with list-wide passes (each a few microseconds for
    hundreds of tensors): the same parameter objects at ``steady.param_pointers`` with
    ``steady.numels`` elements, contiguous; gradients plain contiguous tensors of
    ``steady.dtypes``, ``on_device`` (raises RuntimeError for a sparse gradient)."""
    return (all(map(operator.is_, params, steady.params))
            and all(map(operator.is_, map(type, grads), _tensors(len(params))))
            and list(map(_data_ptr, params)) == steady.param_pointers
            and list(map(_numel, params)) == steady.numels
            and all(map(_is_contiguous, params))
            and list(map(_dtype, grads)) == steady.dtypes
            and all(map(on_device, grads)) and all(map(_is_contiguous, grads)))


def same_state(steady: Any, work: Any) -> bool:
    """A steady group's state: the same state table version as at ``steady.token``, else the
    same tensor objects as ``steady.values`` (then the token is renewed)."""
    token = work.state_token
    if token is None or token[0] is not steady.token[0] or token[1] != steady.token[1]:
        values = list(itertools.chain.from_iterable(map(_values, work.states)))
        if len(values) != len(steady.values) or not all(map(operator.is_, values, steady.values)):
            return False
        steady.token = token or (None, None)
    return True


class GroupCache:
    """Per group: the full checks of each parameter's state, and the steady-state snapshot.

    Found by the group's first parameter, not by the group dict, which ``load_state_dict``
    replaces: the group's parameters outlive it, and a cache per dict would keep old state.
    """

    def __init__(self, first: torch.Tensor) -> None:
        self.first = first  # held, so that id(first) stays this parameter's while the cache lives
        self.entries: dict[int, StateEntry] = {}
        self.steady: Steady | None = None
        #: The group's last all-Triton step (:class:`optimlab.engine.triton.Steady`), if any.
        self.triton: Any = None


#: transform -> {id(first parameter of a group): GroupCache}; dies with the optimizer that owns the
#: transform.
_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_stateless: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def stateless(transform: Transform) -> bool:
    """Whether the transform keeps no state of its own (plain SGD): its empty state is final."""
    known = _stateless.get(transform)
    if known is None:
        try:
            known = not transform.init(torch.empty(1, device="meta"))
        except Exception:  # noqa: BLE001 - an init that needs data: not known to be stateless
            known = False
        _stateless[transform] = known
    return known


def group_cache(work: Any) -> GroupCache:
    per_transform = _caches.get(work.transform)
    if per_transform is None:
        per_transform = _caches[work.transform] = {}
    group_params = work.hyperparams.get("params") if isinstance(work.hyperparams, dict) else None
    first = group_params[0] if group_params else work.params[0]
    cache = per_transform.get(id(first))
    if cache is None or cache.first is not first:
        cache = per_transform[id(first)] = GroupCache(first)
    return cache


def prepare(work: Any, initialized: bool = False) -> tuple[dict[tuple, Batch], list[int], list[int]]:
    """Sort a group's parameters: kernel batches by signature, fresh ones (no state yet), the rest.

    Never raises and changes nothing: parameters it cannot take go to "the rest", for which the
    engine runs the full checks and the eager path. ``initialized``: the states were just made.
    """
    cache = group_cache(work)
    if cache.steady is not None and not initialized:
        batch = cache.steady.confirm(work)
        if batch is not None:
            return {cache.steady.sig: batch}, [], []
        cache.steady = None
    # Entries for this step's states only: a checkpoint loaded or a parameter dropped must not
    # keep old state tensors alive here.
    entries = cache.entries
    if not initialized:
        cache.entries = {}
    needs_init = not initialized and (work.counts_steps or not stateless(work.transform))
    batches: dict[tuple, Batch] = {}
    fresh: list[int] = []
    other: list[int] = []
    floats = _float_dtypes
    strided = _strided
    for i, (p, g, state) in enumerate(zip(work.params, work.grads, work.states)):
        dtype = p.dtype
        if not (type(p) in _plain and type(g) is torch.Tensor  # subclasses (DTensor, ...) go eager
                and dtype in floats and g.dtype is dtype and p.is_cpu and g.is_cpu and g.layout is strided
                and g.shape == p.shape and (p.is_contiguous() and g.is_contiguous() or dense_like(g, p))):
            other.append(i)
            continue
        if not state and needs_init:
            fresh.append(i)
            continue
        entry = entries.get(id(state))
        if entry is None or not entry.still_valid(state, p):
            entry = StateEntry(state, p, work.counts_steps)
        cache.entries[id(state)] = entry
        if entry.sig is None:
            other.append(i)
            continue
        batch = batches.get(entry.sig)
        if batch is None:
            batch = batches[entry.sig] = Batch()
        batch.indices.append(i)
        batch.params.append(p)
        batch.grads.append(g)
        batch.states.append(state)
        batch.entries.append(entry)
    for batch in batches.values():
        batch.finish()
    if not initialized and not fresh and not other and len(batches) == 1 and all(map(_is_contiguous, work.params)):
        (sig, batch), = batches.items()
        cache.steady = Steady(sig, batch, work)
    return batches, fresh, other


def add_fresh(work: Any, batches: dict[tuple, Batch], fresh: list[int]) -> list[int]:
    """Put parameters whose state was just created into batches; returns those that fit none."""
    sub = type(work)(work.transform, work.hyperparams, [work.params[i] for i in fresh],
                     [work.grads[i] for i in fresh], [work.states[i] for i in fresh],
                     [work.names[i] for i in fresh], work.counts_steps, work.owner, form=work.form)
    more_batches, _, other = prepare(sub, initialized=True)
    for sig, more in more_batches.items():
        batch = batches.get(sig)
        if batch is None:
            batches[sig] = batch = Batch()
        batch.indices = batch.indices + [fresh[i] for i in more.indices]
        batch.params = batch.params + more.params
        batch.grads = batch.grads + more.grads
        batch.states = batch.states + more.states
        batch.roles = [mine + theirs for mine, theirs in itertools.zip_longest(batch.roles, more.roles, fillvalue=[])]
        batch.pointers = [mine + theirs for mine, theirs in
                          itertools.zip_longest(batch.pointers, more.pointers, fillvalue=[])]
        batch.arrays = None
    return [fresh[i] for i in other]


def run_group(work: Any, hyperparams: dict[str, Any], batches: dict[tuple, Batch]) -> list[int]:
    """Step a group's batches, one kernel call each; returns the indices left for the eager path."""
    key = hp_key(hyperparams)
    found: tuple | None = None  # (structure, values), made when first needed
    eager: list[int] = []
    for sig, batch in batches.items():
        memo = batch.kernel
        if key is not None and memo is not None and memo[0] == key:  # a steady batch, same values
            compiled, hp_array = memo[1], memo[2]
        else:
            if found is None:
                try:
                    found = hp_values(hyperparams, key)
                except Unsupported as reason:
                    warn_once(f"optimlab: {work.transform!r} runs on the eager path: {reason}")
                    return [i for batch in batches.values() for i in batch.indices]
            structure, values = found
            compiled = kernel_for(work.transform, hyperparams, structure, sig, batch.states[0], work.counts_steps,
                                  work.form)
            if isinstance(compiled, Exception):
                if isinstance(compiled, BuildError):
                    warn_once(f"optimlab: the fused CPU step is unavailable, using the eager path: {compiled}")
                elif isinstance(compiled, Unsupported) and not isinstance(compiled, EagerByDesign):
                    warn_once(f"optimlab: {work.transform!r} runs on the eager path: {compiled}")
                eager += batch.indices
                continue
            hp_array = array.array("d", values or [0.0])
            batch.kernel = (key, compiled, hp_array) if key is not None else None
        run_batch(compiled, batch, hp_array)
        path_counts["fused"] += len(batch.indices)
    return eager


def run_batch(compiled: Compiled, batch: Batch, hp_array: array.array) -> None:
    """One call of the kernel over a batch: ``p += update`` for each parameter."""
    params = batch.params
    n = len(params)
    if batch.arrays is not None:
        pointer_array, numel_array, params = batch.arrays
    else:
        pointers = list(map(_data_ptr, params))
        pointers += map(_data_ptr, batch.grads)
        for addresses in batch.pointers:
            pointers += addresses
        pointer_array = array.array("q", pointers)
        numel_array = array.array("q", map(_numel, params))
    if len(pointer_array) != len(compiled.roles.names) * n or len(numel_array) != n:
        # never hand the kernel a short array
        raise RuntimeError(f"optimlab fused step: {len(pointer_array)} pointers for {n} parameters "
                           f"and roles {compiled.roles.names}")
    compiled.kernel(n, pointer_array.buffer_info()[0], numel_array.buffer_info()[0], hp_array.buffer_info()[0],
                    torch.get_num_threads())
    # The kernel wrote through raw pointers: bump the parameters' version counters, as an
    # in-place torch op would, so that autograd still refuses a backward through a graph that
    # saved them. (The state tensors' counters are left alone: autograd graphs hold parameters,
    # and touching every state tensor costs as much as the checks above save.)
    torch.autograd.graph.increment_version(params)
    # Hold nothing of this step: gradients must be freed when the user sets them to None.
    batch.grads = batch.params = batch.states = []
    batch.arrays = None
