"""NAdam, RAdam and Adamax: what the registry's parity test (tests/test_registry.py) cannot express.

* the constructors have torch's signatures and fill the groups with torch's keys;
* a 0-d tensor learning rate, and float64 as the default dtype (which makes NAdam's
  ``mu_product`` and the step count float64), against torch;
* checkpoints going from optimlab to torch.optim (the registry test loads torch's into optimlab);
* the fused CPU path really runs RAdam's rectification branch (``core.select``) and Adamax.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import optimlab
from optimlab import engine
from tests.helpers import (
    clone_params,
    described_signature,
    expected_signature,
    grad_sequence,
    make_params,
    max_rel_error,
    set_grads,
    through_bytes,
    without_extra_options,
)

NAMES = ("NAdam", "RAdam", "Adamax")
SHAPES = [((), "contiguous"), ((3,), "contiguous"), ((4, 5), "transposed")]


@pytest.mark.parametrize("name", NAMES)
def test_signature_and_groups_are_torchs(name: str) -> None:
    mine, theirs = getattr(optimlab, name), getattr(torch.optim, name)
    assert described_signature(mine) == expected_signature(theirs)
    params = [torch.zeros(2, requires_grad=True)]
    kwargs = dict(foreach=False, capturable=False, maximize=True)
    groups = mine(params, **kwargs).param_groups
    assert [without_extra_options(group) for group in groups] == theirs(params, **kwargs).param_groups


CONFIGS = [("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
           ("RAdam", dict(lr=0.01, weight_decay=0.1)),
           ("Adamax", dict(lr=0.01, weight_decay=0.1, maximize=True))]


def run_both(name: str, kwargs: dict[str, Any], dtype: torch.dtype, steps: int = 12
             ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, list, list]:
    """optimlab and torch from the same parameters on the same gradients."""
    start = make_params(SHAPES, dtype, seed=len(name))
    sequence = grad_sequence(start, steps, seed=7)
    mine_params, their_params = clone_params(start), clone_params(start)
    mine = getattr(optimlab, name)(mine_params, **kwargs)
    theirs = getattr(torch.optim, name)(their_params, **kwargs)
    for grads in sequence:
        for optimizer, params in ((mine, mine_params), (theirs, their_params)):
            set_grads(params, grads)
            optimizer.step()
    return mine, theirs, mine_params, their_params


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=NAMES)
def test_tensor_learning_rate(name: str, kwargs: dict[str, Any]) -> None:
    """A float64 one: torch computes with a tensor learning rate in its dtype (NAdam's weights in
    float32 for a float32 tensor), optimlab with its value in double precision."""
    lr = torch.tensor(kwargs["lr"], dtype=torch.float64)
    _, _, mine, theirs = run_both(name, {**kwargs, "lr": lr}, torch.float64)
    assert max_rel_error(mine, theirs) < 1e-10


@pytest.mark.parametrize("path", ["eager", "auto"])
@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=NAMES)
def test_float64_default_dtype(name: str, kwargs: dict[str, Any], path: str) -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with engine.using(path):
            mine, theirs, mine_params, their_params = run_both(name, kwargs, torch.float64)
    finally:
        torch.set_default_dtype(previous)
    assert max_rel_error(mine_params, their_params) < 1e-10
    for p, q in zip(mine_params, their_params):
        for key, value in theirs.state[q].items():
            assert mine.state[p][key].dtype == value.dtype, key
            assert max_rel_error([mine.state[p][key]], [value]) < 1e-10, key


@pytest.mark.parametrize(("name", "kwargs"), CONFIGS, ids=NAMES)
def test_torch_continues_from_an_optimlab_checkpoint(name: str, kwargs: dict[str, Any]) -> None:
    """float32 parameters: torch.optim casts loaded state to the parameter's dtype, which for
    float64 parameters would turn NAdam's float32 mu_product into float64 and change its numbers."""
    mine, theirs, mine_params, their_params = run_both(name, kwargs, torch.float32)
    saved = through_bytes(mine.state_dict())
    for p, q in zip(mine_params, their_params):
        assert {k: (v.dtype, v.shape) for k, v in mine.state[p].items()} == \
               {k: (v.dtype, v.shape) for k, v in theirs.state[q].items()}
    resumed_params = clone_params(mine_params)
    resumed = getattr(torch.optim, name)(resumed_params, **kwargs)
    resumed.load_state_dict(saved)
    for grads in grad_sequence(mine_params, 5, seed=8):
        for optimizer, params in ((mine, mine_params), (resumed, resumed_params)):
            set_grads(params, grads)
            optimizer.step()
    assert max_rel_error(mine_params, resumed_params) < 1e-5


@pytest.mark.parametrize("name", ["RAdam", "Adamax"])
def test_fused_path_runs(name: str) -> None:
    """RAdam's first steps are unrectified and its later ones rectified: both on the kernel."""
    params = [torch.zeros(6, requires_grad=True), torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)]
    optimizer = getattr(optimlab, name)(params, lr=0.01)
    counts = dict(engine.path_counts)
    with engine.using("auto"):
        for grads in grad_sequence(params, 8, seed=3):
            set_grads(params, grads)
            optimizer.step()
    assert engine.path_counts["fused"] - counts.get("fused", 0) == 16
    assert engine.path_counts["eager"] == counts.get("eager", 0)
