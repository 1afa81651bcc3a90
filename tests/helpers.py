"""Building blocks shared by the test files: parameters, gradient sequences, stepping, errors.

Relative error, everywhere in this suite, is measured per tensor as::

    rel_error(a, b) = max|a - b| / max(scale, tiny),   scale = max|b|

with ``b`` the reference (torch.optim or the float64 reference), moduli of complex
differences, and ``tiny`` the smallest normal float64 (an all-zero ``b`` asks for exact zeros).
When ``b`` is the end of a run, ``scale`` is the largest ``max|b|`` over the *whole run*
(:class:`PathScale`): rounding errors of a sum of T updates are bounded by ~T * roundoff *
the largest partial sum, so a parameter that wandered to 3 and came back to 0.01 carries an
error ~roundoff * 3, which only the run's scale measures fairly.
"""

from __future__ import annotations

import collections
import copy
import inspect
import io
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import optimlab
from optimlab.optimizers.registry import ENTRIES, REGISTRY, Entry

TINY = float(np.finfo(np.float64).tiny)

#: Layouts of a parameter tensor: how its memory is laid out relative to its shape.
LAYOUTS = ("contiguous", "transposed", "strided")


def twins(name: str) -> tuple[type, type]:
    """``(optimlab.<name>, torch.optim.<name>)``."""
    return getattr(optimlab, name), getattr(torch.optim, name)


#: The options every optimlab optimizer takes beyond its torch twin's, each a keyword-only flag
#: that is off by default (docs/reliability.md): what the comparisons with torch set aside.
EXTRA_OPTIONS = {"check_finite": False}
#: Keyword-only options one optimizer has beyond its torch twin's, with their defaults (which
#: keep torch's behaviour): they come before EXTRA_OPTIONS in its signature.
OWN_OPTIONS = {"Muon": {"ns_dtype": None}}


