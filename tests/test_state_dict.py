"""Checkpoints: round trips, exchange with torch.optim, name matching, and refusing bad ones.

(a) A run interrupted by ``state_dict()`` -> copy -> ``load_state_dict()`` into a fresh
    optimizer on cloned parameters continues bit for bit like the uninterrupted run.
(b) A torch.optim checkpoint loads into optimlab and the other way round, and training goes on
    as the writer goes on (float64, 1e-10).
(c) Optimizers built from ``model.named_parameters()`` match state by name: a reordered or an
    extended model gets each parameter's own state, new parameters start fresh.
(d) A state dict that belongs to other parameters or another kind of optimizer raises
    ValueError, says why, and leaves the optimizer exactly as it was.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import optimlab
from tests.helpers import (
    NAMES,
    Run,
    clone_params,
    compare_runs,
    deep_copy,
    grad_sequence,
    make_params,
    same,
    snapshot,
    states_in_order,
    through_bytes,
    twins,
    two_groups,
    values,
)
from tests.strategies import VARIANTS, hyperparams, param_specs, seeds, variant_id

BEFORE, AFTER = 7, 8  # steps before and after the checkpoint
TRANSFERS: dict[str, Callable[[dict], dict]] = {"deepcopy": deep_copy, "torch.save": through_bytes}


def draw_setup(data: Any, name: str, flags: dict[str, Any], specs: list, seed: int, split: int, dtype: torch.dtype,
               skip: float) -> tuple[dict, dict, list, list, int]:
    hp = data.draw(hyperparams(name, **flags), label="constructor")
    override = data.draw(hyperparams(name), label="group 1")
    params = make_params(specs, dtype, seed)
    sequence = grad_sequence(params, BEFORE + AFTER, seed + 1, skip=skip)
    return hp, override, params, sequence, min(max(split, 1), len(params) - 1)


def resume(cls: type, run: Run, saved: dict[str, Any], split: int) -> Run:
    """A fresh ``cls`` with default hyperparameters on copies of ``run``'s parameters, loaded
    with ``saved``: everything it continues with must come from the checkpoint."""
    params = clone_params(run.params)
    optimizer = cls(two_groups(params, split, {}))
    optimizer.load_state_dict(saved)
    return Run(optimizer, params)


def hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


# -- (a) round trip -------------------------------------------------------------------------
@pytest.mark.parametrize("transfer", list(TRANSFERS))
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@settings(max_examples=3)
@given(data=st.data(), specs=param_specs(), seed=seeds, split=st.integers(1, 3))
def test_round_trip_mid_run_is_bit_exact(variant, transfer, data, specs, seed, split):
    name, flags = variant
    hp, override, params, sequence, split = draw_setup(data, name, flags, specs, seed, split, torch.float32, 0.15)
    cls = getattr(optimlab, name)
    whole = Run.build(cls, params, hp, override, split)
    expected = []
    for grads in sequence:
        whole.steps([grads])
        expected.append(values(whole.params))

    first = Run.build(cls, params, hp, override, split).steps(sequence[:BEFORE])
    resumed = resume(cls, first, TRANSFERS[transfer](first.optimizer.state_dict()), split)
    assert same(hyperparameters(resumed.optimizer), hyperparameters(first.optimizer))
    for t, grads in enumerate(sequence[BEFORE:], start=BEFORE):
        resumed.steps([grads])
        for a, b in zip(values(resumed.params), expected[t], strict=True):
            assert torch.equal(a, b), f"step {t + 1}: the resumed run left the uninterrupted one"
    assert same(states_in_order(resumed.optimizer), states_in_order(whole.optimizer))


# -- (b) exchange with torch.optim ------------------------------------------------------------
@pytest.mark.parametrize("direction", ["torch-to-optimlab", "optimlab-to-torch"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@settings(max_examples=3)
@given(data=st.data(), specs=param_specs(), seed=seeds, split=st.integers(1, 3))
def test_checkpoint_exchange_with_torch(variant, direction, data, specs, seed, split):
    name, flags = variant
    hp, override, params, sequence, split = draw_setup(data, name, flags, specs, seed, split, torch.float64, 0.15)
    # Every parameter is stepped at least once before the checkpoint: torch.optim.Adagrad
    # creates its state in the constructor and cannot step a parameter without it.
    sequence[0] = grad_sequence(params, 1, seed + 2)[0]
    mine_cls, torch_cls = twins(name)
    writer_cls, reader_cls = (torch_cls, mine_cls) if direction == "torch-to-optimlab" else (mine_cls, torch_cls)
    writer = Run.build(writer_cls, params, hp, override, split).steps(sequence[:BEFORE])
    reader = resume(reader_cls, writer, through_bytes(writer.optimizer.state_dict()), split)
    writer.steps(sequence[BEFORE:])
    reader.steps(sequence[BEFORE:])
    compare_runs(f"{name} checkpoint {direction}", reader, writer, sequence, 1e-10)


def test_adam_checkpoint_into_adamw_keeps_decoupled_decay():
    """Like torch.optim.AdamW, optimlab.AdamW stays AdamW when it loads an Adam checkpoint."""
    sequence = grad_sequence([torch.zeros(4)], BEFORE + AFTER, seed=3)
    params = [torch.randn(4, dtype=torch.float64).requires_grad_()]
    sequence = [[g.double() for g in grads] for grads in sequence]
    adam = Run(torch.optim.Adam(params, lr=0.1, weight_decay=0.5), params).steps(sequence[:BEFORE])
    saved = adam.optimizer.state_dict()
    runs = []
    for cls in twins("AdamW"):
        run = Run(cls(p := clone_params(adam.params)), p)
        run.optimizer.load_state_dict(copy.deepcopy(saved))
        assert run.optimizer.param_groups[0]["decoupled_weight_decay"] is True
        runs.append(run.steps(sequence[BEFORE:]))
    compare_runs("AdamW from Adam checkpoint", runs[0], runs[1], sequence, 1e-10)


# -- (c) matching by name -------------------------------------------------------------------
def make_model(extra_layer: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)]
    if extra_layer:
        layers += [nn.Tanh(), nn.Linear(2, 2)]
    return nn.Sequential(*layers).double()


def named_groups(named: list[tuple[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """Two groups with different hyperparameters: weights, then biases."""
    return [{"params": [(n, p) for n, p in named if n.endswith("weight")]},
            {"params": [(n, p) for n, p in named if n.endswith("bias")], "lr": 0.05, "betas": (0.8, 0.99)}]


def train(optimizer: torch.optim.Optimizer, model: nn.Module, steps: int, seed: int) -> None:
    """``steps`` steps with gradients keyed by parameter *name* (so any order gets the same)."""
    generator = torch.Generator().manual_seed(seed)
    names = sorted(dict(model.named_parameters()))
    shapes = {n: p.shape for n, p in model.named_parameters()}
    for _ in range(steps):
        grads = {n: torch.randn(shapes[n], generator=generator, dtype=torch.float64) for n in names}
        for n, p in model.named_parameters():
            p.grad = grads[n]
        optimizer.step()


def state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, dict[str, Any]]:
    return {n: optimizer.state.get(p, {}) for n, p in model.named_parameters()}


def trained_named(model: nn.Module) -> torch.optim.Optimizer:
    optimizer = optimlab.Adam(named_groups(list(model.named_parameters())), lr=0.01, amsgrad=True)
    train(optimizer, model, BEFORE, seed=1)
    return optimizer


def test_reordered_model_gets_each_parameter_its_state():
    model = make_model()
    optimizer = trained_named(model)
    saved = through_bytes(optimizer.state_dict())
    other = copy.deepcopy(model)
    reordered = optimlab.Adam(named_groups(list(reversed(list(other.named_parameters())))))
    reordered.load_state_dict(saved)
    mine, expected = state_by_name(reordered, other), state_by_name(optimizer, model)
    assert all(mine[n] for n in mine) and same(mine, expected)
    assert same(hyperparameters(reordered)[1]["betas"], (0.8, 0.99))
    train(optimizer, model, AFTER, seed=2)
    train(reordered, other, AFTER, seed=2)
    for (n, p), (m, q) in zip(model.named_parameters(), other.named_parameters()):
        assert n == m and torch.equal(p, q), f"{n} continued differently after a reordered load"


def test_extended_model_keeps_old_state_and_starts_new_parameters_fresh():
    model = make_model()
    optimizer = trained_named(model)
    saved = through_bytes(optimizer.state_dict())
    extended = make_model(extra_layer=True)
    extended.load_state_dict(model.state_dict(), strict=False)
    grown = optimlab.Adam(named_groups(list(extended.named_parameters())), lr=0.01, amsgrad=True)
    grown.load_state_dict(saved)
    loaded, expected = state_by_name(grown, extended), state_by_name(optimizer, model)
    assert same({n: loaded[n] for n in expected}, expected)
    assert loaded["4.weight"] == {} and loaded["4.bias"] == {}
    new_weight = extended[4].weight
    fresh_weight = new_weight.detach().clone().requires_grad_()
    fresh = optimlab.Adam([fresh_weight], lr=0.01, amsgrad=True)
    grown.zero_grad()
    new_weight.grad, fresh_weight.grad = torch.ones_like(new_weight), torch.ones_like(new_weight)
    grown.step()  # the new layer's first step; the old layers have no gradient
    fresh.step()
    assert torch.equal(new_weight, fresh_weight) and same(grown.state[new_weight], fresh.state[fresh_weight])
    assert same(state_by_name(grown, extended)["0.weight"], expected["0.weight"])


def test_position_matching_of_a_reordered_model_raises_a_clear_error():
    model = make_model()
    optimizer = optimlab.Adam(model.parameters(), lr=0.01)
    train(optimizer, model, BEFORE, seed=1)
    reordered = optimlab.Adam(list(reversed(list(copy.deepcopy(model).parameters()))))
    before = snapshot(reordered)
    with pytest.raises(ValueError, match=r"state 'exp_avg' for parameter #0 of group 0 has shape \(4, 3\), but the "
                                         r"parameter has shape \(2,\): the state belongs to other parameters"):
        reordered.load_state_dict(optimizer.state_dict())
    assert same(snapshot(reordered), before)


# -- (d) state dicts that do not fit ----------------------------------------------------------
def trained(cls: type, shapes: list[tuple[int, ...]], groups: int = 1, seed: int = 0):
    """``cls`` on fresh parameters of ``shapes`` (split into ``groups``), after two steps;
    SGD with momentum, so that it has state."""
    params = make_params([(s, "contiguous") for s in shapes], torch.float64, seed)
    param_groups = two_groups(params, len(params) - 1, {}) if groups == 2 else [{"params": params}]
    optimizer = cls(param_groups, **({"momentum": 0.9} if cls.__name__ == "SGD" else {}))
    for grads in grad_sequence(params, 2, seed + 1):
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
    return optimizer


MISFITS = {
    "wrong shapes": (lambda cls: trained(cls, [(2, 3), (4,)]),
                     r"has shape \(2, 3\), but the parameter has shape \(3, 2\)"),
    "wrong group count": (lambda cls: trained(cls, [(3, 2), (5,)], groups=2),
                          r"the state dict has 2 parameter group\(s\), this optimizer has 1"),
    "wrong group size": (lambda cls: trained(cls, [(3, 2)]),
                         r"parameter group 0 has 1 parameters in the state dict and 2 here"),
}


@pytest.mark.parametrize("misfit", list(MISFITS))
@pytest.mark.parametrize("name", NAMES)
def test_misfit_state_dict_raises_and_changes_nothing(name, misfit):
    cls = getattr(optimlab, name)
    optimizer = trained(cls, [(3, 2), (5,)], seed=5)
    make_other, message = MISFITS[misfit]
    other = make_other(cls).state_dict()
    before = snapshot(optimizer)
    with pytest.raises(ValueError, match=message):
        optimizer.load_state_dict(other)
    assert same(snapshot(optimizer), before)


#: Adam and AdamW are one kind (same state, same hyperparameters): torch loads either into the other.
KIND_PAIRS = [(a, b) for a, b in itertools.permutations(NAMES, 2) if {a, b} != {"Adam", "AdamW"}]


@pytest.mark.parametrize("source", ["optimlab", "torch"])
@pytest.mark.parametrize(("saved_by", "loaded_by"), KIND_PAIRS, ids=[f"{a}-into-{b}" for a, b in KIND_PAIRS])
def test_state_dict_of_another_optimizer_kind_raises_and_changes_nothing(saved_by, loaded_by, source):
    writer = getattr(optimlab if source == "optimlab" else torch.optim, saved_by)
    other = trained(writer, [(3, 2), (5,)], seed=7).state_dict()
    optimizer = trained(getattr(optimlab, loaded_by), [(3, 2), (5,)], seed=5)
    before = snapshot(optimizer)
    with pytest.raises(ValueError, match=r"group 0 of the state dict has no '\w+': it was saved by a different kind"):
        optimizer.load_state_dict(other)
    assert same(snapshot(optimizer), before)


def test_snapshot_comparison_sees_a_change():
    """The 'unchanged' checks above can fail: a load that works changes the snapshot."""
    optimizer = trained(optimlab.Adam, [(3, 2), (5,)], seed=5)
    before = snapshot(optimizer)
    optimizer.load_state_dict(trained(optimlab.Adam, [(3, 2), (5,)], seed=6).state_dict())
    assert not same(snapshot(optimizer), before)


def test_load_state_dict_pre_hooks_run_before_the_checks():
    """A pre-hook may rewrite the dict it is given (torch's contract): here it renames the
    state of an older layout, which the checks would refuse, into the current one."""
    model = make_model()
    optimizer = optimlab.Adam(model.parameters(), lr=0.01)
    train(optimizer, model, BEFORE, seed=1)
    saved = optimizer.state_dict()
    old_layout = {**saved, "state": {k: {("m" if key == "exp_avg" else key): v for key, v in entry.items()}
                                     for k, entry in saved["state"].items()}}
    seen = []

    def rename(opt, state_dict):
        seen.append(sorted(next(iter(state_dict["state"].values()))))
        return {**state_dict, "state": {k: {("exp_avg" if key == "m" else key): v for key, v in entry.items()}
                                        for k, entry in state_dict["state"].items()}}

    fresh = optimlab.Adam(copy.deepcopy(model).parameters(), lr=0.01)
    with pytest.raises(ValueError, match="'m'"):
        fresh.load_state_dict(old_layout)  # without the hook: refused, naming the foreign key
    fresh.register_load_state_dict_pre_hook(rename)
    fresh.load_state_dict(old_layout)
    assert seen == [["exp_avg_sq", "m", "step"]], "the hook saw the dict as given, before any check"
    assert len(seen) == 1, "the hook ran once"
    assert same(fresh.state_dict()["state"], saved["state"])
