"""Errors: each names the argument, the bad value and what was expected, and changes nothing.

Invalid hyperparameters at construction, bad values written into ``param_groups`` afterwards
(caught by the next ``step()`` before any tensor changes), sparse gradients where torch refuses
them, and integer parameters, for every optimizer of the registry: the options they share
(``lr``, flags, ``weight_decay``, ``eps``, ``momentum``, ``betas``) are found in each one's
signature.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

import optimlab
from optimlab import engine
from optimlab.optimizers.registry import REGISTRY
from tests.helpers import (
    Run,
    fit_shape,
    fit_specs,
    grad_sequence,
    make_params,
    max_rel_error,
    names,
    same,
    snapshot,
    split_of,
    step_with,
    takes,
    twins,
    values,
)
from tests.twins import optimizer_info

#: Small tensors step fastest on one torch thread (see tests/test_contract.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def flags(name: str) -> list[str]:
    """The options of ``name`` that are flags: a True/False default, or torch's optional
    ``foreach`` and ``fused`` (None: let the implementation choose)."""
    parameters = inspect.signature(REGISTRY[name].cls).parameters
    return [key for key, p in parameters.items() if isinstance(p.default, bool) or key in ("foreach", "fused")]


def float_eps(name: str) -> bool:
    """Whether ``eps`` is one number (Adafactor's is a pair, checked in tests/test_adafactor.py)."""
    return takes(name, "eps") and isinstance(inspect.signature(REGISTRY[name].cls).parameters["eps"].default, float)


def shared_cases(name: str) -> list[tuple[str, dict[str, Any], type, list[str]]]:
    """The bad values every optimizer with the option refuses alike, from its signature."""
    out = [
        # ">= 0", or "> 0" where torch's twin asks for a positive value (SparseAdam's lr and eps)
        (name, {"lr": -0.1}, ValueError, ["lr", "-0.1", "must be a finite number >"]),
        (name, {"lr": float("nan")}, ValueError, ["lr", "nan", "must be a real number"]),
        (name, {"lr": "0.1"}, TypeError, ["lr", "'0.1'", "must be a real number"]),
        *[(name, {flag: 1}, TypeError, [flag, "int 1", "True or False"]) for flag in flags(name)],
    ]
    if takes(name, "weight_decay"):
        out.append((name, {"weight_decay": -1e-4}, ValueError, ["weight_decay", "-0.0001", ">= 0"]))
    if float_eps(name):
        out.append((name, {"eps": -1e-8}, ValueError, ["eps", "-1e-08", "must be a finite number >"]))
    if takes(name, "momentum"):
        out.append((name, {"momentum": -0.5}, ValueError, ["momentum", "-0.5", ">= 0"]))
    if takes(name, "betas"):
        out += [
            (name, {"betas": (1.0, 0.999)}, ValueError, ["betas[0]", "1.0", "[0, 1)"]),
            (name, {"betas": (0.9, -0.1)}, ValueError, ["betas[1]", "-0.1", "[0, 1)"]),
            (name, {"betas": (0.9,)}, TypeError, ["betas", "(0.9,)", "pair"]),
            (name, {"betas": 0.9}, TypeError, ["betas", "0.9", "pair"]),
        ]
    return out


def cases() -> list[tuple[str, dict[str, Any], type, list[str]]]:
    """(optimizer, bad arguments, error, fragments the message must contain): the shared cases
    for every registry entry, then options of one optimizer each. (Every optimizer's own
    options are also checked against torch's error cases in its own test file.)"""
    out = [case for name in REGISTRY for case in shared_cases(name)]
    out += [
        ("SGD", {"dampening": 1.5}, ValueError, ["dampening", "1.5", "[0, 1]"]),
        ("SGD", {"dampening": -0.1}, ValueError, ["dampening", "-0.1", "[0, 1]"]),
        ("SGD", {"nesterov": True}, ValueError, ["nesterov=True", "momentum=0", "momentum > 0"]),
        ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError,
         ["nesterov=True", "dampening=0.1", "dampening = 0"]),
        ("Adagrad", {"lr_decay": -0.1}, ValueError, ["lr_decay", "-0.1", ">= 0"]),
        ("Adagrad", {"initial_accumulator_value": -1.0}, ValueError, ["initial_accumulator_value", "-1.0", ">= 0"]),
        ("RMSprop", {"alpha": 1.0}, ValueError, ["alpha", "1.0", "[0, 1)"]),
        ("RMSprop", {"alpha": -0.1}, ValueError, ["alpha", "-0.1", "[0, 1)"]),
    ]
    return out


