"""Adafactor beyond the registry's parity runs (and torch's error cases, tests/test_optim_db.py):
parameters of 3 and 4 dimensions (factored over the last two, as torch) and degenerate matrices, a checkpoint moved
from torch mid-run, a scheduled learning rate, and eps1=None in a group of mixed dtypes."""

from __future__ import annotations

import pytest
import torch

import optimlab
from tests.helpers import (
    Run,
    clone_params,
    compare_runs,
    grad_sequence,
    make_params,
    rel_error,
    run_steps,
    set_grads,
    through_bytes,
)
from tests.twins import scheduled_run

#: Shapes and layouts: batches of matrices (3-D, 4-D), rows and columns of one element.
SPECS = [((2, 3, 4), "contiguous"), ((2, 3, 4, 5), "transposed"), ((3, 2, 5, 2), "strided"), ((1, 6), "contiguous"),
         ((6, 1), "transposed"), ((3, 1, 4), "strided")]
HP = dict(lr=0.05, weight_decay=0.1, d=1.2)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("maximize", [False, True])
def test_higher_dimensional_parameters_as_torch(dtype, tol, maximize):
    start = make_params(SPECS, dtype, seed=13)
    sequence = grad_sequence(start, 30, seed=14, skip=0.2)
    hp = dict(HP, maximize=maximize)
    mine = Run.build(optimlab.Adafactor, start, hp, {"lr": 0.02}, split=3).steps(sequence)
    theirs = Run.build(torch.optim.Adafactor, start, hp, {"lr": 0.02}, split=3).steps(sequence)
    compare_runs(f"Adafactor {str(dtype)[6:]} factored", mine, theirs, sequence, tol)
    for p in mine.params:  # the factors' shapes, beyond torch's: rows and columns kept as size-1 dims
        state = mine.optimizer.state[p]
        assert state["row_var"].shape == (*p.shape[:-1], 1) and state["col_var"].shape == (*p.shape[:-2], 1, p.shape[-1])


def test_torch_checkpoint_of_factored_state_goes_on_as_torch():
    start = make_params(SPECS, torch.float64, seed=15)
    sequence = grad_sequence(start, 20, seed=16)
    theirs = Run.build(torch.optim.Adafactor, start, HP, {"lr": 0.02}, split=3).steps(sequence)
    params = clone_params(start)
    first = torch.optim.Adafactor([{"params": params[:3]}, {"params": params[3:], "lr": 0.02}], **HP)
    run_steps(first, params, sequence[:10])
    mine = optimlab.Adafactor([{"params": params[:3]}, {"params": params[3:], "lr": 0.02}], **HP)
    mine.load_state_dict(through_bytes(first.state_dict()))
    run_steps(mine, params, sequence[10:])
    for p, q in zip(params, theirs.params, strict=True):
        assert rel_error(p, q) < 1e-10


def test_learning_rate_written_between_steps_as_torch():
    """lr caps the relative step size and scales the weight decay, read on every step; with
    lr 0.5 the cap 1/sqrt(t) takes over from step 5."""
    start = make_params([((4, 3), "transposed"), ((5,), "contiguous"), ((), "contiguous")], torch.float64, seed=17)
    sequence = grad_sequence(start, 20, seed=18, skip=0.3)
    lrs = [0.5, 0.01, 0.2, 0.05]
    hp = dict(weight_decay=0.05)
    mine = scheduled_run(optimlab.Adafactor, start, hp, lrs, sequence)
    theirs = scheduled_run(torch.optim.Adafactor, start, hp, lrs, sequence)
    compare_runs("Adafactor scheduled lr", mine, theirs, sequence, tol=1e-10)


def test_eps1_none_is_each_parameters_own_machine_epsilon():
    """In a group of float32 and float64 parameters, eps1=None floors each at its own dtype's
    machine epsilon: each parameter moves as in a torch optimizer of its own (torch's loop takes
    the first parameter's dtype for the whole group)."""
    gen = torch.Generator().manual_seed(19)
    # Gradients of 1e-12 sit below float32's eps1^2 floor (1.4e-14 on g^2) but not float64's.
    tiny = [torch.randn(4, 3, generator=gen, dtype=torch.float64) * 1e-12 for _ in range(3)]
    start = [torch.randn(4, 3, generator=gen).requires_grad_(),
             torch.randn(4, 3, generator=gen, dtype=torch.float64).requires_grad_()]
    mixed = clone_params(start)
    optimizer = optimlab.Adafactor(mixed)
    separate = clone_params(start)
    references = [torch.optim.Adafactor([p]) for p in separate]
    for g in tiny:
        set_grads(mixed, [g.to(p.dtype) for p in mixed])
        set_grads(separate, [g.to(p.dtype) for p in separate])
        optimizer.step()
        for reference in references:
            reference.step()
    assert rel_error(mixed[0], separate[0]) < 1e-6
    assert rel_error(mixed[1], separate[1]) < 1e-12
