"""The optimizers the lab compares, by name, and log-spaced learning-rate grids.

Seven named configurations are the classic comparison (``optimlab compare``'s default); every
problem of :mod:`optimlab.lab.problems.problem` records a measured learning rate for each::

  name      optimizer                                      generic learning-rate grid
  sgd       optimlab.SGD                                   1e-3 .. 1
  momentum  optimlab.SGD(momentum=0.9) (heavy ball)        1e-4 .. 0.316
  nesterov  optimlab.SGD(momentum=0.9, nesterov=True)      1e-4 .. 0.316
  adagrad   optimlab.Adagrad                               1e-3 .. 1
  rmsprop   optimlab.RMSprop (alpha 0.99)                  1e-5 .. 0.0316
  adam      optimlab.Adam (betas 0.9, 0.999)               1e-5 .. 0.0316
  adamw     optimlab.AdamW (weight_decay 0.01)             1e-5 .. 0.0316

Everything else is torch.optim's defaults. The generic grids (half-decade steps) are for
problems that have no measured learning rate for an optimizer; each problem in
:mod:`optimlab.lab.problems.problem` records a measured one, and sweeps centre their grids on it.

With torch's default ``weight_decay=0.01``, AdamW shrinks the weights by ``lr * 0.01`` per step,
1e-5 at lr = 1e-3: over a short budget it is almost exactly Adam. That is the honest default;
pass ``weight_decay`` to see the decay matter.

Every other optimizer of :data:`optimlab.optimizers.registry.ENTRIES` is offered under its class
name in lower case (``nadam``, ``adafactor``, ``asgd``, ...), with torch's defaults and a grid of
half decades over its entry's ``search_space["lr"]``; its flags decide how the lab's loop (one
gradient per step, then ``optimizer.step()``) can drive it:

* an optimizer for parameters of ``min_dim`` dimensions or more (``muon``) takes those, and
  AdamW the rest (biases, gains, scalars), as Jordan et al. (2024) train with Muon
  (:class:`WithAdamW`); Muon's updates are scaled to AdamW's RMS (``adjust_lr_fn=
  "match_rms_adamw"``, Liu et al. 2025), so that one learning rate and weight decay serve both,
  and its Newton-Schulz products are float32 (``ns_dtype``), 9x faster than bfloat16 on a CPU;
* an optimizer whose step needs a closure (``lbfgs``) gets one that hands it the loss's
  gradients the loop has just computed, once (:class:`LoopClosure`): L-BFGS then takes one
  iteration per step (``max_iter=1``) at the fixed step ``lr``, on the step's batch. A line
  search re-evaluates the loss at other points, which the loop cannot: it is refused at the
  first step that tries, with a message saying so.

An optimizer the loop cannot drive at all is listed in :data:`REFUSED` with the reason, and
:func:`get_optimizer` names the reason: ``sparseadam``, which takes only sparse gradients.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch

import optimlab
from optimlab.lab.training.specs import UnknownNameError, unknown
from optimlab.optimizers.registry import ENTRIES, Entry


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer class with fixed keyword arguments, a label for reports and a generic grid."""

    name: str
    label: str
    cls: Callable[..., torch.optim.Optimizer]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    lrs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def make(self, params: Any, lr: float, **overrides: Any) -> torch.optim.Optimizer:
        """The optimizer over ``params`` at ``lr``; ``overrides`` replace the fixed kwargs."""
        return self.cls(params, lr=lr, **{**self.kwargs, **overrides})


def round_lr(lr: float) -> float:
    """``lr`` to 3 significant digits: grids print, store and hash as short numbers."""
    return float(f"{lr:.3g}")


def fmt_lr(lr: float) -> str:
    """A learning rate as it was given: the short form (``0.001``, ``1e-05``) when it reads back
    as the same number, else every digit it needs (``0.0012345678``), never a rounded one."""
    short = f"{lr:g}"
    return short if float(short) == lr else repr(float(lr))