CASES = cases()


def case_id(case: tuple) -> str:
    return f"{case[0]}-{'-'.join(f'{k}={v}' for k, v in case[1].items())}"


@pytest.mark.parametrize(("name", "bad", "error", "fragments"), CASES, ids=[case_id(c) for c in CASES])
def test_invalid_hyperparameter_is_named_with_value_and_expectation(name, bad, error, fragments):
    with pytest.raises(error) as raised:
        getattr(optimlab, name)([torch.zeros(fit_shape(name, (2,)), requires_grad=True)], **bad)
    message = str(raised.value)
    assert f"optimlab.{name}" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


#: The bad values of one option each, as a user or a scheduler might write them into a group.
WRITTEN = [case for case in CASES if len(case[1]) == 1]


@pytest.mark.parametrize(("name", "bad", "error", "fragments"), WRITTEN, ids=[case_id(c) for c in WRITTEN])
def test_bad_value_written_into_a_group_is_caught_at_the_next_step(name, bad, error, fragments):
    params = make_params(fit_specs(name, [((3,), "contiguous"), ((2, 2), "transposed"), ((), "contiguous")]),
                         torch.float64, 0)
    split = split_of(name, params, 2)
    optimizer = getattr(optimlab, name)(params if split is None else [{"params": params[:2]}, {"params": params[2:]}])
    sequence = grad_sequence(params, 3, seed=1)
    Run(optimizer, params).steps(sequence[:2])
    (key, value), = bad.items()
    optimizer.param_groups[-1][key] = value
    before = snapshot(optimizer)
    with pytest.raises(error, match=key.replace("[", r"\[")):
        step_with(optimizer, params, sequence[2])
    assert same(snapshot(optimizer), before)  # the groups stepped before it are unchanged too


class Tagger(nn.Module):
    """A dense layer *before* a sparse embedding, in the same parameter group."""

    def __init__(self, sparse: bool = True) -> None:
        super().__init__()
        self.dense = nn.Linear(3, 2)
        self.emb = nn.Embedding(10, 3, sparse=sparse)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.dense(self.emb(idx)).sum()


def tagger_groups(name: str, model: Tagger, groups: str) -> Any:
    """The tagger's parameters that ``name`` takes (``min_dim``: Muon, its matrices), named, in one
    group or with the embedding in a later group."""
    named = [(n, p) for n, p in model.named_parameters() if p.dim() >= REGISTRY[name].min_dim]
    if groups == "one group":
        return named
    return [{"params": [(n, p) for n, p in named if not n.startswith("emb")]},
            {"params": [(n, p) for n, p in named if n.startswith("emb")]}]


def tagger_step(optimizer: torch.optim.Optimizer, model: Tagger, sparse: bool) -> None:
    """One step on the tagger's loss; the embedding's gradient sparse, or left out (None)."""
    def closure() -> torch.Tensor:
        model.zero_grad()
        loss = model(torch.tensor([1, 2, 5]))
        loss.backward()
        if not sparse:
            model.emb.weight.grad = None
        return loss

    if REGISTRY[type(optimizer).__name__].needs_closure:
        optimizer.step(closure)
    else:
        closure()
        optimizer.step()


@pytest.mark.parametrize("groups", ["one group", "a later group"])
@pytest.mark.parametrize("name", names(lambda entry: entry.twin() is not None and not entry.one_vector
                                       and not entry.sparse_grads))