def described_signature(cls: type) -> list[tuple[str, Any, Any]]:
    """``(name, kind, default)`` of each of ``cls``'s constructor arguments."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()]


def expected_signature(twin: type) -> list[tuple[str, Any, Any]]:
    """What an optimlab optimizer's :func:`described_signature` is: its torch ``twin``'s, then
    :data:`EXTRA_OPTIONS` (keyword-only)."""
    options = {**OWN_OPTIONS.get(twin.__qualname__.split(".")[0], {}), **EXTRA_OPTIONS}
    extras = [(key, inspect.Parameter.KEYWORD_ONLY, default) for key, default in options.items()]
    return described_signature(twin) + extras


def without_extra_options(group: dict[str, Any]) -> dict[str, Any]:
    """``group`` (or ``defaults``) without :data:`EXTRA_OPTIONS`, each checked to be at its default."""
    extra = {**EXTRA_OPTIONS, **{k: v for own in OWN_OPTIONS.values() for k, v in own.items()}}
    for key, default in extra.items():
        assert group.get(key) == default, (key, group.get(key))
    return {key: value for key, value in group.items() if key not in extra}


def repr_without_extra_options(optimizer: torch.optim.Optimizer) -> str:
    """``repr(optimizer)`` without the lines of :data:`EXTRA_OPTIONS` (torch's repr: one line per option)."""
    extra = {*EXTRA_OPTIONS, *(k for own in OWN_OPTIONS.values() for k in own)}
    return "\n".join(line for line in repr(optimizer).splitlines() if line.split(":")[0].strip() not in extra)


# -- the registry, as the tests use it --------------------------------------------------------
def names(where: Callable[[Entry], bool] = lambda entry: True) -> list[str]:
    """The registry's optimizers (in its order) for which ``where(entry)`` holds."""
    return [entry.name for entry in ENTRIES if where(entry)]


def takes(name: str, option: str) -> bool:
    """Whether optimizer ``name``'s constructor has the argument ``option`` (e.g. ``maximize``)."""
    return option in inspect.signature(REGISTRY[name].cls).parameters


def config_cases(tiered: bool = False) -> list[Any]:
    """``pytest.param(name, index)`` for every configuration of every registry entry; ``tiered``:
    each entry's richest configuration (:func:`rich_config`) in the quick tier, the others marked
    ``slow``."""
    def marks(entry: Entry, index: int) -> Any:
        richest = max(range(len(entry.configs)), key=lambda i: len(entry.configs[i]))
        return () if not tiered or index == richest else pytest.mark.slow
    return [pytest.param(entry.name, index, id=f"{entry.name}-{index}", marks=marks(entry, index))
            for entry in ENTRIES for index in range(len(entry.configs))]


def rich_config(name: str) -> dict[str, Any]:
    """The registry configuration of ``name`` that sets the most options (the first of those):
    the tests that run one configuration per optimizer run this one, so that it keeps state."""
    return dict(max(REGISTRY[name].configs, key=len))


def default_lr(cls: type) -> Any:
    return inspect.signature(cls).parameters["lr"].default


def lr_of(name: str, config: dict[str, Any]) -> float:
    """The learning rate ``config`` runs ``name`` at (its own or the constructor's default), as a float."""
    return float(config.get("lr", default_lr(REGISTRY[name].cls)))


def fit_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` made one that optimizer ``name`` and its torch twin take: trailing dimensions of 2
    added up to its ``min_dim`` (SparseAdam: a scalar becomes a vector of 2), and for an optimizer
    of matrices (``min_dim`` 2: Muon, whose torch twin takes nothing else) the dimensions beyond
    the second merged into it (a vector of 4 becomes 4 x 2, 2 x 3 x 4 becomes 2 x 12; optimlab's
    N-d parameters, beyond torch's, are tested in tests/test_muon.py)."""
    shape, dims = tuple(shape), REGISTRY[name].min_dim
    if len(shape) < dims:
        return shape + (2,) * (dims - len(shape))
    if dims >= 2 and len(shape) > dims:
        return shape[:dims - 1] + (math.prod(shape[dims - 1:]),)
    return shape


def fit_specs(name: str, specs: Iterable[tuple[Sequence[int], str]]) -> list[tuple[tuple[int, ...], str]]:
    """``(shape, layout)`` specs with every shape fitted to the optimizer (:func:`fit_shape`)."""
    return [(fit_shape(name, shape), layout) for shape, layout in specs]


def dtypes_for(name: str, *dtypes: torch.dtype) -> list[torch.dtype]:
    """``dtypes``, and their complex counterparts where optimizer ``name`` takes complex parameters."""
    complex_ones = [d.to_complex() for d in dtypes] if REGISTRY[name].complex_params else []
    return [*dtypes, *complex_ones]


def entry_of(optimizer: torch.optim.Optimizer) -> Entry | None:
    """The registry entry of ``optimizer`` (optimlab's, or its torch twin), if it has one."""
    return REGISTRY.get(type(optimizer).__name__)


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` (optimlab's or its torch twin) steps only with a closure (L-BFGS)."""
    entry = entry_of(optimizer)
    return entry is not None and entry.needs_closure


def as_fed(optimizer: torch.optim.Optimizer, grads: Sequence[Tensor | None]) -> list[Tensor | None]:
    """``grads`` as ``optimizer`` takes them: sparse over the first dimension (an embedding's rows)
    for an optimizer of sparse gradients (``sparse_grads``: SparseAdam), else as they are."""
    entry = entry_of(optimizer)
    if entry is None or not entry.sparse_grads:
        return list(grads)
    return [None if g is None else g.to_sparse(1) for g in grads]


# -- errors ---------------------------------------------------------------------------------
def rel_error(a: Tensor | np.ndarray, b: Tensor | np.ndarray, scale: float | None = None) -> float:
    """``max|a - b| / max(scale, tiny)`` (``scale`` defaults to ``max|b|``), computed in float64
    (complex128 for complex input)."""
    a, b = torch.as_tensor(a).detach(), torch.as_tensor(b).detach()
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    wide = torch.complex128 if (a.is_complex() or b.is_complex()) else torch.float64
    a, b = a.to(wide), b.to(wide)
    if scale is None:
        scale = b.abs().max().item()
    return ((a - b).abs().max() / max(scale, TINY)).item()


def max_rel_error(actual: Sequence[Tensor], expected: Sequence[Tensor],
                  scales: Sequence[float | None] | None = None) -> float:
    """The worst :func:`rel_error` over pairs of tensors."""
    assert len(actual) == len(expected)
    scales = scales if scales is not None else [None] * len(expected)
    return max((rel_error(a, b, s) for a, b, s in zip(actual, expected, scales)), default=0.0)


class PathScale:
    """The largest magnitude each tensor of a reference run reached: call :meth:`update` after
    every step, read :meth:`__getitem__` (keys are yours, e.g. ``("param", 3)``)."""

    def __init__(self) -> None:
        self.scales: dict[Any, float] = {}

    def update(self, key: Any, tensor: Tensor) -> None:
        if tensor.numel():
            self.scales[key] = max(self.scales.get(key, 0.0), tensor.detach().abs().max().item())

    def __getitem__(self, key: Any) -> float | None:
        return self.scales.get(key)

    def watch(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Callable[[int], None]:
        """An ``after_step`` for :func:`run_steps` that tracks ``("param", i)`` and
        ``("state", i, key)`` (parameters in group order); counts the starting values too."""
        def after_step(t: int) -> None:
            for i, p in enumerate(params):
                self.update(("param", i), p)
            for i, state in enumerate(states_in_order(optimizer)):
                for key, value in state.items():
                    if key != "step" and isinstance(value, Tensor):
                        self.update(("state", i, key), value)

        after_step(0)
        return after_step


# -- parameters -----------------------------------------------------------------------------
def randn(shape: Sequence[int], generator: torch.Generator, is_complex: bool = False) -> Tensor:
    """Standard normal float64 values (complex128: independent real and imaginary parts)."""
    x = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    return torch.complex(x, torch.randn(tuple(shape), generator=generator, dtype=torch.float64)) if is_complex else x


def make_param(shape: Sequence[int], layout: str, dtype: torch.dtype, generator: torch.Generator) -> Tensor:
    """A leaf tensor that requires grad, of ``shape``, laid out as ``layout``:

    * ``contiguous``;
    * ``transposed``: a permuted view (all dims reversed) of a contiguous tensor;
    * ``strided``: every other element of the last dimension of a larger tensor.

    Values are drawn in float64 and rounded to ``dtype``, so every dtype sees the same numbers.
    """
    shape = tuple(shape)
    if len(shape) == 0:
        layout = "contiguous"  # a 0-d tensor has a single layout
    if layout == "transposed":
        view = randn(shape[::-1], generator, dtype.is_complex).to(dtype).permute(*reversed(range(len(shape))))
    elif layout == "strided":
        view = randn((*shape[:-1], 2 * shape[-1]), generator, dtype.is_complex).to(dtype)[..., ::2]
    elif layout == "contiguous":
        view = randn(shape, generator, dtype.is_complex).to(dtype)
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    return view.detach().requires_grad_()


def make_params(specs: Iterable[tuple[Sequence[int], str]], dtype: torch.dtype, seed: int) -> list[Tensor]:
    """Parameters for ``(shape, layout)`` specs, reproducibly from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [make_param(shape, layout, dtype, generator) for shape, layout in specs]


def clone_param(p: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """An independent copy of ``p`` with the same values, shape *and strides* (in ``dtype``,
    default ``p``'s own)."""
    q = torch.empty_strided(p.size(), p.stride(), dtype=dtype or p.dtype)
    q.copy_(p.detach())
    return q.requires_grad_(p.requires_grad)


def clone_params(params: Iterable[Tensor], dtype: torch.dtype | None = None) -> list[Tensor]:
    return [clone_param(p, dtype) for p in params]


def values(params: Iterable[Tensor]) -> list[Tensor]:
    """Detached copies of the current values."""
    return [p.detach().clone() for p in params]


# -- gradients and steps --------------------------------------------------------------------
Grads = list[list[Tensor | None]]


def grad_sequence(params: Sequence[Tensor], steps: int, seed: int, skip: float = 0.0) -> Grads:
    """Random normal gradients, one list per step; each gradient is None (the parameter is
    skipped that step) with probability ``skip``. Reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    sequence = []
    for _ in range(steps):
        grads = []
        for p in params:
            skipped = skip > 0 and torch.rand((), generator=generator).item() < skip
            g = randn(p.shape, generator, p.is_complex()).to(p.dtype)
            grads.append(None if skipped else g)
        sequence.append(grads)
    return sequence


def sparse_grad_sequence(params: Sequence[Tensor], steps: int, seed: int) -> Grads:
    """Sparse gradients (COO, over the first dimension, as an embedding's), one list per step.

    Each names a few rows at random, some twice (uncoalesced: the values of a repeated row add
    up), and every third step a parameter gets an empty gradient (no row at all). Values are
    drawn in float64 and rounded to the parameter's dtype. Reproducible from ``seed``.
    """
    generator = torch.Generator().manual_seed(seed)
    sequence = []
    for t in range(steps):
        grads = []
        for i, p in enumerate(params):
            rows = p.shape[0]
            count = 0 if (t + i) % 3 == 2 else int(torch.randint(1, rows + 2, (), generator=generator))
            indices = torch.randint(0, rows, (1, count), generator=generator)
            values = randn((count, *p.shape[1:]), generator).to(p.dtype)
            grads.append(torch.sparse_coo_tensor(indices, values, p.shape, check_invariants=True))
        sequence.append(grads)
    return sequence


def cast_sequence(sequence: Grads, dtype: torch.dtype) -> Grads:
    """The same gradients in ``dtype`` (to rerun a low-precision run in float64)."""
    return [[None if g is None else g.to(dtype) for g in grads] for grads in sequence]


def set_grads(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g.clone()


def as_real(x: Tensor) -> Tensor:
    return torch.view_as_real(x) if x.is_complex() else x


def loss_with_grads(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> Callable[[], Tensor]:
    """A closure for an optimizer that re-evaluates the loss (L-BFGS): it clears the gradients
    and back-propagates ``sum <g_i, p_i> + |p_i|^2 / 2`` over the parameters whose ``g_i`` is
    given, so a parameter whose gradient is None gets none. At the parameters it starts from the
    gradient is ``g_i + p_i``: the step's own gradients, and a loss bounded below for line searches."""
    def closure() -> Tensor:
        for p in params:
            p.grad = None
        with torch.enable_grad():
            loss = sum(((as_real(g) * as_real(p)).sum() + 0.5 * (as_real(p) ** 2).sum()
                        for p, g in zip(params, grads, strict=True) if g is not None), torch.zeros((), dtype=torch.float64))
            if loss.requires_grad:  # else every gradient is None this step
                loss.backward()
        contiguous_grads(params)
        return loss

    return closure


def contiguous_grads(params: Iterable[Tensor]) -> None:
    """Make every gradient contiguous, in a closure for torch.optim.LBFGS: it flattens gradients
    with view(-1), which fails on the gradient autograd gives a transposed parameter (its
    strides); optimlab's takes both."""
    for p in params:
        if p.grad is not None:
            p.grad = p.grad.contiguous()


def step_with(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> Any:
    """One step on ``grads``: set as the parameters' gradients, or, for an optimizer that needs a
    closure, through :func:`loss_with_grads`. Returns what ``step`` returns."""
    if needs_closure(optimizer):
        return optimizer.step(loss_with_grads(params, grads))
    set_grads(params, as_fed(optimizer, grads))
    return optimizer.step()


class Feed:
    """What one step gives an optimizer of a registry entry: the next gradients of a sequence
    (sparse ones, over the first dimension, for an entry of sparse gradients), or, for an entry
    that needs a closure (L-BFGS), a closure over a fixed smooth loss
    ``sum w * |p - c|^2 + quartic * |p|^4`` (targets ``c`` drawn from ``seed``; ``|.|`` keeps it real
    for complex parameters).

    ``steps`` and ``skip`` size the gradient sequence; ``weighted`` draws per-element weights
    ``w`` in [0.5, 1.5) (else 1); ``grads_like_params`` lays each dense gradient out like its
    parameter, as autograd makes them (torch's fused kernels read both as one flat array each),
    else gradients keep the layout they were drawn in.
    """

    def __init__(self, entry: Entry, params: Sequence[Tensor], seed: int, steps: int, *, skip: float = 0.0,
                 weighted: bool = False, quartic: float = 0.1, grads_like_params: bool = False) -> None:
        self.entry, self.quartic, self.grads_like_params = entry, quartic, grads_like_params
        if entry.needs_closure:
            generator = torch.Generator().manual_seed(seed)
            self.targets = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
            self.weights = [torch.rand(p.shape, generator=generator, dtype=torch.float64) + 0.5 if weighted
                            else None for p in params]
        elif entry.sparse_grads:
            self.sequence = sparse_grad_sequence(params, steps, seed)
        else:
            self.sequence = grad_sequence(params, steps, seed, skip=skip)

    def step(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor], t: int) -> None:
        """Step ``t`` (from 1): its gradients set, or the closure passed."""
        if not self.entry.needs_closure:
            for p, g in zip(params, self.sequence[t - 1], strict=True):
                like_param = self.grads_like_params and g is not None and not g.is_sparse
                p.grad = None if g is None else torch.empty_like(p).copy_(g) if like_param else g.clone()
            optimizer.step()
            return

        def closure() -> Tensor:
            optimizer.zero_grad()
            with torch.enable_grad():
                loss = sum(self.loss_term(p, c, w) for p, c, w in zip(params, self.targets, self.weights))
                loss.backward()
            contiguous_grads(params)
            return loss

        optimizer.step(closure)

    def run(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor], ts: range,
            scale: PathScale | None = None) -> torch.optim.Optimizer:
        """Steps ``ts`` of ``optimizer``; ``scale`` records the parameters' sizes after each."""
        for t in ts:
            self.step(optimizer, params, t)
            if scale is not None:
                for i, p in enumerate(params):
                    scale.update(("param", i), p)
        return optimizer

    def loss_term(self, p: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        squares = (p - target.to(p.dtype)).abs() ** 2
        if weight is not None:
            squares = weight.to(p.real.dtype) * squares
        return squares.sum() + self.quartic * (p.abs() ** 4).sum()


def run_steps(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], sequence: Grads,
              after_step: Callable[[int], Any] | None = None) -> None:
    """One :func:`step_with` per step's gradients; ``after_step(t)`` runs after step t (from 1)."""
    for t, grads in enumerate(sequence, start=1):
        step_with(optimizer, params, grads)
        if after_step is not None:
            after_step(t)


def two_groups(params: Sequence[Tensor], split: int | None, override: dict[str, Any]) -> list[dict[str, Any]]:
    """Group 0 takes the constructor's defaults, group 1 overrides them with ``override``;
    ``split=None``: one group of every parameter (``override`` must then be empty)."""
    if split is None:
        assert not override, f"one group cannot take the overrides {override}"
        return [{"params": list(params)}]
    return [{"params": list(params[:split])}, {"params": list(params[split:]), **override}]


def split_of(name: str, params: Sequence[Tensor], split: int) -> int | None:
    """Where :func:`two_groups` splits ``params`` for optimizer ``name``: ``split``, kept within
    1..len-1; None (one group) for an optimizer that takes a single group (L-BFGS)."""
    return None if REGISTRY[name].single_group else min(max(split, 1), len(params) - 1)


def half_lr(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Group 1's override in two-group runs: half the learning rate (nothing for one group)."""
    return {} if REGISTRY[name].single_group else {"lr": lr_of(name, config) * 0.5}


def states_in_order(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The state of each parameter, in parameter-group order ({} where there is none)."""
    return [optimizer.state.get(p, {}) for g in optimizer.param_groups for p in g["params"]]


class Run:
    """An optimizer stepping its parameters, tracking the scale its tensors reach (:class:`PathScale`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        self.optimizer, self.params, self.scale = optimizer, list(params), PathScale()
        self._after_step = self.scale.watch(optimizer, self.params)

    @classmethod
    def build(cls, optimizer_cls: type, params: Sequence[Tensor], hp: dict[str, Any], override: dict[str, Any],
              split: int | None) -> Run:
        """``optimizer_cls`` on copies of ``params``: group 0 with ``hp``, group 1 ``override``
        (one group if ``split`` is None)."""
        params = clone_params(params)
        return cls(optimizer_cls(two_groups(params, split, override), **hp), params)

    def steps(self, sequence: Grads) -> Run:
        run_steps(self.optimizer, self.params, sequence, after_step=self._after_step)
        return self


def worst_difference(mine: Any, theirs: Any, scale: float | None, where: str) -> float:
    """The largest relative difference (:func:`rel_error`, ``scale`` for tensors) between two state
    values of any structure: tensors (dtype and shape must agree), lists and tuples of them,
    floats; anything else (counters, flags) must be equal."""
    if isinstance(theirs, Tensor):
        assert isinstance(mine, Tensor), f"{where}: {type(mine).__name__} where the reference has a tensor"
        assert mine.dtype == theirs.dtype, f"{where}: dtype {mine.dtype} != {theirs.dtype}"
        assert mine.shape == theirs.shape, f"{where}: shape {tuple(mine.shape)} != {tuple(theirs.shape)}"
        return rel_error(mine, theirs, scale)
    if isinstance(theirs, (list, tuple)):
        assert isinstance(mine, (list, tuple)) and len(mine) == len(theirs), f"{where}: {mine!r} != {theirs!r}"
        return max((worst_difference(a, b, scale, f"{where}[{i}]") for i, (a, b) in enumerate(zip(mine, theirs))),
                   default=0.0)
    if isinstance(theirs, float):
        return rel_error(torch.tensor(float(mine)), torch.tensor(theirs))
    assert mine == theirs, f"{where}: {mine!r} != {theirs!r}"
    return 0.0


def compare_runs(key: str, mine: Run, theirs: Run, sequence: Grads, tol: float, final_tol: float | None = None) -> None:
    """Parameters, then the state of every parameter that ``sequence`` stepped, within ``tol``
    (scaled by ``theirs``' run); state keys and dtypes equal, step counts exact. ``final_tol``
    also bounds the parameters' error scaled by their final values only."""
    for p, q in zip(mine.params, theirs.params, strict=True):
        assert p.dtype == q.dtype and p.shape == q.shape and p.stride() == q.stride()
    scales = [theirs.scale["param", i] for i in range(len(theirs.params))]
    error = record(f"{key} params", max_rel_error(values(mine.params), values(theirs.params), scales))
    assert error <= tol, f"parameters differ by {error:.3e} > {tol:.0e}"
    final = record(f"{key} params (final-value scale)", max_rel_error(values(mine.params), values(theirs.params)))
    assert final_tol is None or final <= final_tol, f"parameters differ by {final:.3e} > {final_tol:.0e} (final scale)"
    worst = 0.0
    for i, (s_mine, s_theirs) in enumerate(zip(states_in_order(mine.optimizer), states_in_order(theirs.optimizer))):
        if all(grads[i] is None for grads in sequence):
            continue  # never stepped: torch.optim.Adagrad has state from the start, optimlab none yet
        assert s_mine.keys() == s_theirs.keys(), f"parameter {i}: state keys {sorted(s_mine)} != {sorted(s_theirs)}"
        for k in s_theirs:
            if k == "step":
                assert same(s_mine[k], s_theirs[k]), f"parameter {i}: step {s_mine[k]} != {s_theirs[k]}"
            else:
                where = f"parameter {i} state {k!r}"
                worst = max(worst, worst_difference(s_mine[k], s_theirs[k], theirs.scale["state", i, k], where))
    record(f"{key} state", worst)
    assert worst <= tol, f"state differs by {worst:.3e} > {tol:.0e}"


# -- checkpoints ----------------------------------------------------------------------------
def through_bytes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` saved with torch.save into memory and loaded back (weights_only)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def deep_copy(state_dict: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(state_dict)


def snapshot(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A deep copy of everything an optimizer holds and of its parameters' values."""
    groups = optimizer.param_groups
    return {
        "state": copy.deepcopy(states_in_order(optimizer)),
        "hyperparams": [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in groups],
        "params": [[id(p) for p in g["params"]] for g in groups],
        "values": [values(g["params"]) for g in groups],
    }


def same(a: Any, b: Any) -> bool:
    """Structural equality in which tensors compare with torch.equal (and dtype)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # nan, e.g. a bad lr kept as it was written
    return type(a) is type(b) and a == b


# -- measured errors ------------------------------------------------------------------------
#: The worst relative error seen per comparison, printed at the end of the run (conftest).
WORST: dict[str, float] = {}


def record(key: str, error: float) -> float:
    """Remember ``error`` if it is the worst seen for ``key``; returns it."""
    if not error <= WORST.get(key, -1.0):
        WORST[key] = error
    return error


def adam_on_each_path(make_params: Callable[[], list[Tensor]], steps: int = 3) -> list[tuple[list[Tensor], collections.Counter]]:
    """Adam (lr 0.1) on fresh parameters from ``make_params``, ``steps`` steps with gradients of
    ones, on the eager path and then on the automatic one: for each, the final parameter values
    (plain CPU tensors) and how many parameter-steps each engine path took."""
    from optimlab import engine

    outcomes = []
    for path in ("eager", "auto"):
        params = make_params()
        opt = optimlab.Adam(params, lr=0.1)
        before = dict(engine.path_counts)
        with engine.using(path):
            for _ in range(steps):
                for p in params:
                    p.grad = torch.ones_like(p)
                opt.step()
        counts = collections.Counter({k: v - before.get(k, 0) for k, v in engine.path_counts.items()})
        outcomes.append(([p.detach().as_subclass(torch.Tensor).cpu().clone() for p in params], counts))
    return outcomes