def log_grid(low: float, high: float, points: int) -> tuple[float, ...]:
    """``points`` log-spaced values from ``low`` to ``high`` (both included), 3 significant digits.

    ``log_grid(1e-4, 1e-2, 5)`` = (0.0001, 0.000316, 0.001, 0.00316, 0.01).
    """
    if not (0 < low <= high < math.inf):
        raise ValueError(f"log_grid: need 0 < low <= high < inf, got low={low!r}, high={high!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1 or (points == 1 and low != high):
        raise ValueError(f"log_grid: points must be an int >= 1 (>= 2 when low != high), got {points!r}")
    if points == 1:
        return (round_lr(low),)
    ratio = math.log10(high / low) / (points - 1)
    return tuple(round_lr(low * 10 ** (i * ratio)) for i in range(points))


def grid_around(center: float, points: int = 3, per_decade: int = 2) -> tuple[float, ...]:
    """``points`` log-spaced values centred on ``center``, ``per_decade`` to a factor of 10.

    ``grid_around(0.01, 3)`` = (0.00316, 0.01, 0.0316): half a decade either side.
    """
    if not (0 < center < math.inf):
        raise ValueError(f"grid_around: center must be a positive number, got {center!r}")
    if isinstance(per_decade, bool) or not isinstance(per_decade, int) or per_decade < 1:
        raise ValueError(f"grid_around: per_decade must be an int >= 1, got {per_decade!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"grid_around: points must be an int >= 1, got {points!r}")
    if points == 1:
        return (round_lr(center),)
    # On the lattice 10^(k / per_decade) when the centre is a rounded lattice point (0.316 is
    # 10^-0.5 to 3 digits): then the grid is 0.1, 0.316, 1 and not 0.0999, 0.316, 0.999.
    position = math.log10(center) * per_decade
    if abs(position - round(position)) < 0.01:
        position = round(position)
    half = (points - 1) / 2
    return log_grid(10 ** ((position - half) / per_decade), 10 ** ((position + half) / per_decade), points)


CLASSICS = (
    OptimizerSpec("sgd", "SGD", optimlab.SGD, {}, log_grid(1e-3, 1.0, 7)),
    OptimizerSpec("momentum", "SGD + momentum 0.9", optimlab.SGD, {"momentum": 0.9}, log_grid(1e-4, 10**-0.5, 8)),
    OptimizerSpec("nesterov", "Nesterov 0.9", optimlab.SGD, {"momentum": 0.9, "nesterov": True},
                  log_grid(1e-4, 10**-0.5, 8)),
    OptimizerSpec("adagrad", "Adagrad", optimlab.Adagrad, {}, log_grid(1e-3, 1.0, 7)),
    OptimizerSpec("rmsprop", "RMSprop", optimlab.RMSprop, {}, log_grid(1e-5, 10**-1.5, 8)),
    OptimizerSpec("adam", "Adam", optimlab.Adam, {}, log_grid(1e-5, 10**-1.5, 8)),
    OptimizerSpec("adamw", "AdamW (wd 0.01)", optimlab.AdamW, {}, log_grid(1e-5, 10**-1.5, 8)),
)


# -- the rest of the registry -----------------------------------------------------------------
class LoopClosure:
    """Mixed into an optimizer whose ``step`` needs a closure (L-BFGS), for the lab's loop, which
    computes the loss and gradients once and then calls ``step()``: without a closure, ``step``
    gets one that leaves the gradients as the loop computed them, and may be evaluated once.

    Its loss is unknown here (nan): with one iteration per step, L-BFGS reads it only to test
    for convergence within the step. A second evaluation (another iteration, a line search)
    would need the loss at other parameters: a RuntimeError says so.
    """

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if closure is not None:
            return super().step(closure)  # type: ignore[misc]
        evaluations = []

        def computed() -> torch.Tensor:
            if evaluations:
                raise RuntimeError(
                    f"{type(self).__name__} in the lab evaluates the loss once per step (the training loop "
                    "computes the gradients once, then steps): use one iteration per step (max_iter=1) "
                    "and no line search")
            evaluations.append(True)
            return torch.tensor(math.nan)

        return super().step(computed)  # type: ignore[misc]


class WithAdamW(torch.optim.Optimizer):
    """:attr:`main` on the parameters of :attr:`min_dim` dimensions or more, AdamW on the others,
    as one optimizer to the lab's loop, its schedulers and its checkpoints.

    Constructor arguments and a group's options go to the optimizer that takes them; ``lr`` and
    ``weight_decay`` (given, or :attr:`main`'s defaults) to both. ``param_groups`` are the two
    optimizers' own groups (what a scheduler writes there, they use); ``state`` shows both
    states; ``state_dict()`` holds each optimizer's under its role, ``"main"`` and ``"rest"``.
    """

    main: ClassVar[type[torch.optim.Optimizer]]
    min_dim: ClassVar[int]
    rest: ClassVar[type[torch.optim.Optimizer]] = optimlab.AdamW
    SHARED: ClassVar[tuple[str, ...]] = ("lr", "weight_decay")

    def __init__(self, params: Any, lr: float, **kwargs: Any) -> None:
        self.parts: dict[str, torch.optim.Optimizer] = {}
        self.options = {"main": self.routed("main", {"lr": lr, **kwargs})}
        main_defaults = {k: p.default for k, p in inspect.signature(self.main).parameters.items()
                         if p.default is not inspect.Parameter.empty}
        shared = {k: {**main_defaults, **self.options["main"]}[k] for k in self.SHARED}
        self.options["rest"] = {**shared, **self.routed("rest", kwargs, shared_too=False)}
        super().__init__(params, {"lr": lr, **kwargs})

    def routed(self, role: str, options: Mapping[str, Any], shared_too: bool = True) -> dict[str, Any]:
        """The ``options`` that optimizer ``role`` takes: those of its signature; for AdamW only
        those :attr:`main` does not take, bar the shared ones. An option neither takes is an error."""
        takes = {r: set(inspect.signature(getattr(self, r)).parameters) for r in ("main", "rest")}
        unknown_options = [k for k in options if k not in takes["main"] | takes["rest"] | {"params", "param_names"}]
        if unknown_options:
            raise TypeError(f"{type(self).__name__}: neither {self.main.__name__} nor {self.rest.__name__} takes "
                            f"{unknown_options[0]!r}")
        if role == "main":
            return {k: v for k, v in options.items() if k in takes["main"]}
        return {k: v for k, v in options.items()
                if k in takes["rest"] and (k not in takes["main"] or (shared_too and k in self.SHARED))}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        tensor = lambda item: item[1] if isinstance(item, tuple) else item  # noqa: E731 - named parameters
        taken = set(inspect.signature(self.main).parameters) | set(inspect.signature(self.rest).parameters)
        options = {k: v for k, v in param_group.items() if k != "params" and k in taken}
        # a key neither optimizer takes is the caller's label (a fine-tune's "group" name): torch's
        # optimizers keep such keys in the group, so both parts keep it
        labels = {k: v for k, v in param_group.items() if k != "params" and k not in taken}
        split = {"main": [p for p in params if tensor(p).dim() >= self.min_dim],
                 "rest": [p for p in params if tensor(p).dim() < self.min_dim]}
        for role, members in split.items():
            if not members:
                continue
            group = {"params": members, **self.routed(role, options), **labels}
            if role in self.parts:
                self.parts[role].add_param_group(group)
            else:
                self.parts[role] = getattr(self, role)([group], **self.options[role])
            self.param_groups.append(self.parts[role].param_groups[-1])

    @property
    def state(self) -> Mapping[torch.Tensor, Any]:  # type: ignore[override]
        return {p: s for part in self.parts.values() for p, s in part.state.items()}

    @state.setter
    def state(self, value: Any) -> None:
        if value:  # torch.optim.Optimizer.__init__ sets an empty one; the parts keep the state
            raise AttributeError(f"{type(self).__name__}.state is its optimizers' states; load a state_dict")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts.values():
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {role: part.state_dict() for role, part in self.parts.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Each optimizer's own state dict; all of them or, if one is refused, none."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(self.parts):
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected the state dicts of "
                             f"{', '.join(map(repr, self.parts))}, got "
                             f"{sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__}")
        before = {role: copy.deepcopy(part.state_dict()) for role, part in self.parts.items()}
        try:
            for role, part in self.parts.items():
                part.load_state_dict(state_dict[role])
        except Exception:
            for role, part in self.parts.items():
                part.load_state_dict(before[role])
            raise


def registry_name(entry: Entry) -> str:
    """The name the lab offers a registry entry under: its class name in lower case."""
    return entry.name.lower()


def generic_grid(entry: Entry) -> tuple[float, ...]:
    """Half decades over the entry's ``search_space["lr"]`` (both ends included)."""
    low, high = entry.search_space["lr"]
    return log_grid(low, high, round(2 * math.log10(high / low)) + 1)


#: Fixed arguments an optimizer needs in the lab's loop: L-BFGS, one evaluation per step.
LOOP_KWARGS: Mapping[str, Mapping[str, Any]] = MappingProxyType({"LBFGS": {"max_iter": 1}})


def from_registry(entry: Entry) -> OptimizerSpec | str:
    """The lab's configuration of ``entry`` (torch's defaults, :func:`generic_grid`, and what its
    flags ask for), or why the lab's loop cannot drive it."""
    cls: Callable[..., torch.optim.Optimizer] = entry.cls
    label, kwargs = entry.name, dict(LOOP_KWARGS.get(entry.name, {}))
    if entry.sparse_grads:
        return "it takes sparse gradients only (embeddings with sparse=True); the lab's models give dense ones"
    if entry.needs_closure and entry.min_dim:
        return "its steps need a closure and it takes only some parameters: no combination for the lab's loop"
    if entry.needs_closure:
        cls = type(entry.name, (LoopClosure, entry.cls), {"__module__": __name__, "__qualname__": entry.name})
        label = f"{entry.name} (one iteration per step)"
    elif entry.min_dim:
        cls = type(f"{entry.name}WithAdamW", (WithAdamW,), {"__module__": __name__, "main": entry.cls,
                                                             "min_dim": entry.min_dim})
        label = f"{entry.name} ({entry.min_dim}-d+) + AdamW (rest)"
        if "adjust_lr_fn" in inspect.signature(entry.cls).parameters:
            kwargs["adjust_lr_fn"] = "match_rms_adamw"
        if "ns_dtype" in inspect.signature(entry.cls).parameters:
            # the lab runs on CPUs, which multiply float32 about 9x faster than bfloat16 unless
            # they have bfloat16 matrix instructions (optimlab.Muon's docstring)
            kwargs["ns_dtype"] = torch.float32
            label = f"{entry.name} ({entry.min_dim}-d+, float32 Newton-Schulz) + AdamW (rest)"
    return OptimizerSpec(registry_name(entry), label, cls, kwargs, generic_grid(entry))


def lab_optimizers() -> tuple[dict[str, OptimizerSpec], dict[str, str]]:
    """The named classics, then every other registry entry by name; and the entries refused, with why."""
    offered = {spec.name: spec for spec in CLASSICS}
    refused = {}
    for entry in ENTRIES:
        if registry_name(entry) in offered:
            continue  # a classic: its named configuration, with measured learning rates
        made = from_registry(entry)
        if isinstance(made, str):
            refused[registry_name(entry)] = made
        else:
            offered[made.name] = made
    return offered, refused


_offered, _refused = lab_optimizers()
#: Every optimizer the lab offers, by name: the classics first.
OPTIMIZERS: dict[str, OptimizerSpec] = _offered
#: Registry optimizers the lab's loop cannot drive: name -> why.
REFUSED: dict[str, str] = _refused

#: The classic comparison, in the order reports list it.
CLASSIC = tuple(spec.name for spec in CLASSICS)


def get_optimizer(name: str) -> OptimizerSpec:
    """The configuration called ``name``; unknown names raise
    :class:`~optimlab.lab.training.specs.UnknownNameError` listing the valid ones, and refused ones say why."""
    if isinstance(name, str) and name in REFUSED:
        raise UnknownNameError(f"optimizer {name!r} is not available in the lab: {REFUSED[name]}")
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name]


def make_optimizer(name: str, params: Iterable[Any], lr: float, **overrides: Any) -> torch.optim.Optimizer:
    """``get_optimizer(name).make(params, lr, **overrides)``."""
    return get_optimizer(name).make(params, lr, **overrides)
