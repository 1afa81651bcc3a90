"""L-BFGS beyond the registry's parity test (and torch's error cases, tests/test_optim_db.py): the
strong Wolfe line search on Rosenbrock's valley, checkpoints mid-run in both directions, gradients of any layout, and the
checks on loaded state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from torch import Tensor

import optimlab
from tests.helpers import record, rel_error, through_bytes, worst_difference


def test_one_parameter_group_only() -> None:
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="parameter groups"):
        optimlab.LBFGS([{"params": [a]}, {"params": [b]}])
    optimizer = optimlab.LBFGS([a])
    with pytest.raises(ValueError, match="parameter groups"):
        optimizer.add_param_group({"params": [b]})
    assert len(optimizer.param_groups) == 1


def test_arguments_are_checked_at_construction() -> None:
    """torch takes any ``line_search_fn`` and fails at the first step (RuntimeError)."""
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="line_search_fn must be one of None, 'strong_wolfe'"):
        optimlab.LBFGS([x], line_search_fn="armijo")
    with pytest.raises(ValueError, match="history_size must be >= 1"):
        optimlab.LBFGS([x], history_size=0)
    with pytest.raises(TypeError):
        optimlab.LBFGS([x]).step()  # type: ignore[call-arg]  # a closure is required, as in torch
    with pytest.raises(ValueError, match="tolerance_grad must be a real number, got nan"):
        optimlab.LBFGS([x], tolerance_grad=float("nan"))


@pytest.mark.parametrize("tolerance_grad", [float("inf"), float("-inf")])
@pytest.mark.parametrize("tolerance_change", [1e-9, float("-inf")])
def test_infinite_tolerances_are_taken_as_torch(tolerance_grad: float, tolerance_change: float) -> None:
    """``tolerance_grad=inf``: the start counts as optimal, the step returns the loss without a
    move; ``-inf`` never stops on the gradient (nor ``tolerance_change=-inf`` on the change).
    Same parameters, state and returned loss as torch's."""
    kwargs = dict(tolerance_grad=tolerance_grad, tolerance_change=tolerance_change, max_iter=4, history_size=3)
    mine, theirs = start(torch.float64), start(torch.float64)
    my_optimizer, their_optimizer = optimlab.LBFGS(mine, **kwargs), torch.optim.LBFGS(theirs, **kwargs)
    my_loss = my_optimizer.step(closure_for(my_optimizer, mine))
    their_loss = their_optimizer.step(closure_for(their_optimizer, theirs))
    assert type(my_loss) is type(their_loss) and my_loss.item() == their_loss.item()
    moved = any(not torch.equal(p, q) for p, q in zip(mine, start(torch.float64)))
    assert moved == (tolerance_grad == float("-inf"))
    for p, q in zip(mine, theirs, strict=True):
        assert rel_error(p.detach(), q.detach()) <= 1e-12
    assert my_optimizer.state[mine[0]].keys() == their_optimizer.state[theirs[0]].keys()


# -- Rosenbrock's valley, over parameters of several shapes ---------------------------------
SHAPES = [(3, 4), (5,), ()]


def rosenbrock(params: Sequence[Tensor]) -> Tensor:
    """The extended Rosenbrock function of all parameters as one vector (minimum 0 at all ones)."""
    x = torch.cat([p.reshape(-1) for p in params])
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def start(dtype: torch.dtype) -> list[Tensor]:
    """The classic start (-1.2, 1, -1.2, 1, ...), spread over :data:`SHAPES`."""
    flat = torch.tensor([-1.2, 1.0], dtype=dtype).repeat(9)
    sizes = [torch.Size(shape).numel() for shape in SHAPES]
    return [part.reshape(shape).clone().requires_grad_() for part, shape in zip(flat.split(sizes), SHAPES)]


def closure_for(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Callable[[], Tensor]:
    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = rosenbrock(params)
        loss.backward()
        return loss
    return closure


def run(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], steps: int) -> None:
    for _ in range(steps):
        optimizer.step(closure_for(optimizer, params))


def assert_same_run(key: str, mine: torch.optim.Optimizer, theirs: torch.optim.Optimizer, my_params: Sequence[Tensor],
                    their_params: Sequence[Tensor], tol: float) -> None:
    """Parameters and the whole state (counters, vectors, history lists) within ``tol``."""
    for p, q in zip(my_params, their_params, strict=True):
        assert record(f"{key} params", rel_error(p.detach(), q.detach())) <= tol
    my_state, their_state = mine.state[my_params[0]], theirs.state[their_params[0]]
    assert my_state.keys() == their_state.keys()
    for name, value in their_state.items():
        scale = value.abs().max().item() if isinstance(value, Tensor) and value.numel() else None
        error = record(f"{key} state", worst_difference(my_state[name], value, scale, name))
        assert error <= tol, f"state {name!r}: {error:.3e} > {tol:.0e}"


