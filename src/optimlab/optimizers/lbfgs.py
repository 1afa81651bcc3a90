"""L-BFGS (Liu & Nocedal, 1989): limited-memory quasi-Newton steps, optionally with a strong
Wolfe line search (Nocedal & Wright, 2006, Algorithms 7.5 and 3.5/3.6).

L-BFGS runs whole steps of its own rather than a per-tensor transform: each ``step(closure)``
takes up to ``max_iter`` iterations over all parameters seen as one flat vector, re-evaluating
the loss through ``closure``. Its memory is torch.optim.LBFGS's, under torch's keys, in the
state of the first parameter, so checkpoints move between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from optimlab import checks
from optimlab.line_search import strong_wolfe
from optimlab.optimizer import Optimizer
from optimlab.optimizers.common import COMMON_CHECKS, Params
from optimlab.quasi_newton import remember, two_loop

#: torch.optim.LBFGS's state keys: counters, the last direction and step length, the history.
STATE_KEYS = ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
              "prev_loss", "al")


class FlatParams:
    """The parameters as the one flat real vector L-BFGS works on (complex ones as pairs of reals)."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = params

    def numel(self) -> int:
        return sum(2 * p.numel() if p.is_complex() else p.numel() for p in self.params)

    def grad(self) -> Tensor:
        """The gradients, concatenated; zeros for a parameter without one. Any layout is read
        (``reshape``), where torch's ``view(-1)`` fails on a transposed parameter's gradient."""
        flat = []
        for p in self.params:
            g = p.new_zeros(p.numel()) if p.grad is None else p.grad
            g = (g.to_dense() if g.is_sparse else g).reshape(-1)
            flat.append(torch.view_as_real(g).reshape(-1) if g.is_complex() else g)
        return torch.cat(flat, 0)

    def add_(self, t: Any, direction: Tensor) -> None:
        """``x <- x + t * direction``, one ``add_`` per parameter."""
        offset = 0
        for p in self.params:
            real = torch.view_as_real(p) if p.is_complex() else p
            real.add_(direction[offset:offset + real.numel()].view_as(real), alpha=t)
            offset += real.numel()

    def copy(self) -> list[Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in self.params]

    def restore(self, values: Sequence[Tensor]) -> None:
        for p, value in zip(self.params, values, strict=True):
            p.copy_(value)


def search_direction(state: dict[str, Any], grad: Tensor, history_size: int) -> Tensor:
    """Steepest descent ``-g`` on the very first iteration (the history starts empty), then
    ``-H g`` (:func:`optimlab.quasi_newton.two_loop`) after remembering the last step's pair."""
    if state["n_iter"] == 1:
        state.update(old_dirs=[], old_stps=[], ro=[], H_diag=1)
        return grad.neg()
    remember(state, grad.sub(state["prev_flat_grad"]), state["d"].mul(state["t"]), history_size)
    alphas = state.setdefault("al", [None] * history_size)
    return two_loop(grad, state["old_dirs"], state["old_stps"], state["ro"], state["H_diag"], alphas)


