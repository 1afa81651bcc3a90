"""``differentiable=True``: autograd through the step, checked with ``torch.autograd.gradcheck``
(float64), as torch's own differentiable-optimizer tests do.

* Every optimizer whose torch twin supports the flag (optim_db's ``supported_impls``), every
  configuration optim_db gives for it: one step from the state of an earlier step, as a function
  of the parameter and its gradient, returning the new parameter and every state tensor that
  depends on them (torch's ``_diff_fn``).
* Two steps with the learning rate, the weight decay and the betas as tensors that require
  grad, the loss after them as a function of the parameter, the gradient and those
  hyperparameters (torch's ``_multistep_backprop_diff_hyperparams_fn``, on every configuration).
  torch 2.13's own classes fail this for 59 of these 70 configurations (their in-place updates
  overwrite what autograd saved, or they pass tensor hyperparameters where numbers are
  required); optimlab's pass all of them.

The numbers of differentiable steps are checked against torch's in tests/test_optim_db.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck

from optimlab.optimizers.registry import ENTRIES, REGISTRY, Entry
from tests.twins import optimizer_info

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 5
#: The twins whose optimizer takes ``differentiable`` (torch's signature says so).
DIFFERENTIABLE = [entry.name for entry in ENTRIES
                  if entry.twin() is not None and "differentiable" in entry.twin().__init__.__code__.co_varnames]


def one_step(param: Tensor, grad: Tensor, state: dict[str, Any], cls: type, kwargs: dict[str, Any],
             *state_values: Tensor) -> tuple[Tensor, ...]:
    """The new parameter and state tensors after one step from ``param`` (its gradient
    ``grad``) and ``state``; ``state_values`` are listed for gradcheck only."""
    param = param.clone()  # not a leaf: a differentiable step changes it in place
    param.grad = grad
    optimizer = cls([param], **kwargs)
    optimizer.state[param].update({k: v.clone() if isinstance(v, Tensor) else v for k, v in state.items()})
    optimizer.step()
    return (param, *(v for v in optimizer.state[param].values() if isinstance(v, Tensor) and v.requires_grad))


def state_after_a_step(entry: Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The state of one parameter after one ordinary step (a state dict's, as torch's test)."""
    param = torch.rand(SIZE, dtype=torch.float64)
    param.grad = torch.rand_like(param)
    optimizer = entry.cls([param], **kwargs)
    optimizer.step()
    states = optimizer.state_dict()["state"]
    return dict(states[0]) if 0 in states else {}


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_one_step_is_differentiable_in_params_and_grads(name: str) -> None:
    entry = REGISTRY[name]
    info = optimizer_info(entry.twin())
    assert "differentiable" in info.supported_impls
    generator = torch.Generator().manual_seed(0)
    for config in info.optim_inputs_func(device="cpu", dtype=torch.float64):
        if config.kwargs.get("capturable"):
            continue
        state = state_after_a_step(entry, copy.deepcopy(config.kwargs))
        kwargs = {**copy.deepcopy(config.kwargs), "differentiable": True}
        param = torch.rand(SIZE, dtype=torch.float64, generator=generator).requires_grad_()
        grad = torch.rand(SIZE, dtype=torch.float64, generator=generator).requires_grad_()
        assert gradcheck(one_step, (param, grad, state, entry.cls, kwargs, *state.values())), config.desc


def hyperparameter_tensors(entry: Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The configuration with its learning rate, its weight decay (if not zero) and its betas
    (if any) as float64 tensors that require grad."""
    defaults = entry.cls([torch.zeros(1)], **kwargs).defaults

    def tensor(value: Any) -> Tensor:
        return torch.tensor(float(value), dtype=torch.float64, requires_grad=True)

    made = {"lr": tensor(defaults["lr"])}
    if defaults.get("weight_decay"):
        made["weight_decay"] = tensor(defaults["weight_decay"])
    if "betas" in defaults:
        made["betas"] = tuple(tensor(beta) for beta in defaults["betas"])
    return {**kwargs, **made, "differentiable": True}


def two_steps(param: Tensor, grad: Tensor, cls: type, kwargs: dict[str, Any], *hyperparams: Tensor) -> Tensor:
    """The loss after two steps on a small quadratic, the first from ``grad``."""
    param = param.clone()
    param.grad = grad
    optimizer = cls([param], **kwargs)
    target = torch.tensor(2.0, dtype=torch.float64)
    for _ in range(2):
        optimizer.step()
        loss = (param.sum() - target) ** 2
        (param.grad,) = torch.autograd.grad(loss, param, create_graph=True)
    return loss


@pytest.fixture
def float64_default():
    """float64 as the default dtype, which makes 0-d state (NAdam's ``mu_product``, a function
    of beta1) float64 too, as in torch: float32 would round away the finite differences."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_two_steps_are_differentiable_in_tensor_hyperparameters(name: str) -> None:
    entry = REGISTRY[name]
    generator = torch.Generator().manual_seed(1)
    for config in optimizer_info(entry.twin()).optim_inputs_func(device="cpu", dtype=torch.float64):
        if config.kwargs.get("capturable"):
            continue
        kwargs = hyperparameter_tensors(entry, copy.deepcopy(config.kwargs))
        hyperparams = [v for v in kwargs.values() if isinstance(v, Tensor)] + list(kwargs.get("betas", ()))
        param = torch.rand(SIZE, dtype=torch.float64, generator=generator).requires_grad_()
        grad = torch.rand(SIZE, dtype=torch.float64, generator=generator).requires_grad_()
        assert gradcheck(two_steps, (param, grad, entry.cls, kwargs, *hyperparams)), config.desc


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_without_the_flag_nothing_is_recorded(name: str) -> None:
    """By default the step runs without autograd, even where it is enabled around it (a
    gradient with a graph leaves none in the parameter or the state), and a non-leaf parameter
    is refused; with the flag, a leaf that requires grad cannot be stepped in place: all as torch."""
    entry = REGISTRY[name]
    param = torch.rand(SIZE, dtype=torch.float64, requires_grad=True)
    param.grad = torch.rand(SIZE, dtype=torch.float64, requires_grad=True) * 1.0
    optimizer = entry.cls([param])
    with torch.enable_grad():
        optimizer.step()
    assert param.grad_fn is None
    assert not any(isinstance(v, Tensor) and v.requires_grad for v in optimizer.state[param].values())
    for cls in (entry.cls, entry.twin()):
        with pytest.raises(ValueError, match="non-leaf"):
            cls([param * 1.0])
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            cls([param], differentiable=True).step()