CONFIGS = {"strong_wolfe": dict(line_search_fn="strong_wolfe", history_size=5, max_iter=10),
           "fixed step": dict(lr=0.05, history_size=5, max_iter=10)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_rosenbrock_matches_torch(name: str, dtype: torch.dtype) -> None:
    """Step by step from the classic start, the history full after the first steps: parameters
    and state after every step; with the line search, the valley is followed to the minimum."""
    config = CONFIGS[name]
    mine, theirs = start(dtype), start(dtype)
    my_optimizer, their_optimizer = optimlab.LBFGS(mine, **config), torch.optim.LBFGS(theirs, **config)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for _ in range(15):
        run(my_optimizer, mine, 1)
        run(their_optimizer, theirs, 1)
        assert_same_run(f"LBFGS Rosenbrock {name} {dtype}", my_optimizer, their_optimizer, mine, theirs, tol)
    if name == "strong_wolfe" and dtype == torch.float64:
        assert rosenbrock(mine).item() < 1e-8  # from 4090 at the start


@pytest.mark.parametrize("direction", ["optimlab to optimlab", "torch to optimlab", "optimlab to torch"])
def test_checkpoint_mid_run_moves_both_ways(direction: str) -> None:
    """Saved after 3 steps (still in the valley, the history filling), loaded by a fresh optimizer
    through bytes, 5 more steps: as one uninterrupted torch run."""
    config = dict(line_search_fn="strong_wolfe", history_size=4, max_iter=4)
    theirs = start(torch.float64)
    reference = torch.optim.LBFGS(theirs, **config)
    run(reference, theirs, 8)

    params = start(torch.float64)
    first, second = direction.split(" to ")
    classes = {"optimlab": optimlab.LBFGS, "torch": torch.optim.LBFGS}
    before = classes[first](params, **config)
    run(before, params, 3)
    assert 0 < len(before.state[params[0]]["old_dirs"]) <= 4 and rosenbrock(params).item() > 1e-3
    after = classes[second](params, **config)
    after.load_state_dict(through_bytes(before.state_dict()))
    run(after, params, 5)
    assert_same_run(f"LBFGS checkpoint {direction}", after, reference, params, theirs, 1e-10)


def test_gradients_of_any_layout() -> None:
    """A transposed parameter gets a transposed gradient from autograd, which torch.optim.LBFGS
    cannot flatten (``view(-1)``); optimlab steps it as torch steps a contiguous copy."""
    contiguous = start(torch.float64)
    transposed = [p.detach().mT.contiguous().mT.requires_grad_() if p.dim() == 2 else p.detach().clone().requires_grad_()
                  for p in contiguous]
    assert not transposed[0].is_contiguous()
    mine = optimlab.LBFGS(transposed, line_search_fn="strong_wolfe")
    theirs = torch.optim.LBFGS(contiguous, line_search_fn="strong_wolfe")
    run(mine, transposed, 3)
    assert not transposed[0].grad.is_contiguous()
    run(theirs, contiguous, 3)
    assert_same_run("LBFGS transposed", mine, theirs, transposed, contiguous, 1e-10)


def test_parameters_without_gradients_count_as_zero() -> None:
    """A parameter the loss does not use keeps ``grad=None``: zeros in the flat gradient, as torch."""
    def make() -> list[Tensor]:
        return [*start(torch.float64), torch.ones(2, dtype=torch.float64, requires_grad=True)]

    mine, theirs = make(), make()
    my_optimizer, their_optimizer = optimlab.LBFGS(mine), torch.optim.LBFGS(theirs)
    for optimizer, params in ((my_optimizer, mine), (their_optimizer, theirs)):
        for _ in range(3):
            optimizer.step(closure_for(optimizer, params[:-1]))
    assert mine[-1].grad is None
    assert_same_run("LBFGS without gradients", my_optimizer, their_optimizer, mine, theirs, 1e-10)


def stepped_state_dict() -> tuple[list[Tensor], dict[str, Any]]:
    params = start(torch.float64)
    optimizer = optimlab.LBFGS(params, history_size=3)
    run(optimizer, params, 2)
    return params, optimizer.state_dict()


@pytest.mark.parametrize(("damage", "error", "message"), [
    (lambda s: s["state"][0].update(exp_avg=torch.zeros(3)), ValueError, "'exp_avg' is not kept"),
    (lambda s: s["state"][0].update(d=torch.zeros(7, dtype=torch.float64)), ValueError, "has 7 elements"),
    (lambda s: s["state"][0]["old_stps"].pop(), ValueError, "as long as each other"),
    (lambda s: s["state"][0].update(n_iter=2.5), TypeError, "'n_iter' must be an integer"),
    (lambda s: s["state"].update({1: s["state"].pop(0)}), ValueError, "on the first parameter only"),
], ids=["foreign key", "wrong length", "history lengths", "counter", "second parameter"])
def test_loaded_state_is_checked(damage: Callable[[dict], Any], error: type, message: str) -> None:
    params, state_dict = stepped_state_dict()
    damage(state_dict)
    optimizer = optimlab.LBFGS(params, history_size=3)
    with pytest.raises(error, match=message):
        optimizer.load_state_dict(state_dict)
    assert not optimizer.state  # nothing loaded