class LBFGS(Optimizer):
    """L-BFGS with a fixed step ``lr`` or a strong Wolfe line search (``line_search_fn="strong_wolfe"``).

    Each ``step(closure)`` iterates ``x <- x + t d`` with ``d = -H g`` (``H``: the inverse Hessian
    estimated from the last ``history_size`` steps, :mod:`optimlab.quasi_newton`) until
    ``max_iter`` iterations or ``max_eval`` evaluations, a gradient below ``tolerance_grad``
    (max-norm) or a change below ``tolerance_change``. ``t`` is ``lr`` (the very first:
    ``min(1, 1 / |g|_1) * lr``), or what the line search finds from it (:mod:`optimlab.line_search`).

    Same arguments, defaults, state and results as :class:`torch.optim.LBFGS`: one parameter
    group, a closure that re-evaluates the loss. Beyond torch: gradients of any layout (a
    transposed parameter's), and arguments checked at construction (``line_search_fn``).
    """

    # The tolerances take any number, as torch's: tolerance_grad=inf returns the loss without a
    # move (the start counts as optimal), -inf never stops on the gradient.
    checks = {"lr": COMMON_CHECKS["lr"], "max_iter": checks.integer(1), "max_eval": checks.integer(1),
              "tolerance_grad": checks.real, "tolerance_change": checks.real,
              "history_size": checks.integer(1), "line_search_fn": checks.one_of(None, "strong_wolfe")}

    def __init__(self, params: Params, lr: float | Tensor = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        if max_eval is None:
            self.checks["max_iter"](self.owner, "max_iter", max_iter)
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if self.param_groups:  # a ValueError at construction, as torch's
            raise ValueError(f"{self.owner} doesn't support per-parameter options (parameter groups): it steps all "
                             "parameters as one vector, in one group")
        super().add_param_group(param_group)

    def check_loaded_state(self, group: Mapping[str, Any], param: Tensor, name: str, state: Mapping[str, Any]
                           ) -> None:
        owner = f"{self.owner}.load_state_dict"
        params = self.param_groups[0]["params"]
        if param is not params[0]:
            if state:
                raise ValueError(f"{owner}: state for parameter {name}, but L-BFGS keeps its state on the first "
                                 "parameter only: the state belongs to other parameters")
            return
        foreign = [key for key in state if key not in STATE_KEYS]
        if foreign:
            raise ValueError(f"{owner}: state {foreign[0]!r} is not kept by this optimizer (it keeps "
                             f"{', '.join(STATE_KEYS)}): the state was saved by a different optimizer")
        check_history(owner, state, FlatParams(params).numel())

    def restore_declared_dtypes(self) -> None:
        """Nothing to restore: L-BFGS keeps its history in the parameters' dtype, as torch does."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Up to ``max_iter`` L-BFGS iterations; ``closure`` clears the gradients, computes the loss,
        calls ``backward()`` and returns the loss. Returns the loss before the step."""
        closure = torch.enable_grad()(closure)
        self.schedules.apply(self.param_groups, self.owner)
        group = self.param_groups[0]
        self.check_group_cached(0, group)
        flat = FlatParams(group["params"])
        first_loss = closure()
        self.check_finite(first_loss)  # the first evaluation, before the state is touched
        state = self.state[group["params"][0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        state["func_evals"] += 1
        grad = flat.grad()
        if not grad.abs().max() <= group["tolerance_grad"]:  # else optimal already
            self._iterate(closure, flat, state, group, float(first_loss), grad)
        self.schedules.advance(self.param_groups)
        return first_loss

    def _iterate(self, closure: Callable[[], Any], flat: FlatParams, state: dict[str, Any], group: Mapping[str, Any],
                 loss: float, grad: Tensor) -> None:
        """The iterations of one step (Nocedal & Wright, Algorithm 7.5), from ``loss`` and ``grad``
        at the current parameters; the history and counters are kept in ``state``."""
        lr = group["lr"]  # a tensor stays one (as in torch, it sets the type of t and of its state)
        if isinstance(lr, Tensor) and lr.dim():
            lr = lr.squeeze()
        max_iter, max_eval, tolerance_change = group["max_iter"], group["max_eval"], group["tolerance_change"]
        evaluations = 1
        for n_iter in range(1, max_iter + 1):
            state["n_iter"] += 1
            d = state["d"] = search_direction(state, grad, group["history_size"])
            if state.get("prev_flat_grad") is None:
                state["prev_flat_grad"] = grad.clone(memory_format=torch.contiguous_format)
            else:
                state["prev_flat_grad"].copy_(grad)
            state["prev_loss"] = loss
            # The very first step is at most lr long in the l1 norm: the gradient's scale is unknown.
            t = state["t"] = min(1.0, 1.0 / grad.abs().sum()) * lr if state["n_iter"] == 1 else lr
            gtd = grad.dot(d)
            if gtd > -tolerance_change:  # not a descent direction any more
                break
            loss, grad, t, used, optimal = self._move(closure, flat, group, d, t, loss, grad, gtd,
                                                      last=n_iter == max_iter, max_trials=max_eval - evaluations)
            state["t"] = t
            evaluations += used
            state["func_evals"] += used
            if (n_iter == max_iter or evaluations >= max_eval or optimal
                    or d.mul(t).abs().max() <= tolerance_change or abs(loss - state["prev_loss"]) < tolerance_change):
                break

    def _move(self, closure: Callable[[], Any], flat: FlatParams, group: Mapping[str, Any], d: Tensor, t: Any,
              loss: float, grad: Tensor, gtd: Tensor, last: bool, max_trials: int
              ) -> tuple[float, Tensor, Any, int, Any]:
        """Step along ``d``: ``t`` as it is, or as the line search finds it. Returns the new loss,
        gradient, step length, evaluations used and whether the gradient is below ``tolerance_grad``.
        Without a line search the last iteration does not re-evaluate (the step's caller will)."""
        if group["line_search_fn"] is None:
            flat.add_(t, d)
            if last:
                return loss, grad, t, 0, False
            loss, grad = float(closure()), flat.grad()
            return loss, grad, t, 1, grad.abs().max() <= group["tolerance_grad"]
        start = flat.copy()

        def evaluate(trial: Any) -> tuple[float, Tensor]:
            flat.add_(trial, d)
            value, gradient = float(closure()), flat.grad()
            flat.restore(start)
            return value, gradient

        loss, grad, t, used = strong_wolfe(evaluate, d, t, loss, grad, gtd, max_trials=max_trials)
        flat.add_(t, d)
        return loss, grad, t, used, grad.abs().max() <= group["tolerance_grad"]


def check_history(owner: str, state: Mapping[str, Any], length: int) -> None:
    """L-BFGS's loaded state holds counters, and vectors as long as the flat parameters (``length``)."""
    for key in ("func_evals", "n_iter"):
        if key in state and (isinstance(state[key], bool) or not isinstance(state[key], int)):
            raise TypeError(f"{owner}: state {key!r} must be an integer, got {type(state[key]).__name__}")

    def check_vector(key: str, value: Any) -> None:
        if not isinstance(value, Tensor) or value.dim() != 1 or not value.is_floating_point():
            raise TypeError(f"{owner}: state {key} must be a 1-d floating-point tensor, got {value!r:.60}")
        if value.numel() != length:
            raise ValueError(f"{owner}: state {key} has {value.numel()} elements, but the parameters have {length} "
                             "(complex ones count twice): the state belongs to other parameters")

    for key in ("d", "prev_flat_grad"):
        if state.get(key) is not None:
            check_vector(repr(key), state[key])
    lists = {key: state[key] for key in ("old_dirs", "old_stps", "ro") if state.get(key) is not None}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise TypeError(f"{owner}: state {key!r} must be a list, got {type(value).__name__}")
    if len({len(value) for value in lists.values()}) > 1:
        raise ValueError(f"{owner}: state 'old_dirs', 'old_stps' and 'ro' must be as long as each other, got "
                         + ", ".join(f"{len(value)}" for value in lists.values()))
    for key in ("old_dirs", "old_stps"):
        for i, vector in enumerate(lists.get(key, [])):
            check_vector(f"{key!r}[{i}]", vector)
