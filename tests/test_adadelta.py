"""Adadelta beyond the registry's parity runs (and torch's error cases, tests/test_optim_db.py): a
scheduled learning rate, and the first step worked out by hand from Zeiler (2012), Algorithm 1."""

from __future__ import annotations

import math

import torch

import optimlab
from tests.helpers import compare_runs, grad_sequence, make_params
from tests.twins import scheduled_run


def test_learning_rate_written_between_steps_as_torch():
    start = make_params([((4, 3), "transposed"), ((5,), "contiguous")], torch.float64, seed=3)
    sequence = grad_sequence(start, 20, seed=4, skip=0.3)
    lrs = [1.0, 0.5, 0.25, 2.0]
    hp = dict(rho=0.8, weight_decay=0.01)
    mine = scheduled_run(optimlab.Adadelta, start, hp, lrs, sequence)
    theirs = scheduled_run(torch.optim.Adadelta, start, hp, lrs, sequence)
    compare_runs("Adadelta scheduled lr", mine, theirs, sequence, tol=1e-10)


def test_first_step_is_sqrt_eps_over_rms_of_gradient():
    """Step 1: E[g^2] = (1 - rho) g^2, E[dx^2] = 0, so dx = sqrt(eps) / sqrt((1 - rho) g^2 + eps) * g."""
    rho, eps, g = 0.9, 1e-6, 0.3
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = optimlab.Adadelta([p], rho=rho, eps=eps)
    p.grad = torch.full_like(p, g)
    optimizer.step()
    dx = math.sqrt(eps) / math.sqrt((1 - rho) * g * g + eps) * g
    assert math.isclose(p.item(), -dx, rel_tol=1e-14)
    assert math.isclose(optimizer.state[p]["acc_delta"].item(), (1 - rho) * dx * dx, rel_tol=1e-14)
