"""Errors: each names the argument, the bad value and what was expected, and changes nothing.

Invalid hyperparameters at construction, bad values written into ``param_groups`` afterwards
(caught by the next ``step()`` before any tensor changes), sparse gradients where torch refuses
them, and integer parameters.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import optimlab
from optimlab import engine
from tests.helpers import NAMES, Run, grad_sequence, make_params, same, set_grads, snapshot

EPS_OWNERS = ("Adagrad", "RMSprop", "Adam", "AdamW")
FLAGS = {"SGD": ("nesterov", "maximize", "foreach", "fused", "differentiable"),
         "Adagrad": ("maximize", "foreach", "fused", "differentiable"),
         "RMSprop": ("centered", "maximize", "foreach", "capturable", "differentiable"),
         "Adam": ("amsgrad", "maximize", "foreach", "capturable", "fused", "decoupled_weight_decay", "differentiable"),
         "AdamW": ("amsgrad", "maximize", "foreach", "capturable", "fused", "differentiable")}


def cases() -> list[tuple[str, dict[str, Any], type, list[str]]]:
    """(optimizer, bad arguments, error, fragments the message must contain)."""
    out = []
    for name in NAMES:
        out += [
            (name, {"lr": -0.1}, ValueError, ["lr", "-0.1", ">= 0"]),
            (name, {"lr": float("nan")}, ValueError, ["lr", "nan", "must be a real number"]),
            (name, {"lr": "0.1"}, TypeError, ["lr", "'0.1'", "must be a real number"]),
            (name, {"weight_decay": -1e-4}, ValueError, ["weight_decay", "-0.0001", ">= 0"]),
            *[(name, {flag: 1}, TypeError, [flag, "int 1", "True or False"]) for flag in FLAGS[name]],
        ]
        if name in EPS_OWNERS:
            out.append((name, {"eps": -1e-8}, ValueError, ["eps", "-1e-08", ">= 0"]))
    out += [
        ("SGD", {"momentum": -0.5}, ValueError, ["momentum", "-0.5", ">= 0"]),
        ("SGD", {"dampening": 1.5}, ValueError, ["dampening", "1.5", "[0, 1]"]),
        ("SGD", {"dampening": -0.1}, ValueError, ["dampening", "-0.1", "[0, 1]"]),
        ("SGD", {"nesterov": True}, ValueError, ["nesterov=True", "momentum=0", "momentum > 0"]),
        ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError,
         ["nesterov=True", "dampening=0.1", "dampening = 0"]),
        ("Adagrad", {"lr_decay": -0.1}, ValueError, ["lr_decay", "-0.1", ">= 0"]),
        ("Adagrad", {"initial_accumulator_value": -1.0}, ValueError, ["initial_accumulator_value", "-1.0", ">= 0"]),
        ("RMSprop", {"momentum": -0.5}, ValueError, ["momentum", "-0.5", ">= 0"]),
        ("RMSprop", {"alpha": 1.0}, ValueError, ["alpha", "1.0", "[0, 1)"]),
        ("RMSprop", {"alpha": -0.1}, ValueError, ["alpha", "-0.1", "[0, 1)"]),
    ]
    for name in ("Adam", "AdamW"):
        out += [
            (name, {"betas": (1.0, 0.999)}, ValueError, ["betas[0]", "1.0", "[0, 1)"]),
            (name, {"betas": (0.9, -0.1)}, ValueError, ["betas[1]", "-0.1", "[0, 1)"]),
            (name, {"betas": (0.9,)}, TypeError, ["betas", "(0.9,)", "pair"]),
            (name, {"betas": 0.9}, TypeError, ["betas", "0.9", "pair"]),
        ]
    return out


CASES = cases()


@pytest.mark.parametrize(("name", "bad", "error", "fragments"), CASES,
                         ids=[f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[1].items())}" for c in CASES])
def test_invalid_hyperparameter_is_named_with_value_and_expectation(name, bad, error, fragments):
    with pytest.raises(error) as raised:
        getattr(optimlab, name)([torch.zeros(2, requires_grad=True)], **bad)
    message = str(raised.value)
    assert f"optimlab.{name}" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


#: A bad value per optimizer, as a user or a scheduler might write it into a group.
WRITTEN = {"SGD": ("momentum", -1.0), "Adagrad": ("lr_decay", -1.0), "RMSprop": ("alpha", 1.5),
           "Adam": ("betas", (0.9, 1.5)), "AdamW": ("lr", float("nan"))}


@pytest.mark.parametrize("name", NAMES)
def test_bad_value_written_into_a_group_is_caught_at_the_next_step(name):
    params = make_params([((3,), "contiguous"), ((2, 2), "transposed"), ((), "contiguous")], torch.float64, 0)
    optimizer = getattr(optimlab, name)([{"params": params[:2]}, {"params": params[2:]}])
    sequence = grad_sequence(params, 3, seed=1)
    Run(optimizer, params).steps(sequence[:2])
    key, value = WRITTEN[name]
    optimizer.param_groups[1][key] = value
    set_grads(params, sequence[2])
    before = snapshot(optimizer)
    with pytest.raises((ValueError, TypeError), match=key.replace("[", r"\[")):
        optimizer.step()
    assert same(snapshot(optimizer), before)  # group 0, stepped first, is unchanged too


class Tagger(nn.Module):
    """A dense layer *before* a sparse embedding, in the same parameter group."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(3, 2)
        self.emb = nn.Embedding(10, 3, sparse=True)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.dense(self.emb(idx)).sum()


