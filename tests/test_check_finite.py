"""``check_finite=True``: a NaN or infinite gradient (or closure loss) raises before the step
changes anything, for every optimizer of the registry; the option travels with the groups.

With the default ``check_finite=False`` NaN goes through the update as in torch.optim, which the
registry-wide comparisons with torch cover (tests/test_optim_db.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import Tensor

import optimlab
from optimlab.optimizers.registry import ENTRIES, REGISTRY
from tests.helpers import (
    as_fed,
    fit_specs,
    grad_sequence,
    make_params,
    rich_config,
    run_steps,
    same,
    snapshot,
    step_with,
)

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = [entry.name for entry in ENTRIES]
SPECS = [((3, 4), "contiguous"), ((5,), "contiguous"), ((2, 3), "transposed")]
BAD = {"nan": float("nan"), "inf": float("inf"), "-inf": -float("inf")}


def named_params(name: str, dtype: torch.dtype = torch.float64) -> list[tuple[str, Tensor]]:
    params = make_params(fit_specs(name, SPECS), dtype, seed=3)
    return list(zip(("w", "b", "v"), params, strict=True))


def build(name: str, named: list[tuple[str, Tensor]], **options: Any) -> torch.optim.Optimizer:
    return REGISTRY[name].cls(named, **{**rich_config(name), **options})


def feed(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], grads: Sequence[Tensor], loss: float = 1.0
         ) -> Any:
    """One step on ``grads``: set directly, or set by a closure that returns ``loss`` (L-BFGS)."""
    fed = as_fed(optimizer, grads)

    def closure() -> Tensor:
        for p, g in zip(params, fed, strict=True):
            p.grad = g.clone()
        return torch.tensor(loss, dtype=torch.float64)

    if REGISTRY[type(optimizer).__name__].needs_closure:
        return optimizer.step(closure)
    closure()
    return optimizer.step()


def poisoned(grads: Sequence[Tensor], value: float, where: int = 1) -> list[Tensor]:
    """``grads`` with two values of gradient ``where`` replaced by ``value``."""
    out = [g.clone() for g in grads]
    out[where].view(-1)[:2] = value
    return out


def started(name: str, **options: Any) -> tuple[torch.optim.Optimizer, list[Tensor], list[list[Tensor]]]:
    """An optimizer with state after two good steps, its parameters, and the next gradients."""
    named = named_params(name)
    params = [p for _, p in named]
    optimizer = build(name, named, **options)
    sequence = grad_sequence(params, 3, seed=5)
    run_steps(optimizer, params, sequence[:2])
    return optimizer, params, sequence[2]


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("name", NAMES)
def test_a_non_finite_gradient_raises_and_changes_nothing(name: str, bad: str) -> None:
    optimizer, params, grads = started(name, check_finite=True)
    before, state_dict = snapshot(optimizer), copy.deepcopy(optimizer.state_dict())
    with pytest.raises(FloatingPointError) as error:
        feed(optimizer, params, poisoned(grads, BAD[bad]))
    message = str(error.value)
    kind = "NaN" if bad == "nan" else "infinite"
    assert f"optimlab.{name}:" in message and f"parameter 'b' of group 0 has 2 {kind}" in message, message
    assert "check_finite=True" in message and "nothing was stepped" in message, message
    assert same(snapshot(optimizer), before)
    assert same(optimizer.state_dict(), state_dict)
    # The same optimizer steps on once the gradients are finite again.
    step_with(optimizer, params, grads)
    assert not same(snapshot(optimizer)["values"], before["values"])


@pytest.mark.parametrize("name", [entry.name for entry in ENTRIES if entry.twin() is not None])
def test_off_by_default_the_step_takes_the_non_finite_values_as_torch(name: str) -> None:
    entry = REGISTRY[name]
    runs = []
    for cls in (entry.cls, entry.twin()):
        named = named_params(name)
        params = [p for _, p in named]
        optimizer = cls(named, **rich_config(name))
        sequence = grad_sequence(params, 3, seed=5)
        run_steps(optimizer, params, sequence[:2])
        feed(optimizer, params, poisoned(sequence[2], float("nan")))
        runs.append(params)
    mine, theirs = runs
    assert REGISTRY[name].cls(named_params(name)).defaults["check_finite"] is False
    torch.testing.assert_close(mine, theirs, equal_nan=True, rtol=1e-9, atol=1e-12)


def test_a_closure_loss_that_is_not_finite_raises_before_the_step() -> None:
    for name in ("SGD", "LBFGS"):
        optimizer, params, grads = started(name, check_finite=True)
        before = snapshot(optimizer)
        with pytest.raises(FloatingPointError, match=rf"optimlab.{name}: the loss the closure returned is 1 NaN"):
            optimizer.step(lambda: torch.tensor(float("nan")))
        with pytest.raises(FloatingPointError, match="the loss the closure returned is inf"):
            optimizer.step(lambda: float("inf"))
        assert same(snapshot(optimizer), before)


def test_the_message_counts_and_names_parameters_by_position_without_names() -> None:
    params = make_params(SPECS, torch.float32, seed=1)
    optimizer = optimlab.Adam([{"params": params[:1]}, {"params": params[1:], "check_finite": True}])
    grads = [torch.ones(p.shape) for p in params]
    grads[2].view(-1)[0] = float("nan")
    grads[2].view(-1)[1:4] = float("inf")
    grads[1].view(-1)[0] = float("inf")
    grads[0].view(-1)[0] = float("nan")  # group 0 does not check: not named
    with pytest.raises(FloatingPointError) as error:
        feed(optimizer, params, grads)
    assert str(error.value) == ("optimlab.Adam: the gradient of parameter #0 of group 1 has 1 infinite of 5 values "
                                "(and 1 more parameter(s)); with check_finite=True nothing was stepped")
    grads[1].view(-1)[0] = 0.0
    with pytest.raises(FloatingPointError, match="parameter #1 of group 1 has 1 NaN and 3 infinite of 6 values;"):
        feed(optimizer, params, grads)


def test_only_the_groups_that_ask_are_checked() -> None:
    a, b = make_params(SPECS[:2], torch.float64, seed=2)
    optimizer = optimlab.SGD([{"params": [a]}, {"params": [b], "check_finite": True}], lr=0.1)
    a.grad, b.grad = torch.full_like(a, float("nan")), torch.ones_like(b)
    optimizer.step()
    assert a.isnan().all() and not b.isnan().any()


def test_complex_sparse_and_empty_gradients_are_checked() -> None:
    z = torch.zeros(3, dtype=torch.complex64, requires_grad=True)
    optimizer = optimlab.Adam([z], check_finite=True)
    z.grad = torch.tensor([1, complex(0, float("inf")), 2], dtype=torch.complex64)
    with pytest.raises(FloatingPointError, match="1 infinite of 3 values"):
        optimizer.step()
    rows = torch.zeros(4, 2, requires_grad=True)
    sparse = optimlab.SparseAdam([rows], check_finite=True)
    rows.grad = torch.sparse_coo_tensor([[0, 2]], torch.tensor([[1.0, 1.0], [float("nan"), 1.0]]), (4, 2),
                                        check_invariants=True)
    with pytest.raises(FloatingPointError, match="1 NaN of 4 values"):
        sparse.step()
    rows.grad = torch.sparse_coo_tensor(torch.zeros(1, 0, dtype=torch.long), torch.zeros(0, 2), (4, 2),
                                        check_invariants=True)
    sparse.step()  # no rows, nothing to check
    assert not sparse.state or all(not s["exp_avg"].isnan().any() for s in sparse.state.values())


def test_the_option_travels_with_groups_and_checkpoints() -> None:
    a, b = make_params(SPECS[:2], torch.float64, seed=4)
    optimizer = optimlab.AdamW([a], check_finite=True)
    optimizer.add_param_group({"params": [b], "check_finite": False})
    assert [g["check_finite"] for g in optimizer.param_groups] == [True, False]
    saved = optimizer.state_dict()
    assert [g["check_finite"] for g in saved["param_groups"]] == [True, False]
    fresh = optimlab.AdamW([{"params": [a]}, {"params": [b]}])
    fresh.load_state_dict(saved)
    assert [g["check_finite"] for g in fresh.param_groups] == [True, False]
    # torch's checkpoint has no such key: the loading optimizer's default fills it in.
    theirs = torch.optim.AdamW([{"params": [a]}, {"params": [b]}]).state_dict()
    checking = optimlab.AdamW([{"params": [a]}, {"params": [b]}], check_finite=True)
    checking.load_state_dict(theirs)
    assert [g["check_finite"] for g in checking.param_groups] == [True, True]
    # optimlab's loads into torch's twin, which keeps the key and ignores it.
    twin = torch.optim.AdamW([{"params": [a]}, {"params": [b]}])
    twin.load_state_dict(saved)


def test_a_value_that_is_not_a_flag_is_refused_where_it_enters() -> None:
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="optimlab.SGD: check_finite must be True or False, got int 1"):
        optimlab.SGD([p], check_finite=1)
    optimizer = optimlab.SGD([p])
    with pytest.raises(TypeError, match="check_finite must be True or False, got str 'yes'"):
        optimizer.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "check_finite": "yes"})
    assert len(optimizer.param_groups) == 1
