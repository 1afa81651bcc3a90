"""Rprop beyond the registry's parity runs (and torch's error cases, tests/test_optim_db.py): the
checks of its pairs, a scheduled learning rate (read once, on a parameter's first step), and the sign rules of
Riedmiller & Braun (1993) worked out by hand."""

from __future__ import annotations

import warnings

import pytest
import torch

import optimlab
from optimlab import engine
from tests.helpers import compare_runs, grad_sequence, make_params
from tests.twins import scheduled_run


@pytest.mark.parametrize(("bad", "error", "fragment"), [
    (dict(etas=(1.0, 1.2)), ValueError, "etas[0] must be in (0, 1), got 1.0"),
    (dict(etas=(0.5, 1.0)), ValueError, "etas[1] must be > 1, got 1.0"),
    (dict(etas=0.5), TypeError, "etas must be a pair (etaminus, etaplus)"),
    (dict(step_sizes=(-1e-6, 50)), ValueError, "step_sizes[0] must be a finite number >= 0"),
    (dict(step_sizes=(1e-6,)), TypeError, "step_sizes must be a pair"),
])
def test_bad_pairs_are_named(bad, error, fragment):
    with pytest.raises(error, match="optimlab.Rprop") as raised:
        optimlab.Rprop([torch.zeros(2, requires_grad=True)], **bad)
    assert fragment in str(raised.value)


def test_learning_rate_written_between_steps_as_torch():
    """The step sizes start at the lr of each parameter's first step (some parameters get their
    first gradient late) and never read lr again."""
    start = make_params([((4, 3), "transposed"), ((5,), "contiguous"), ((), "contiguous")], torch.float64, seed=5)
    sequence = grad_sequence(start, 20, seed=6, skip=0.4)
    lrs = [0.01, 0.02, 0.005, 0.1]
    mine = scheduled_run(optimlab.Rprop, start, {}, lrs, sequence)
    theirs = scheduled_run(torch.optim.Rprop, start, {}, lrs, sequence)
    compare_runs("Rprop scheduled lr", mine, theirs, sequence, tol=1e-10)


def test_step_sizes_grow_while_the_sign_holds_and_a_flip_skips_one_step():
    lr, (eta_minus, eta_plus) = 0.1, (0.5, 1.2)
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = optimlab.Rprop([p], lr=lr, etas=(eta_minus, eta_plus))
    expected = [
        (1.0, -lr, lr),                                         # no previous sign: lr as it is
        (1.0, -lr - lr * eta_plus, lr * eta_plus),              # same sign: grows
        (-1.0, -lr - lr * eta_plus, lr * eta_plus * eta_minus),  # flip: shrinks, no step
        (-1.0, -lr - lr * eta_plus + lr * eta_plus * eta_minus, lr * eta_plus * eta_minus),  # after a flip: as it is
    ]
    for t, (g, value, step_size) in enumerate(expected, start=1):
        p.grad = torch.full_like(p, g)
        optimizer.step()
        assert p.item() == pytest.approx(value, rel=1e-15), f"step {t}"
        assert optimizer.state[p]["step_size"].item() == pytest.approx(step_size, rel=1e-15), f"step {t}"


@pytest.mark.parametrize("step_sizes", [(0, 50), (1e-6, 0)])
def test_a_zero_step_size_bound_stays_on_the_fused_path_as_torch(step_sizes):
    """A bound of 0 reaches the update as a plain 0 beside a tensor bound; the step still runs
    on the kernel, without a warning, with torch's numbers (a minimum of 0: torch's test of
    parameter groups at a tiny lr uses it)."""
    start = make_params([((4, 3), "contiguous"), ((5,), "contiguous")], torch.float64, seed=7)
    mine = [p.detach().clone().requires_grad_() for p in start]
    theirs = [p.detach().clone().requires_grad_() for p in start]
    my_optimizer = optimlab.Rprop(mine, lr=1e-3, step_sizes=step_sizes)
    their_optimizer = torch.optim.Rprop(theirs, lr=1e-3, step_sizes=step_sizes)
    counts = {}
    with engine.using("auto"), warnings.catch_warnings():
        warnings.simplefilter("error")
        for t, grads in enumerate(grad_sequence(start, 10, seed=8)):
            if t == 1:  # the first step makes the step sizes (eagerly); the later ones are counted
                counts = dict(engine.path_counts)
            for optimizer, params in ((my_optimizer, mine), (their_optimizer, theirs)):
                for p, g in zip(params, grads):
                    p.grad = g.clone()
                optimizer.step()
    assert engine.path_counts["eager"] == counts.get("eager", 0)
    assert engine.path_counts["fused"] - counts.get("fused", 0) == 2 * 9
    for p, q in zip(mine, theirs, strict=True):
        assert torch.equal(p, q)