@pytest.mark.parametrize("groups", ["one group", "a later group"])
@pytest.mark.parametrize("name", [name for name in NAMES if name not in ("SGD", "Adagrad")])
def test_sparse_gradient_raises_and_updates_nothing(name, groups):
    """The dense parameters come first, in the same group or in an earlier one: still nothing moves.
    (SGD and Adagrad take sparse gradients, as torch's: tests/test_optim_db.py.)"""
    torch.manual_seed(0)
    model = Tagger()
    named = list(model.named_parameters())
    params = named if groups == "one group" else [{"params": named[:2]}, {"params": named[2:]}]
    optimizer = getattr(optimlab, name)(params, lr=0.1)
    for _ in range(2):  # dense steps first, so the dense parameters have state
        model.zero_grad()
        model(torch.tensor([1, 2, 5])).backward()
        model.emb.weight.grad = None
        optimizer.step()
    model.zero_grad()
    model(torch.tensor([1, 2, 5])).backward()
    assert model.emb.weight.grad.is_sparse and model.dense.weight.grad is not None
    before = snapshot(optimizer)
    with pytest.raises(RuntimeError, match=r"parameter 'emb.weight' has a sparse gradient, which this optimizer "
                                           r"does not support; use optimlab.SparseAdam"):
        optimizer.step()
    assert same(snapshot(optimizer), before)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_integer_parameters_are_rejected(name, dtype):
    with pytest.raises(TypeError, match=rf"parameter #1 of group 0 is {dtype}; optimizers need floating-point "
                                        r"or complex parameters"):
        getattr(optimlab, name)([torch.zeros(2, requires_grad=True), torch.zeros(2, dtype=dtype)])


def test_a_parameter_listed_twice_in_a_group_is_stepped_once_after_torchs_warning():
    """torch.optim warns, then steps such a parameter twice, differently on each of its code
    paths; optimlab gives torch's warning and keeps the parameter once, so every path steps it
    once (and SGD does what it does for the parameter listed once)."""
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    with pytest.warns(UserWarning, match="duplicate parameters"):
        opt = optimlab.SGD([p, q, p], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["params"] == [p, q]
    with pytest.warns(UserWarning, match="duplicate parameters"):
        opt.add_param_group({"params": [r := torch.nn.Parameter(torch.ones(4)), r]})
    assert opt.param_groups[1]["params"] == [r]
    for path in ("eager", "auto"):
        a = torch.nn.Parameter(torch.ones(3))
        with pytest.warns(UserWarning):
            twice = optimlab.SGD([a, a], lr=0.1, momentum=0.9)
        b = torch.nn.Parameter(torch.ones(3))
        once = optimlab.SGD([b], lr=0.1, momentum=0.9)
        with engine.using(path):
            for _ in range(3):
                a.grad, b.grad = torch.ones(3), torch.ones(3)
                twice.step()
                once.step()
        assert torch.equal(a.detach(), b.detach()), path


def test_adagrad_refuses_weight_decay_with_a_sparse_gradient_as_torch_and_changes_nothing():
    """torch.optim.Adagrad's RuntimeError (the decay would move every row, the gradient names two)."""
    raised = []
    for cls in (optimlab.Adagrad, torch.optim.Adagrad):
        weight = torch.ones(4, 3, requires_grad=True)
        optimizer = cls([weight], weight_decay=0.1)
        weight.grad = torch.sparse_coo_tensor([[0, 2]], torch.ones(2, 3), (4, 3), check_invariants=True)
        before = snapshot(optimizer)
        with pytest.raises(RuntimeError, match="weight_decay option is not compatible with sparse gradients"):
            optimizer.step()
        raised.append(same(snapshot(optimizer), before))
    assert raised[0]  # optimlab checks before it changes anything
