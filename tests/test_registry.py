"""Every optimizer of the registry against its reference, on every engine path.

For each entry of :data:`optimlab.optimizers.registry.ENTRIES`, each of its configurations, each
dtype (float64, float32, and complex128 where the optimizer takes complex parameters) and each
engine path (eager, auto), optimlab and the reference run 50 steps from identical parameters
(0-d, contiguous, transposed and strided; matrices only where the optimizer wants them) in two
parameter groups (group 1 at half the learning rate), on the same gradients, some of them None.
Two optimlab runs are checked against one uninterrupted reference run:

* ``reload``: optimlab saves its state dict after step 25 (through torch.save / torch.load with
  ``weights_only=True``), and a fresh optimlab optimizer loads it and goes on;
* ``exchange``: the reference runs the first 25 steps, and optimlab goes on from the reference's
  state dict (for torch twins: checkpoints move from torch.optim to optimlab).

Optimizers that need a closure (L-BFGS) are driven by a fixed smooth loss instead of a gradient
sequence; those for sparse gradients (SparseAdam, ``Entry.sparse_grads``) get sparse ones, over
the first dimension, some naming a row twice and some naming none. Parameters, and every state value (tensors, lists of tensors, numbers), must agree
within the entry's tolerance (relative error as tests/helpers.py defines it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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
    default_lr,
    make_params,
    rel_error,
    states_in_order,
    through_bytes,
    two_groups,
    worst_difference,
)

STEPS = 50
RELOAD_AT = 25
SKIP = 0.15


def reference_class(entry: Entry) -> type[torch.optim.Optimizer]:
    twin = entry.twin()
    if twin is not None:
        return twin
    module, _, name = entry.reference.rpartition(".")
    return getattr(importlib.import_module(module), name)


def param_specs(entry: Entry) -> list[tuple[tuple[int, ...], str]]:
    if entry.min_dim >= 2:
        return [((4, 5), "contiguous"), ((6, 3), "transposed"), ((3, 4), "strided")]
    specs = [((), "contiguous"), ((3,), "contiguous"), ((4, 5), "transposed"), ((2, 3, 4), "strided")]
    return [(shape, layout) for shape, layout in specs if len(shape) >= entry.min_dim]


def groups_of(entry: Entry, params: list[Tensor], config: dict[str, Any]) -> Any:
    if entry.single_group:
        return params
    lr = config.get("lr", default_lr(entry.cls))
    return two_groups(params, len(params) // 2, {"lr": lr * 0.5})


def compare(mine: torch.optim.Optimizer, theirs: torch.optim.Optimizer, my_params: list[Tensor],
            their_params: list[Tensor], scale: PathScale, tol: float) -> None:
    for i, (p, q) in enumerate(zip(my_params, their_params, strict=True)):
        error = rel_error(p.detach(), q.detach(), scale["param", i])
        assert error <= tol, f"parameter {i}: relative error {error:.3e} > {tol:.0e}"
    for i, (s_mine, s_theirs) in enumerate(zip(states_in_order(mine), states_in_order(theirs))):
        if not s_theirs and not s_mine:
            continue
        assert s_mine.keys() == s_theirs.keys(), f"parameter {i}: state keys {sorted(s_mine)} != {sorted(s_theirs)}"
        for key in s_theirs:
            reference = s_theirs[key]
            state_scale = reference.abs().max().item() if isinstance(reference, Tensor) and reference.numel() else None
            error = worst_difference(s_mine[key], reference, state_scale, f"parameter {i} state {key!r}")
            assert error <= tol, f"parameter {i} state {key!r}: relative error {error:.3e} > {tol:.0e}"


def dtypes_of(entry: Entry) -> list[torch.dtype]:
    return [torch.float64, torch.float32] + ([torch.complex128] if entry.complex_params else [])


def modes_of(entry: Entry) -> list[str]:
    """``exchange`` needs a reference whose checkpoints optimlab loads: a torch twin."""
    return ["reload", "exchange"] if entry.twin() is not None else ["reload"]


def quick_case(entry: Entry) -> tuple[int, torch.dtype, str]:
    """The case of ``entry`` in the quick tier (on each path): its richest configuration (the one
    that sets the most options), in float64, reloading its own checkpoint. The other
    configurations, dtypes and the exchange of checkpoints with the reference are the slow tier."""
    richest = max(range(len(entry.configs)), key=lambda i: len(entry.configs[i]))
    return richest, torch.float64, modes_of(entry)[0]


CASES = [pytest.param(entry.name, i, dtype, mode, id=f"{entry.name}-{i}-{str(dtype)[6:]}-{mode}",
                      marks=() if (i, dtype, mode) == quick_case(entry) else pytest.mark.slow)
         for entry in ENTRIES for i in range(len(entry.configs)) for dtype in dtypes_of(entry)
         for mode in modes_of(entry)]


@pytest.mark.parametrize("path", ["eager", "auto"])
@pytest.mark.parametrize(("name", "index", "dtype", "mode"), CASES)
def test_matches_reference(name: str, index: int, dtype: torch.dtype, mode: str, path: str) -> None:
    entry = REGISTRY[name]
    config = dict(entry.configs[index])
    reference = reference_class(entry)
    tol = entry.tolerance[torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32]
    seed = 1000 * index + len(name)
    start = make_params(param_specs(entry), dtype, seed)
    driver = Feed(entry, start, seed + 1, STEPS, skip=SKIP, weighted=True, quartic=0.05)

    def make(cls: type) -> Callable[[list[Tensor]], torch.optim.Optimizer]:
        return lambda params: cls(groups_of(entry, params, config), **config)

    theirs_params, scale = clone_params(start), PathScale()
    theirs = driver.run(make(reference)(theirs_params), theirs_params, range(1, STEPS + 1), scale)

    mine_params = clone_params(start)
    with engine.using(path):
        if mode == "reload":
            first = driver.run(make(entry.cls)(mine_params), mine_params, range(1, RELOAD_AT + 1))
            saved = through_bytes(first.state_dict())
        else:
            saved = through_bytes(driver.run(make(reference)(mine_params), mine_params,
                                                    range(1, RELOAD_AT + 1)).state_dict())
        mine = make(entry.cls)(mine_params)
        mine.load_state_dict(saved)
        driver.run(mine, mine_params, range(RELOAD_AT + 1, STEPS + 1))
    compare(mine, theirs, mine_params, theirs_params, scale, tol)


def test_every_optimizer_is_registered() -> None:
    """The registry holds every optimizer optimlab exports, and nothing else."""
    import optimlab

    exported = {name for name in optimlab.__all__
                if isinstance(getattr(optimlab, name), type) and issubclass(getattr(optimlab, name), optimlab.Optimizer)
                and getattr(optimlab, name) is not optimlab.Optimizer}
    assert exported == set(REGISTRY)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_entry_is_complete(name: str) -> None:
    entry = REGISTRY[name]
    assert entry.configs, "at least one configuration to test"
    assert entry.paper
    assert reference_class(entry) is not None
    assert "lr" in entry.search_space or not entry.search_space
    for config in entry.configs:  # every configuration is one the class accepts
        entry.cls(groups_of(entry, make_params(param_specs(entry), torch.float64, 0), dict(config)), **config)
