"""Every optimizer with a torch.optim twin, driven by torch's own test database.

torch keeps, for each of its optimizers, an ``OptimizerInfo`` in
``torch.testing._internal.common_optimizers.optim_db``: the constructor configurations its
tests run (``optim_inputs_func``), the inputs that must fail (``optim_error_inputs_func``), and
what the optimizer supports (parameter groups, complex parameters, ``foreach`` /
``differentiable`` / ``fused``). Every registry entry whose reference is a torch class is
matched to the OptimizerInfo of that class, and:

* every configuration torch runs on the CPU, alone and with each of the implementation flags
  torch supports for it set (``foreach``, ``differentiable``, ``fused`` where torch has a CPU
  kernel), steps small parameters of several shapes and layouts (in two groups, the second at
  half the learning rate, where torch allows groups) beside torch's class, on each engine
  path, in float64 and float32; half-way, optimlab's state dict is reloaded into a fresh
  optimizer, and torch's is loaded into another. Parameters, state keys, dtypes and values
  must match torch's, and so must *which* parameters have state;
* every error case must raise torch's exception type at torch's moment (construction or
  step), apart from the differences the registry entry declares, each with its reason.

Importing optim_db takes several seconds (torch's test framework); it happens once, in the
first test that needs it, not at collection.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

import pytest
import torch
from torch import Tensor

from optimlab import engine
from optimlab.optimizers.registry import ENTRIES, REGISTRY, Entry
from tests.helpers import (
    Feed,
    PathScale,
    clone_params,
    make_params,
    through_bytes,
)
from tests.test_registry import compare, param_specs
from tests.twins import configurations, forloop, mismatches, optimizer_info

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest

TWINNED = [entry.name for entry in ENTRIES if entry.twin() is not None]
STEPS = 6
HALF = 3
def halved(lr: Any) -> Any:
    return lr * 0.5  # a tensor learning rate stays a tensor


def build(cls: type, entry: Entry, params: list[Tensor], kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    kwargs = copy.deepcopy(kwargs)  # a tensor lr is not shared between the two runs
    info = optimizer_info(entry.twin())
    if entry.single_group or not info.supports_param_groups:
        return cls(params, **kwargs)
    lr = kwargs["lr"] if "lr" in kwargs else default_lr(cls)
    split = len(params) // 2
    return cls([{"params": params[:split]}, {"params": params[split:], "lr": halved(lr)}], **kwargs)


def default_lr(cls: type) -> Any:
    return inspect.signature(cls).parameters["lr"].default


def parameters(entry: Entry, dtype: torch.dtype, seed: int, differentiable: bool) -> list[Tensor]:
    params = make_params(param_specs(entry), dtype, seed)
    # With differentiable=True both step with autograd on: leaves that require grad cannot be
    # changed in place (torch raises as optimlab does), so these runs take plain tensors.
    return [p.detach() for p in params] if differentiable else params


def state_owners(optimizer: torch.optim.Optimizer) -> list[bool]:
    """For each parameter in group order: whether the optimizer keeps a state entry for it."""
    return [p in optimizer.state for g in optimizer.param_groups for p in g["params"]]


def parity_problem(entry: Entry, desc: str, kwargs: dict[str, Any], dtype: torch.dtype, path: str,
                   seed: int) -> str | None:
    """Run one configuration against torch; None if it matches, else what differs.

    Two optimlab runs go on from step ``HALF``: one from its own state dict (saved, and loaded
    into a fresh optimizer), one from torch's (for configurations without implementation flags:
    torch's checkpoint carries its groups' flags).
    """
    twin, reference = entry.twin(), forloop(kwargs)
    start = parameters(entry, dtype, seed, kwargs.get("differentiable", False))
    feed = Feed(entry, start, seed + 1, STEPS, skip=0.2, grads_like_params=True)
    theirs_params, scale = clone_params(start), PathScale()
    theirs = build(twin, entry, theirs_params, reference)
    feed.run(theirs, theirs_params, range(1, HALF + 1), scale)
    their_checkpoint = through_bytes(theirs.state_dict())
    feed.run(theirs, theirs_params, range(HALF + 1, STEPS + 1), scale)
    declared = entry.rounding_differences.get(desc.split(" & ")[0])
    tol = max(entry.tolerance[dtype], declared[0] if declared else 0.0)
    try:
        with engine.using(path):
            for how in ("reload", "exchange") if reference == kwargs else ("reload",):
                mine_params = clone_params(start)
                if how == "reload":
                    first = feed.run(build(entry.cls, entry, mine_params, kwargs), mine_params, range(1, HALF + 1))
                    checkpoint = through_bytes(first.state_dict())
                else:
                    feed.run(build(twin, entry, mine_params, kwargs), mine_params, range(1, HALF + 1))
                    checkpoint = their_checkpoint
                mine = build(entry.cls, entry, mine_params, kwargs)
                mine.load_state_dict(checkpoint)
                feed.run(mine, mine_params, range(HALF + 1, STEPS + 1))
                assert state_owners(mine) == state_owners(theirs), (
                    f"{how}: parameters with state {state_owners(mine)}, torch {state_owners(theirs)}")
                compare(mine, theirs, mine_params, theirs_params, scale, tol)
    except (AssertionError, RuntimeError, ValueError, TypeError) as error:
        return f"{type(error).__name__}: {error}"
    return None


@pytest.mark.parametrize("path", ["eager", "auto"])
# float64 in the quick tier (every optimizer, both paths), float32 in the slow one.
@pytest.mark.parametrize("dtype", [torch.float64, pytest.param(torch.float32, marks=pytest.mark.slow)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("name", TWINNED)
def test_every_torch_configuration_matches_torch(name: str, dtype: torch.dtype, path: str) -> None:
    entry = REGISTRY[name]
    problems = {}
    for index, (desc, kwargs) in enumerate(configurations(entry.twin(), dtype)):
        problem = parity_problem(entry, desc, kwargs, dtype, path, seed=100 * index + len(name))
        if problem is not None:
            problems[desc] = problem
    assert not problems, "\n".join(f"{desc}: {problem}" for desc, problem in problems.items())


def sparse_configurations(entry: Entry) -> list[tuple[str, dict[str, Any]]]:
    """The configurations torch runs with sparse gradients (its test_rosenbrock_sparse): each
    of ``optim_inputs_func``'s without the keys ``metadata_for_sparse`` overrides (Adagrad's
    weight_decay, which torch refuses with sparse gradients, and lr_decay), then its lr;
    alone and with ``foreach`` (torch's fused kernels take no sparse gradients)."""
    info = optimizer_info(entry.twin())
    updates, _ = info.metadata_for_sparse
    found: dict[tuple, tuple[str, dict[str, Any]]] = {}
    for config in info.optim_inputs_func(device="cpu"):
        kwargs = {key: value for key, value in config.kwargs.items() if key not in updates}
        if "lr" in updates:
            kwargs["lr"] = updates["lr"]
        for variant, extra in (("", {}), (" & foreach", {"foreach": True})):
            found.setdefault(tuple(sorted((k, repr(v)) for k, v in {**kwargs, **extra}.items())),
                             (config.desc + variant, {**kwargs, **extra}))
    return list(found.values())


def refusal(cls: type, entry: Entry, sparse: bool) -> type | None:
    """What stepping ``cls`` with one sparse (else dense) gradient raises, or None."""
    param = torch.zeros(4, 3, requires_grad=True)
    grad = torch.sparse_coo_tensor([[0, 2]], torch.ones(2, 3), (4, 3), check_invariants=True)
    param.grad = grad if sparse else grad.to_dense()
    optimizer = cls([param])
    try:
        optimizer.step((lambda: torch.tensor(1.0)) if entry.needs_closure else None)
    except Exception as error:  # noqa: BLE001 - the type is the answer
        return type(error)
    return None


@pytest.mark.parametrize("path", ["eager", "auto"])
@pytest.mark.parametrize("name", TWINNED)
def test_sparse_gradients_as_torch(name: str, path: str) -> None:
    """Where torch takes sparse gradients beside dense ones (optim_db's ``supports_sparse``),
    the numbers match torch's; elsewhere the gradient of the other layout is refused (or
    taken) as torch does it."""
    entry = REGISTRY[name]
    info = optimizer_info(entry.twin())
    with engine.using(path):
        if not info.supports_sparse:
            sparse = not info.only_supports_sparse_grads
            assert refusal(entry.cls, entry, sparse) is refusal(entry.twin(), entry, sparse)
            return
        sparse_entry = dataclasses.replace(entry, sparse_grads=True, min_dim=1)
        problems = {}
        for index, (desc, kwargs) in enumerate(sparse_configurations(entry)):
            problem = parity_problem(sparse_entry, desc, kwargs, torch.float64, path, seed=100 * index + 7)
            if problem is not None:
                problems[desc] = problem
    assert not problems, "\n".join(f"{desc}: {problem}" for desc, problem in problems.items())


@pytest.mark.parametrize("name", TWINNED)
def test_torch_error_cases_raise_torchs_exceptions(name: str) -> None:
    entry = REGISTRY[name]
    assert not mismatches(entry.twin(), entry.twin()), "torch's class answers its own cases as they say"
    found = mismatches(entry.cls, entry.twin())
    declared = dict(entry.error_differences)
    unexpected = {desc: what for desc, what in found.items() if desc not in declared}
    assert not unexpected, "\n".join(f"{desc}: {what}" for desc, what in unexpected.items())
    assert set(declared) <= set(found), f"declared differences that no longer differ: {set(declared) - set(found)}"
