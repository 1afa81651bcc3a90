"""ASGD beyond the registry's parity runs (and torch's error cases, tests/test_optim_db.py): a
scheduled learning rate, the average against the iterates it averages, and its 0-d state through a checkpoint."""

from __future__ import annotations

import pytest
import torch

import optimlab
from tests.helpers import compare_runs, grad_sequence, make_params, rel_error, set_grads, through_bytes
from tests.twins import scheduled_run


def test_learning_rate_written_between_steps_as_torch():
    """eta starts at the lr of each parameter's first step (some get their first gradient
    late); each later eta is made at the end of a step from that step's lr."""
    start = make_params([((4, 3), "transposed"), ((5,), "contiguous"), ((), "contiguous")], torch.float64, seed=7)
    sequence = grad_sequence(start, 20, seed=8, skip=0.4)
    lrs = [0.01, 0.02, 0.005, 0.1]
    hp = dict(lambd=0.5, t0=5)
    mine = scheduled_run(optimlab.ASGD, start, hp, lrs, sequence)
    theirs = scheduled_run(torch.optim.ASGD, start, hp, lrs, sequence)
    compare_runs("ASGD scheduled lr", mine, theirs, sequence, tol=1e-10)


@pytest.fixture
def float64_default():
    """float64 as the default dtype, which makes torch's (and optimlab's) 0-d state float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_ax_is_the_mean_of_the_iterates_from_step_t0_plus_2(float64_default):
    t0, steps = 4, 15
    p = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(9)).requires_grad_()
    optimizer = optimlab.ASGD([p], lr=0.05, lambd=0.01, t0=t0)
    iterates = []
    for grads in grad_sequence([p], steps, seed=10):
        set_grads([p], grads)
        optimizer.step()
        iterates.append(p.detach().clone())
        t = len(iterates)
        averaged = iterates[-1] if t <= t0 + 2 else torch.stack(iterates[t0 + 1:]).mean(0)
        assert rel_error(optimizer.state[p]["ax"], averaged) < 1e-13, f"step {t}"
    assert optimizer.state[p]["mu"].dtype == torch.float64


def test_eta_and_mu_keep_torch_dtype_through_checkpoints():
    """torch.optim's load_state_dict casts state to the parameters' dtype; eta and mu stay in
    torch's 0-d dtype (float32), from torch's checkpoint as from optimlab's, so the resumed
    run is the uninterrupted one."""
    start = make_params([((3, 2), "contiguous")], torch.float64, seed=11)
    sequence = grad_sequence(start, 10, seed=12)
    uninterrupted = [p.detach().clone().requires_grad_() for p in start]
    reference = torch.optim.ASGD(uninterrupted, t0=2)
    for grads in sequence:
        set_grads(uninterrupted, grads)
        reference.step()
    for source in (torch.optim.ASGD, optimlab.ASGD):
        params = [p.detach().clone().requires_grad_() for p in start]
        first = source(params, t0=2)
        for grads in sequence[:5]:
            set_grads(params, grads)
            first.step()
        resumed = optimlab.ASGD(params, t0=2)
        resumed.load_state_dict(through_bytes(first.state_dict()))
        state = resumed.state[params[0]]
        assert state["eta"].dtype == state["mu"].dtype == torch.float32, source
        for grads in sequence[5:]:
            set_grads(params, grads)
            resumed.step()
        assert rel_error(params[0], uninterrupted[0]) < 1e-14, source
        assert torch.equal(state["eta"], reference.state[uninterrupted[0]]["eta"]), source
