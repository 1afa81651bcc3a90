"""Differential tests of the five classics (SGD, Adagrad, RMSprop, Adam, AdamW) against their
torch.optim twins, step for step, with hyperparameters drawn by hypothesis over their options'
full ranges (tests/strategies.py): the deep draw. Every optimizer's parity, these five's
included, is also checked configuration by configuration in tests/test_registry.py; a new
optimizer needs a strategy in tests/strategies.py only to join this deeper search.

Both optimizers start from identical parameters (same values, dtype and strides: 0-d,
contiguous, transposed and strided views), get two parameter groups with different
hyperparameters (group 0 takes the constructor's, group 1 overrides all of them, structural
flags included) and the same random gradients for 50 steps, some of them None (that parameter
is skipped that step). Afterwards every parameter, and the state of every parameter that was
stepped, must agree within (relative error as defined in tests/helpers.py):

* float64 / complex128: 1e-10 over the full hyperparameter ranges;
* float32 / complex64: 1e-5 in the well-conditioned regime (tests/strategies.py says why);
* bfloat16: as accurate as torch's own bfloat16 run, see :func:`test_bfloat16`.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import (
    Grads,
    Run,
    cast_sequence,
    clone_params,
    compare_runs,
    grad_sequence,
    make_params,
    max_rel_error,
    record,
    twins,
    values,
)
from tests.strategies import DRAWN, VARIANTS, hyperparams, param_specs, seeds, variant_id

STEPS = 50
SKIP = 0.15
TOL = {torch.float64: 1e-10, torch.complex128: 1e-10, torch.float32: 1e-5, torch.complex64: 1e-5}


def prepare(name: str, specs: list, dtype: torch.dtype, seed: int, hp: dict[str, Any], override: dict[str, Any],
          split: int) -> tuple[list[torch.Tensor], Grads, dict[str, Any], int]:
    """Parameters and gradients for a comparison; the group split and override made valid."""
    params = make_params(specs, dtype, seed)
    if name == "Adagrad":
        # torch.optim.Adagrad fills every accumulator from the constructor's value and ignores
        # a group's own (test_adagrad_group_initial_accumulator_value); compare where they agree.
        override = {**override, "initial_accumulator_value": hp["initial_accumulator_value"]}
    return params, grad_sequence(params, STEPS, seed + 1, skip=SKIP), override, min(max(split, 1), len(params) - 1)


def check_against_torch(name: str, dtype: torch.dtype, data: Any, specs: list, seed: int, split: int,
                        **flags: Any) -> None:
    conditioned = dtype in (torch.float32, torch.complex64)
    hp = data.draw(hyperparams(name, conditioned, **flags), label="constructor")
    override = data.draw(hyperparams(name, conditioned), label="group 1")
    params, sequence, override, split = prepare(name, specs, dtype, seed, hp, override, split)
    mine_cls, torch_cls = twins(name)
    mine = Run.build(mine_cls, params, hp, override, split).steps(sequence)
    theirs = Run.build(torch_cls, params, hp, override, split).steps(sequence)
    # float64 also meets the bound scaled by the final values alone (float32 cannot: a parameter
    # that wanders to 3 and ends at 0.01 carries float32 rounding of 3; see tests/helpers.py).
    final_tol = TOL[dtype] if dtype in (torch.float64, torch.complex128) else None
    compare_runs(f"{name} {str(dtype)[6:]}", mine, theirs, sequence, TOL[dtype], final_tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@settings(max_examples=8)
@given(data=st.data(), specs=param_specs(), seed=seeds, split=st.integers(1, 3))
def test_matches_torch(variant, dtype, data, specs, seed, split):
    name, flags = variant
    check_against_torch(name, dtype, data, specs, seed, split, **flags)


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64], ids=str)
@pytest.mark.parametrize("name", DRAWN)
@settings(max_examples=8)
@given(data=st.data(), specs=param_specs(), seed=seeds, split=st.integers(1, 3))
def test_complex_matches_torch(name, dtype, data, specs, seed, split):
    """Complex parameters are optimized as pairs of reals (torch.view_as_real), state included."""
    check_against_torch(name, dtype, data, specs, seed, split)


#: bfloat16 keeps 8 significant bits: its unit roundoff is 2**-8. Rounding once per step, a run
#: of STEPS steps accumulates ~sqrt(STEPS) roundoffs (a random walk): the noise of a whole run.
BF16_RUN_NOISE = STEPS**0.5 * 2.0**-8


@pytest.mark.parametrize("name", DRAWN)
@settings(max_examples=8)
@given(data=st.data(), specs=param_specs(), seed=seeds, split=st.integers(1, 3))
def test_bfloat16(name, data, specs, seed, split):
    """bfloat16: optimlab must be as accurate as torch.optim, measured against float64.

    Both bfloat16 runs carry rounding errors of order sqrt(steps) * 2**-8 (measured: up to ~0.07
    of the run's scale after 50 steps), and the two implementations round at different points
    (lerp or mul/add, one fused rounding or two), so they drift apart by as much as each is off:
    comparing them with each other would need a tolerance loose enough to hide real bugs.
    Instead both are compared with the float64 run from the same (bfloat16-rounded) start and
    gradients: optimlab's error may be at most twice torch's plus one run's worth of rounding
    noise, :data:`BF16_RUN_NOISE` ~ 0.028 (measured over 600 random draws: the excess over twice
    torch's error stays below 0.37 of it). A wrong formula errs O(1).
    """
    hp = data.draw(hyperparams(name, conditioned=True), label="constructor")
    override = data.draw(hyperparams(name, conditioned=True), label="group 1")
    params, sequence, override, split = prepare(name, specs, torch.bfloat16, seed, hp, override, split)
    mine_cls, torch_cls = twins(name)
    mine = Run.build(mine_cls, params, hp, override, split).steps(sequence)
    theirs = Run.build(torch_cls, params, hp, override, split).steps(sequence)
    exact = Run.build(torch_cls, clone_params(params, torch.float64), hp, override, split)
    exact.steps(cast_sequence(sequence, torch.float64))
    scales = [exact.scale["param", i] for i in range(len(params))]
    mine_error = max_rel_error(values(mine.params), values(exact.params), scales)
    torch_error = max_rel_error(values(theirs.params), values(exact.params), scales)
    record(f"{name} bfloat16 vs float64 (optimlab)", mine_error)
    record(f"{name} bfloat16 vs float64 (torch)", torch_error)
    record(f"{name} bfloat16 params", max_rel_error(values(mine.params), values(theirs.params), scales))
    assert all(p.dtype == torch.bfloat16 for p in mine.params)
    assert mine_error <= 2 * torch_error + BF16_RUN_NOISE, (
        f"bfloat16: optimlab is {mine_error:.3e} from float64, torch.optim {torch_error:.3e}")


def test_adagrad_group_initial_accumulator_value():
    """A deliberate difference: optimlab honours a group's ``initial_accumulator_value``;
    torch.optim.Adagrad (2.13) fills every group's accumulator with the constructor's value."""
    sums = []
    for cls in twins("Adagrad"):
        p, q = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
        optimizer = cls([{"params": [p]}, {"params": [q], "initial_accumulator_value": 0.5}])
        p.grad, q.grad = torch.ones(3), torch.ones(3)
        optimizer.step()
        sums.append([optimizer.state[x]["sum"].tolist() for x in (p, q)])
    assert sums == [[[1.0] * 3, [1.5] * 3], [[1.0] * 3, [1.0] * 3]]
