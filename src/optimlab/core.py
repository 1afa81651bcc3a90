"""The unit of optimizer math: a :class:`Transform`, and :func:`chain` to compose them.

A transform is written per tensor, as the paper writes it. It turns an incoming update
direction ``u`` (first the gradient) into an outgoing one, reading the hyperparameters it
names from the parameter group and keeping its own state in the parameter's state dict.
The engine adds the final direction to the parameter: ``p <- p + u``.

Rules every transform keeps, so that one piece of math serves every execution path:

* ``u`` is never modified in place (it may be the user's ``p.grad``); return a new tensor.
* State tensors *are* modified in place (``m.lerp_(u, 1 - beta1)``): they are the memory.
* Hyperparameters arrive as plain numbers or as 0-d tensors; write the math with operators
  and tensor methods (``1 - beta ** step``, ``x.lerp_(y, w)``), never ``math.*`` on them,
  so a compiled step can receive them as tensors and never recompile when they change.
  Skip a term for a zero hyperparameter with :func:`is_zero` (``u if is_zero(wd) else ...``),
  not ``wd == 0``: a fast path passes exact zeros as plain ``0`` and everything else as a
  tensor, so the branch is decided when the step is traced, never on tensor data.
* State keys use torch.optim's names where torch has the same quantity (``exp_avg``,
  ``momentum_buffer``, ...), so checkpoints move between optimlab and torch.optim.
* A scalar branch on a hyperparameter or the step (RAdam's rectification) is written with
  :func:`select`, never ``if``: the same code then runs on numbers and on 0-d tensors.
* A state tensor that the math multiplies (or otherwise combines so that autograd must keep
  it) and then changes in place is read through :func:`saved`, so that a step recorded by
  autograd (``differentiable=True``) keeps the value it used.

Three kinds of transform (:attr:`Transform.kind`), by what their math reads:

* ``"elementwise"``: each output element from the same element of ``u``, the parameter and
  state shaped like it, and per-tensor scalars (0-d state, hyperparameters, the step). The
  engine fuses runs of these into one kernel, also inside a chain that mixes kinds. The math
  is traced on a vector of the elements, so it must not read the parameter's shape.
* ``"tensor"``: the whole tensor on its true shape: norms, reductions, matrix products,
  reshapes, anything read from the shape (Muon's Newton-Schulz and its shape-dependent lr,
  Adafactor's factored moments, LAMB's trust ratio). Its state may have any shape (factored
  rows and columns, its own matrices). Run as torch operations.
* ``"group"``: every parameter of the group at once (global norms, Prodigy's d): implement
  :meth:`Transform.update_group` instead of :meth:`Transform.update`.

State is declared by :meth:`Transform.init` (what it returns is allocated before the first
step, any shape and dtype) and :attr:`Transform.lazy_state` (keys the math adds on a later
step, shaped like the parameter). The engine checks a loaded checkpoint against that
declaration (:func:`state_spec`), so no transform checks its own state.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, ClassVar

import torch
from torch import Tensor

HyperParams = Mapping[str, Any]
State = MutableMapping[str, Any]


def is_zero(value: Any) -> bool:
    """Whether a hyperparameter is exactly zero, so that the term it scales can be skipped.

    True only for a plain number equal to 0; a tensor is never "zero" here. The eager path
    passes plain numbers, so this is ``value == 0``; fast paths pass a zero as plain ``0`` and
    any other value as a 0-d tensor, so the branch is known without reading tensor data.
    """
    return not isinstance(value, Tensor) and value == 0


def select(condition: Any, if_true: Any, if_false: Any) -> Any:
    """``if_true if condition else if_false`` for numbers, ``torch.where`` once any is a tensor.

    The one way to write a scalar branch (RAdam's ``rho_t > 5``): the eager path passes Python
    numbers and takes the branch in Python; a fast path passes 0-d tensors and records a
    ``where``, so both compute the same value and neither reads tensor data to decide.
    """
    if not any(isinstance(x, Tensor) for x in (condition, if_true, if_false)):
        return if_true if condition else if_false
    return torch.where(torch.as_tensor(condition), torch.as_tensor(if_true), torch.as_tensor(if_false))


def saved(tensor: Tensor) -> Tensor:
    """``tensor`` as the operand of an operation that autograd may save for its backward pass,
    when the math changes ``tensor`` in place afterwards (a state tensor read before its update):
    a copy while autograd records the step (``differentiable=True``), else ``tensor`` itself."""
    return tensor.clone() if torch.is_grad_enabled() else tensor


def scalar_dtype() -> torch.dtype:
    """dtype of 0-d state (``step``, NAdam's ``mu_product``) as torch.optim makes it: float32,
    float64 when that is the default dtype."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


ELEMENTWISE, TENSOR, GROUP = "elementwise", "tensor", "group"
KINDS = (ELEMENTWISE, TENSOR, GROUP)

#: Gradient layouts (:attr:`Transform.grad_layouts`): strided tensors, and sparse COO tensors.
DENSE, SPARSE = "dense", "sparse"


class Transform:
    """One step of per-tensor optimizer math.

    Subclasses set :attr:`hyperparams` (the group keys they read) and :attr:`kind`, and
    implement :meth:`update` (or :meth:`update_group` for the group kind); those that keep
    memory across steps implement :meth:`init`.
    """

    #: Names of the parameter-group entries this transform reads.
    hyperparams: tuple[str, ...] = ()
    #: What the math reads: ``"elementwise"``, ``"tensor"`` or ``"group"`` (see the module).
    kind: ClassVar[str] = ELEMENTWISE
    #: State keys the math creates on a later step, shaped like the parameter (SGD's
    #: ``momentum_buffer``, made on the first step with momentum): allowed in checkpoints.
    lazy_state: ClassVar[tuple[str, ...]] = ()
    #: The gradient layouts the math takes: dense, and sparse (COO, an embedding's rows) where
    #: it keeps torch's sparse semantics. A sparse ``u`` stays sparse through the math where
    #: torch's does; the engine runs sparse gradients on the eager path.
    grad_layouts: ClassVar[frozenset[str]] = frozenset({DENSE})

    def init(self, param: Tensor) -> dict[str, Tensor]:
        """State for a parameter before its first step (torch's names where they exist): any
        shapes and dtypes, made on ``param``'s device. Called on a "meta" parameter to learn
        the shapes a checkpoint must have, so it must not read ``param``'s values."""
        return {}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        """Return the new direction from ``u``; ``step`` counts this step from 1 (or is None)."""
        raise NotImplementedError

    def update_group(self, us: list[Tensor], params: list[Tensor], states: list[State], hp: HyperParams,
                     steps: list[Any]) -> list[Tensor]:
        """The group kind: new directions for all parameters of a group at once. The other kinds
        get this for free, one parameter at a time."""
        return [self.update(u, p, s, hp, t) for u, p, s, t in zip(us, params, states, steps)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Chain(Transform):
    """Transforms applied one after the other: ``chain(a, b)(u) == b(a(u))``."""

    def __init__(self, *transforms: Transform) -> None:
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"chain() takes Transform objects, got {type(t).__name__}: {t!r}")
        self.transforms = transforms
        self.hyperparams = tuple(dict.fromkeys(h for t in transforms for h in t.hyperparams))
        self.lazy_state = tuple(dict.fromkeys(k for t in transforms for k in t.lazy_state))
        # The layouts every link takes.
        self.grad_layouts = frozenset.intersection(*(t.grad_layouts for t in transforms)) if transforms \
            else frozenset({DENSE})
        # The widest kind of its parts: a chain is elementwise only if every link is.
        kinds = {t.kind for t in transforms}
        self.kind = GROUP if GROUP in kinds else TENSOR if TENSOR in kinds else ELEMENTWISE

    def init(self, param: Tensor) -> dict[str, Tensor]:
        state: dict[str, Tensor] = {}
        for t in self.transforms:
            for key, value in t.init(param).items():
                if key in state:
                    raise ValueError(f"two transforms in {self!r} keep state under the same key {key!r}")
                state[key] = value
        return state

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        for t in self.transforms:
            u = t.update(u, param, state, hp, step)
        return u

    def update_group(self, us: list[Tensor], params: list[Tensor], states: list[State], hp: HyperParams,
                     steps: list[Any]) -> list[Tensor]:
        for t in self.transforms:
            us = t.update_group(us, params, states, hp, steps)
        return us

    def __repr__(self) -> str:
        return "chain(" + ", ".join(map(repr, self.transforms)) + ")"


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right; a single transform is returned as it is."""
    return transforms[0] if len(transforms) == 1 else Chain(*transforms)


def state_spec(transform: Transform, param: Tensor) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """What ``transform`` keeps for ``param``: state key -> (shape, dtype), from :meth:`Transform.init`
    run on a "meta" tensor like ``param`` (no memory, no data), plus its lazy state (the
    parameter's shape and dtype). Complex parameters keep complex state of the same shapes."""
    meta = torch.empty(param.shape, dtype=param.dtype, device="meta")
    real = torch.view_as_real(meta) if meta.is_complex() else meta
    spec = {}
    for key, value in transform.init(real).items():
        if isinstance(value, Tensor):
            shape = tuple(value.shape)
            if meta.is_complex() and value.shape == real.shape:
                spec[key] = (tuple(meta.shape), meta.dtype)
            else:
                spec[key] = (shape, value.dtype)
    for key in transform.lazy_state:
        spec.setdefault(key, (tuple(param.shape), param.dtype))
    return spec


def keeps_state(transform: Transform) -> bool:
    """Whether ``transform`` keeps any per-parameter state: keys made by :meth:`Transform.init`
    (learnt on a one-element "meta" parameter) or lazy ones. Remembered on the transform (an
    attribute, which a step that torch.compile records reads without a graph break)."""
    known = getattr(transform, "_keeps_state", None)
    if known is None:
        known = bool(transform.lazy_state or transform.init(torch.empty(1, device="meta")))
        transform._keeps_state = known  # type: ignore[attr-defined]
    return known
