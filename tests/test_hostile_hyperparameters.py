"""Bad values where hyperparameters enter: refused with a message naming the argument, the
group and what was expected, everywhere a value comes in (constructor, add_param_group, a value
written into ``param_groups`` before the next step, a schedule's value)."""

from __future__ import annotations

import math

import pytest
import torch

import optimlab
from optimlab.optimizers.registry import ENTRIES
from optimlab.schedules import Scheduler, linear

NEEDS_MATRIX = {e.name for e in ENTRIES if e.min_dim >= 2}


def params_for(name: str) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(3, 2) if name in NEEDS_MATRIX else torch.ones(3))]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -0.1])
@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_a_non_finite_or_negative_lr_is_refused_at_construction(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=r"lr must be"):
        getattr(optimlab, name)(params_for(name), lr=value)


@pytest.mark.parametrize("name", [e.name for e in ENTRIES if not e.single_group])
def test_an_infinite_lr_is_refused_in_add_param_group_and_leaves_the_optimizer_as_it_was(name: str) -> None:
    opt = getattr(optimlab, name)(params_for(name), lr=0.01)
    # ">= 0", or "> 0" where torch refuses a zero lr too (SparseAdam)
    with pytest.raises(ValueError, match=r"lr must be a finite number >?=? 0, got inf"):
        opt.add_param_group({"params": params_for(name), "lr": math.inf})
    assert len(opt.param_groups) == 1


def test_an_infinite_lr_written_into_a_group_is_refused_at_the_next_step() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = optimlab.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = math.inf
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0, got inf"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3)), "nothing changed"


def test_a_group_without_params_names_what_is_missing() -> None:
    opt = optimlab.Adam([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(TypeError, match=r"add_param_group: expected a dict with 'params'.*got keys \['lr'\]"):
        opt.add_param_group({"lr": 0.1})


def test_a_schedule_that_goes_negative_is_refused_when_it_gets_there_for_any_optimizer() -> None:
    """linear(0.1, -0.1, 100) driving torch.optim.SGD would run gradient ascent from step 51."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    scheduler = Scheduler(opt, {"lr": linear(0.1, -0.1, 100)})
    for _ in range(50):
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"param group 0's lr at step 51 would be -0\.002.*must be a finite number >= 0"):
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12), "the bad value was not written"


def test_a_scheduler_given_nan_names_the_hyperparameter() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    with pytest.raises(ValueError, match=r"Scheduler: 'lr': "):
        Scheduler(opt, {"lr": math.nan})