def test_sparse_gradient_raises_and_updates_nothing_where_torch_refuses_it(name, groups):
    """Where torch's twin refuses sparse gradients (optim_db's ``supports_sparse``), optimlab's
    refuses them too, naming the parameter, and nothing moves, not even the dense parameters that
    come first, in the same group or in an earlier one. Where torch takes them (SGD, Adagrad),
    the step is torch's. (SparseAdam takes only sparse gradients; L-BFGS densifies them, below.)"""
    takes_sparse = optimizer_info(REGISTRY[name].twin()).supports_sparse
    stepped = []
    for cls in twins(name):
        torch.manual_seed(0)
        model = Tagger()
        optimizer = cls(tagger_groups(name, model, groups), lr=0.1)
        for _ in range(2):  # dense steps first, so the dense parameters have state
            tagger_step(optimizer, model, sparse=False)
        model.zero_grad()
        model(torch.tensor([1, 2, 5])).backward()
        assert model.emb.weight.grad.is_sparse and model.dense.weight.grad is not None
        if not takes_sparse:
            before = snapshot(optimizer)
            with pytest.raises(RuntimeError, match=r"parameter 'emb.weight' has a sparse gradient, which this "
                                                   r"optimizer does not support; use optimlab.SparseAdam"):
                optimizer.step()
            assert same(snapshot(optimizer), before)
            return  # torch's refusal is its own
        optimizer.step()
        stepped.append(values(model.parameters()))
    assert max_rel_error(stepped[0], stepped[1]) <= 1e-6


@pytest.mark.parametrize("name", names(lambda entry: entry.one_vector))
def test_one_vector_optimizers_take_a_sparse_gradient_as_its_dense_equivalent(name):
    """The other side of ``one_vector`` (L-BFGS): all parameters are one vector, and a sparse
    gradient is one part of the vector's gradient, densified, as torch.optim.LBFGS does; the
    steps are those of the same gradients made dense."""
    runs = []
    for sparse in (True, False):
        torch.manual_seed(0)
        model = Tagger(sparse)  # the same weights either way
        optimizer = getattr(optimlab, name)(tagger_groups(name, model, "one group"), lr=0.1)
        for _ in range(3):
            tagger_step(optimizer, model, sparse=True)
        runs.append(values(model.parameters()))
    assert same(runs[0], runs[1])


@pytest.mark.parametrize("name", names(lambda entry: not entry.complex_params and entry.twin() is not None))
def test_complex_parameters_are_refused_by_the_optimizers_that_do_not_take_them(name):
    """The other side of ``complex_params`` (Adafactor, Muon, SparseAdam): a complex parameter is
    refused with torch's exception type at torch's moment (construction or the first step),
    naming complex parameters, and a refused step changes nothing."""
    refused = []
    for cls in twins(name):
        params = make_params(fit_specs(name, [((3, 2), "contiguous"), ((4,), "contiguous")]), torch.complex64, 0)
        optimizer = None
        with pytest.raises((ValueError, RuntimeError), match="does not support complex parameters") as raised:
            optimizer = cls(params)
            before = snapshot(optimizer)
            step_with(optimizer, params, [torch.ones_like(p) for p in params])
        if optimizer is not None:
            assert same(snapshot(optimizer), before)
        refused.append((type(raised.value), "step" if optimizer is not None else "construction"))
    assert refused[0] == refused[1]


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool], ids=str)
@pytest.mark.parametrize("name", names())
def test_integer_parameters_are_rejected(name, dtype):
    shape = fit_shape(name, (2,))
    with pytest.raises(TypeError, match=rf"parameter #1 of group 0 is {dtype}; optimizers need floating-point "
                                        r"or complex parameters"):
        getattr(optimlab, name)([torch.zeros(shape, requires_grad=True), torch.zeros(shape, dtype=dtype)])


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
