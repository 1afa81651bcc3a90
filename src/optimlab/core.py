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
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

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


class Transform:
    """One step of per-tensor optimizer math.

    Subclasses set :attr:`hyperparams` (the group keys they read) and implement
    :meth:`update`; those that keep memory across steps implement :meth:`init`.
    """

    #: Names of the parameter-group entries this transform reads.
    hyperparams: tuple[str, ...] = ()

    def init(self, param: Tensor) -> dict[str, Tensor]:
        """State for a parameter before its first step (torch's names where they exist)."""
        return {}

    def update(self, u: Tensor, param: Tensor, state: State, hp: HyperParams, step: Any) -> Tensor:
        """Return the new direction from ``u``; ``step`` counts this step from 1 (or is None)."""
        raise NotImplementedError

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

    def __repr__(self) -> str:
        return "chain(" + ", ".join(map(repr, self.transforms)) + ")"


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right; a single transform is returned as it is."""
    return transforms[0] if len(transforms) == 1 else Chain(*transforms)
