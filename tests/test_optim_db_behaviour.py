"""The behaviours torch's own optimizer tests (test/test_optim.py, ``TestOptimRenewed``) check,
on every optimizer with a torch twin, over the configurations optim_db gives for it.

Where torch's test only asks that something works (a hook fires, a pickled optimizer steps),
optimlab's class is held to that; where there is a value to compare (the parameters after a
scheduler, the names a loaded checkpoint keeps, the type of ``state['step']``), it is
compared with what torch's class gives on the same input. As in torch's tests, configurations
with ``differentiable=True`` are left out where parameters are leaves that require grad
(stepping them in place under autograd raises, in torch as here): tests/test_differentiable.py
covers them.
"""

from __future__ import annotations

import copy
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from optimlab.optimizers.registry import ENTRIES, REGISTRY, Entry
from tests.helpers import (
    described_signature,
    expected_signature,
    make_params,
    rel_error,
    repr_without_extra_options,
    same,
    through_bytes,
    without_extra_options,
)
from tests.twins import configurations, optimizer_info

pytestmark = pytest.mark.usefixtures("one_thread")

TWINNED = [entry.name for entry in ENTRIES if entry.twin() is not None]


def plain_configurations(entry: Entry) -> list[tuple[str, dict[str, Any]]]:
    """optim_db's configurations for ``entry``, without ``differentiable=True``."""
    return [(desc, kwargs) for desc, kwargs in configurations(entry.twin(), torch.float32)
            if not kwargs.get("differentiable")]


def fresh_params(entry: Entry, seed: int = 0) -> list[Tensor]:
    """Two small float32 leaves (matrices only where the optimizer wants them)."""
    shapes = [(4, 5), (3, 4)] if entry.min_dim >= 2 else [(3,), (4, 5)]
    return make_params([(shape, "contiguous") for shape in shapes], torch.float32, seed)


def loss_of(params: list[Tensor]) -> Tensor:
    return sum(((p - 0.5) ** 2).sum() + 0.1 * (p**4).sum() for p in params)


def train_step(optimizer: torch.optim.Optimizer, entry: Entry, params: list[Tensor]) -> Tensor:
    """One step on :func:`loss_of`, through a closure where the optimizer needs one; sparse
    gradients for an optimizer that takes only those (torch's tests use ``to_sparse()``)."""
    def closure() -> Tensor:
        optimizer.zero_grad()
        with torch.enable_grad():
            loss = loss_of(params)
            loss.backward()
        if entry.sparse_grads:
            for p in params:
                p.grad = p.grad.to_sparse()
        return loss

    if entry.needs_closure:
        return optimizer.step(closure)
    loss = closure()
    optimizer.step()
    return loss


def both(entry: Entry, run: Callable[[type], Any]) -> tuple[Any, Any]:
    """``run`` on optimlab's class and on torch's."""
    return run(entry.cls), run(entry.twin())


def close(a: list[Tensor], b: list[Tensor], tol: float = 1e-5) -> bool:
    return all(rel_error(x.detach(), y.detach()) <= tol for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", TWINNED)
def test_state_is_kept_where_torch_keeps_it(name: str) -> None:
    """torch's test_non_empty_state, and more: after a step, the parameters with state are
    torch's, and each state dict is non-empty (plain SGD keeps none)."""
    entry = REGISTRY[name]
    for desc, kwargs in plain_configurations(entry):
        def owners(cls: type, kwargs: dict[str, Any] = kwargs) -> list[bool]:
            params = fresh_params(entry)
            optimizer = cls(params, **copy.deepcopy(kwargs))
            train_step(optimizer, entry, params)
            assert all(len(state) > 0 for state in optimizer.state.values()), desc
            return [p in optimizer.state for p in params]

        mine, theirs = both(entry, owners)
        assert mine == theirs, f"{desc}: parameters with state {mine}, torch {theirs}"


@pytest.mark.parametrize("name", TWINNED)
def test_checkpoint_with_number_steps_loads_and_steps_as_torch(name: str) -> None:
    """torch's test_load_nontensor_step: older torch wrote ``state['step']`` as a Python number;
    such a checkpoint loads, the count becomes what torch makes of it, and the next step is
    torch's."""
    entry = REGISTRY[name]
    for desc, kwargs in plain_configurations(entry):
        def resumed(cls: type, kwargs: dict[str, Any] = kwargs) -> tuple[list[Tensor], list[Any]]:
            params = fresh_params(entry)
            optimizer = cls(params, **copy.deepcopy(kwargs))
            for _ in range(2):
                train_step(optimizer, entry, params)
            checkpoint = copy.deepcopy(optimizer.state_dict())
            for state in checkpoint["state"].values():
                if isinstance(state.get("step"), Tensor):
                    state["step"] = state["step"].item()
            optimizer.load_state_dict(checkpoint)
            train_step(optimizer, entry, params)
            return params, [optimizer.state[p].get("step") for p in params]

        (mine, my_steps), (theirs, their_steps) = both(entry, resumed)
        assert close(mine, theirs), desc
        assert [(type(s), getattr(s, "dtype", None)) for s in my_steps] == \
               [(type(s), getattr(s, "dtype", None)) for s in their_steps], desc
        assert all(a == b for a, b in zip(my_steps, their_steps)), desc


@pytest.mark.parametrize("name", TWINNED)
@pytest.mark.parametrize(("saved_named", "loaded_named"), [(True, True), (True, False), (False, True), (False, False)])
def test_param_names_through_checkpoints_as_torch(name: str, saved_named: bool, loaded_named: bool) -> None:
    """torch's test_can_load_from_to_named_state_dict: built from ``named_parameters()`` or
    not, either way round; the loaded optimizer steps, and keeps the names torch keeps."""
    entry = REGISTRY[name]
    desc, kwargs = plain_configurations(entry)[0]

    def names_after_load(cls: type) -> tuple[Any, list[Tensor]]:
        params = fresh_params(entry)
        named = [(f"layer{i}.weight", p) for i, p in enumerate(params)]
        optimizer = cls(named if saved_named else params, **copy.deepcopy(kwargs))
        train_step(optimizer, entry, params)
        second = cls(named if loaded_named else params, **copy.deepcopy(kwargs))
        second.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        train_step(second, entry, params)
        return second.state_dict()["param_groups"][0].get("param_names"), params

    (my_names, mine), (their_names, theirs) = both(entry, names_after_load)
    assert my_names == their_names
    assert close(mine, theirs)


@pytest.mark.parametrize("name", TWINNED)
def test_checkpoints_are_deterministic_and_load_weights_only(name: str) -> None:
    """torch's test_state_dict_deterministic and test_save_load_equality_with_weights_only: a
    checkpoint survives torch.save / torch.load(weights_only=True) unchanged, and an optimizer
    that loads it into copies of the parameters goes on exactly as the original."""
    entry = REGISTRY[name]
    for desc, kwargs in plain_configurations(entry):
        params = fresh_params(entry)
        optimizer = entry.cls(params, **copy.deepcopy(kwargs))
        for _ in range(2):
            train_step(optimizer, entry, params)
        checkpoint = optimizer.state_dict()
        assert same(through_bytes(checkpoint), checkpoint), desc
        copies = [p.detach().clone().requires_grad_() for p in params]
        twin = entry.cls(copies, **copy.deepcopy(kwargs))
        twin.load_state_dict(through_bytes(checkpoint))
        for _ in range(2):
            train_step(optimizer, entry, params)
            train_step(twin, entry, copies)
        assert all(torch.equal(p, q) for p, q in zip(params, copies)), desc
        assert same(optimizer.state_dict(), twin.state_dict()), desc


@pytest.mark.parametrize("name", TWINNED)
def test_deepcopy_and_pickle(name: str) -> None:
    """torch's test_deepcopy_copies_all_public_attrs, and a pickled optimizer (with its
    parameters) that steps on as the original."""
    entry = REGISTRY[name]
    for desc, kwargs in plain_configurations(entry):
        params = fresh_params(entry)
        optimizer = entry.cls(params, **copy.deepcopy(kwargs))
        train_step(optimizer, entry, params)
        public = {k for k in vars(optimizer) if not k.startswith("_")}
        assert public == {k for k in vars(copy.deepcopy(optimizer)) if not k.startswith("_")}, desc
        restored = pickle.loads(pickle.dumps(optimizer))
        restored_params = [p for group in restored.param_groups for p in group["params"]]
        train_step(optimizer, entry, params)
        train_step(restored, entry, restored_params)
        assert all(torch.equal(p, q) for p, q in zip(params, restored_params)), desc


@pytest.mark.parametrize("name", TWINNED)
def test_older_checkpoints_without_newer_flags_load(name: str) -> None:
    """torch's test_can_load_older_state_dict: a checkpoint whose groups lack the flags torch
    added later (optim_db's ``not_og_supported_flags``) loads, and the optimizer steps."""
    entry = REGISTRY[name]
    flags = optimizer_info(entry.twin()).not_og_supported_flags
    for desc, kwargs in plain_configurations(entry):
        params = fresh_params(entry)
        optimizer = entry.cls(params, **copy.deepcopy(kwargs))
        train_step(optimizer, entry, params)
        checkpoint = copy.deepcopy(optimizer.state_dict())
        for group in checkpoint["param_groups"]:
            for flag in flags:
                group.pop(flag, None)
        optimizer.load_state_dict(checkpoint)
        train_step(optimizer, entry, params)


@pytest.mark.parametrize("name", TWINNED)
def test_hooks_fire_in_torchs_order(name: str) -> None:
    """torch's step, state_dict and load_state_dict hook tests: global and per-optimizer step
    hooks in torch's order, removable; state_dict hooks that add and strip entries; load hooks
    that rewrite the checkpoint (a prepended one first)."""
    entry = REGISTRY[name]
    calls: list[str] = []
    params = fresh_params(entry)
    optimizer = entry.cls(params)
    handles = [register_optimizer_step_pre_hook(lambda *_: calls.append("global pre")),
               register_optimizer_step_post_hook(lambda *_: calls.append("global post")),
               optimizer.register_step_pre_hook(lambda *_: calls.append("pre")),
               optimizer.register_step_post_hook(lambda *_: calls.append("post"))]
    try:
        train_step(optimizer, entry, params)
    finally:
        for handle in handles:
            handle.remove()
    train_step(optimizer, entry, params)
    assert calls == ["global pre", "pre", "post", "global post"]

    optimizer.register_state_dict_pre_hook(lambda opt: opt.state.__setitem__("marker", 1))
    optimizer.register_state_dict_post_hook(lambda opt, sd: {**sd, "stripped": sd["state"].pop("marker")})
    checkpoint = optimizer.state_dict()
    assert checkpoint["stripped"] == 1 and "marker" not in checkpoint["state"]
    del optimizer.state["marker"]

    def set_lr(value: float) -> Callable[..., None]:
        return lambda opt, sd: sd["param_groups"][0].__setitem__("lr", value)

    optimizer.register_load_state_dict_pre_hook(set_lr(0.002))
    optimizer.register_load_state_dict_pre_hook(set_lr(0.003), prepend=True)
    optimizer.register_load_state_dict_post_hook(lambda opt: calls.append(f"loaded lr {opt.param_groups[0]['lr']}"))
    optimizer.load_state_dict({k: v for k, v in checkpoint.items() if k != "stripped"})
    assert calls[-1] == "loaded lr 0.002"


@pytest.mark.parametrize("name", TWINNED)
def test_zero_grad_and_steps_without_gradients(name: str) -> None:
    """zero_grad (to None by default, to zeros on request); torch's
    test_step_is_noop_when_params_have_no_grad, and zero gradients stepping as torch's (no
    move at all but for the decay terms: weight decay, ASGD's lambd)."""
    entry = REGISTRY[name]
    for desc, kwargs in configurations(entry.twin(), torch.float32):
        def without_gradients(cls: type, kwargs: dict[str, Any] = kwargs) -> list[Tensor]:
            params = [p.detach() for p in fresh_params(entry)]
            before = [p.clone() for p in params]
            optimizer = cls(params, **copy.deepcopy(kwargs))
            optimizer.step(lambda: torch.tensor(1.0))  # no gradient at all: nothing moves
            assert all(torch.equal(p, q) for p, q in zip(params, before)), desc
            if not (entry.sparse_grads or entry.needs_closure):
                for p in params:
                    p.grad = torch.zeros_like(p)
                optimizer.step()
                optimizer.zero_grad(set_to_none=False)
                assert all(p.grad is not None and not p.grad.any() for p in params), desc
                optimizer.zero_grad()
                assert all(p.grad is None for p in params), desc
            return params

        mine, theirs = both(entry, without_gradients)
        assert close(mine, theirs, tol=1e-6), desc


@pytest.mark.parametrize("name", TWINNED)
def test_lr_schedulers_on_top_as_torch(name: str) -> None:
    """torch's scheduler tests: each set of schedulers optim_db gives for the optimizer drives
    optimlab's class to torch's parameters."""
    entry = REGISTRY[name]
    info = optimizer_info(entry.twin())
    for schedulers in info.scheduler_inputs:
        def scheduled(cls: type, schedulers: Any = schedulers) -> list[Tensor]:
            params = fresh_params(entry)
            optimizer = cls(params)
            made = [make(optimizer) for make in schedulers]
            for _ in range(12):
                loss = train_step(optimizer, entry, params)
                for scheduler in made:
                    scheduler.step(loss.item()) if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) \
                        else scheduler.step()
            return params

        mine, theirs = both(entry, scheduled)
        assert close(mine, theirs), [type(make).__name__ for make in schedulers]


def scaled_run(cls: type, entry: Entry, kwargs: dict[str, Any]) -> tuple[list[Tensor], float, Any]:
    """Six steps through ``torch.amp.GradScaler`` on the CPU, the third with an infinite
    gradient (the scaler skips that step and halves its scale). Returns the parameters, the
    final scale and the first parameter's ``step``."""
    params = fresh_params(entry, seed=3)
    optimizer = cls(params, **kwargs)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    for t in range(6):
        optimizer.zero_grad()
        scaler.scale(loss_of(params)).backward()
        if t == 2:
            params[0].grad.view(-1)[0] = float("inf")
        if entry.sparse_grads:
            for p in params:
                p.grad = p.grad.to_sparse()
        scaler.step(optimizer)
        scaler.update()
    return params, scaler.get_scale(), optimizer.state[params[0]].get("step")


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", TWINNED)
def test_grad_scaler_steps_as_torch(name: str, fused: bool) -> None:
    """Mixed precision's loss scaling: unscaled gradients, the step with an infinite gradient
    skipped, the scale grown and cut as with torch's class. torch's fused kernels take the scale
    and the inf flag themselves (``_step_supports_amp_scaling``); optimlab is stepped after the
    scaler unscales, to the same parameters."""
    entry = REGISTRY[name]
    if entry.needs_closure:
        pytest.skip("GradScaler.step takes no closure (L-BFGS needs one), for torch's class as for optimlab's")
    if fused and "fused" not in inspect.signature(entry.twin()).parameters:
        pytest.skip(f"torch.optim.{name} has no fused implementation")
    kwargs = {"fused": True} if fused else {}
    (mine, my_scale, my_step), (theirs, their_scale, their_step) = both(entry, lambda cls: scaled_run(cls, entry, kwargs))
    assert my_scale == their_scale == 2.0**11  # grown after steps 2 and 5, halved after step 3
    assert close(mine, theirs)
    assert same(my_step, their_step) and (my_step is None or int(my_step) == 5)


def raised(make: Callable[[], Any]) -> type | None:
    try:
        make()
    except Exception as error:  # noqa: BLE001 - the type is the answer
        return type(error)
    return None


@pytest.mark.parametrize("name", TWINNED)
def test_tensor_lr_as_torch(name: str) -> None:
    """torch's test_tensor_lr: ``lr=torch.tensor(x)`` steps as ``lr=x`` (within float32's
    rounding of x), and as torch's class with the same tensor; where torch refuses a tensor
    lr (Adam's with ``foreach=True``), it is refused alike."""
    entry = REGISTRY[name]
    for desc, kwargs in plain_configurations(entry):
        runs = []
        for lr in (1e-3, torch.tensor(1e-3)):
            def trained(cls: type, lr: Any = lr, kwargs: dict[str, Any] = kwargs) -> list[Tensor] | type:
                params = fresh_params(entry)
                error = raised(lambda: cls(params, **{**copy.deepcopy(kwargs), "lr": lr}))
                if error is not None:
                    return error
                optimizer = cls(params, **{**copy.deepcopy(kwargs), "lr": lr})
                for _ in range(3):
                    train_step(optimizer, entry, params)
                return params

            mine, theirs = both(entry, trained)
            assert isinstance(mine, type) == isinstance(theirs, type), f"{desc}: {mine!r} vs torch {theirs!r}"
            if isinstance(mine, type):
                assert issubclass(mine, theirs), desc
                continue
            assert close(mine, theirs), desc
            runs.append(mine)
        # A line search on float32 losses magnifies the rounding of lr (torch's own too).
        if len(runs) == 2 and kwargs.get("line_search_fn") is None:
            assert close(*runs), desc


@pytest.mark.parametrize("name", TWINNED)
def test_a_group_at_a_tiny_lr_stays_put(name: str) -> None:
    """torch's test_param_groups_lr: a second group at the constructor's lr of 1e-28 does not
    move, while the first group (the configuration) lowers the loss (raises it with maximize)."""
    entry = REGISTRY[name]
    if entry.single_group:
        pytest.skip("torch's twin takes one parameter group")
    for desc, kwargs in plain_configurations(entry):
        kwargs = copy.deepcopy(kwargs)
        kwargs.setdefault("lr", 1e-3)
        params, (irrelevant,) = fresh_params(entry), fresh_params(entry, seed=1)[:1]
        outer = {"lr": 1e-28, **({"step_sizes": (0, 50)} if name == "Rprop" else {})}
        optimizer = entry.cls([{"params": params, **kwargs}, {"params": [irrelevant]}], **outer)
        kept, first = irrelevant.detach().clone(), loss_of(params).item()
        for _ in range(10):
            train_step(optimizer, entry, params + [irrelevant])
        assert torch.equal(irrelevant, kept), desc
        assert (loss_of(params).item() > first) == bool(kwargs.get("maximize")), desc


@pytest.mark.parametrize("name", [n for n in TWINNED if REGISTRY[n].complex_params])
def test_complex_parameters_step_as_pairs_of_reals(name: str) -> None:
    """torch's test_complex: a complex parameter steps exactly as its ``view_as_real`` would."""
    entry = REGISTRY[name]
    assert optimizer_info(entry.twin()).supports_complex
    for desc, kwargs in plain_configurations(entry):
        if kwargs.get("fused"):
            continue  # torch's fused kernels take real parameters only (tests/test_optim_db.py)
        generator = torch.Generator().manual_seed(3)
        complex_params = [torch.randn(4, 3, dtype=torch.complex64, generator=generator), torch.randn(5, 2)]
        real_params = [torch.view_as_real(p).clone() if p.is_complex() else p.clone() for p in complex_params]
        mine, real = (entry.cls(ps, **copy.deepcopy(kwargs)) for ps in (complex_params, real_params))
        for _ in range(3):
            grads = [torch.randn(p.shape, generator=generator) for p in real_params]
            for p, q, g in zip(complex_params, real_params, grads):
                q.grad = g.clone()
                p.grad = torch.view_as_complex(g.clone()) if p.is_complex() else g.clone()
            closure = (lambda: torch.tensor(1.0)) if entry.needs_closure else None
            mine.step(closure)
            real.step(closure)
        as_real = [torch.view_as_real(p) if p.is_complex() else p for p in complex_params]
        # Equal to rounding: on the auto path the real parameter takes the fused kernel, the
        # complex one the eager path.
        assert close(as_real, real_params, tol=1e-6), desc


@pytest.mark.parametrize("name", TWINNED)
def test_constructor_defaults_and_repr_are_torchs(name: str) -> None:
    """Signature, ``defaults`` and ``repr`` as torch's (torch's test_optimizer_can_be_printed),
    for every configuration."""
    entry = REGISTRY[name]
    assert described_signature(entry.cls) == expected_signature(entry.twin())
    for desc, kwargs in configurations(entry.twin(), torch.float32):
        mine, theirs = both(entry, lambda cls, kwargs=kwargs: cls(fresh_params(entry), **copy.deepcopy(kwargs)))
        assert list(without_extra_options(mine.defaults)) == list(theirs.defaults), desc
        assert same(without_extra_options(mine.defaults), theirs.defaults), desc
        assert repr_without_extra_options(mine) == repr(theirs), desc


def flag_outcome(cls: type, entry: Entry, kwargs: dict[str, Any], dtype: torch.dtype, sparse: bool) -> str:
    """Where and what constructing ``cls`` with ``kwargs`` and stepping it once raises."""
    param = torch.ones(4, 3, dtype=dtype)
    grad = torch.ones_like(param)
    param.grad = grad.to_sparse() if sparse else grad
    try:
        optimizer = cls([param], **kwargs)
    except Exception as error:  # noqa: BLE001 - the type is the answer
        return f"construction: {type(error).__name__}"
    try:
        optimizer.step((lambda: torch.tensor(1.0)) if entry.needs_closure else None)
    except Exception as error:  # noqa: BLE001
        return f"step: {type(error).__name__}"
    return "steps"


@pytest.mark.parametrize("name", TWINNED)
def test_implementation_flags_as_torch(name: str) -> None:
    """torch's errors for its implementation flags, on the CPU: ``capturable=True`` (an
    AssertionError at the step), ``fused`` with ``foreach`` or ``differentiable`` (at
    construction), ``fused`` with complex parameters or sparse gradients (at the step); and
    the combinations torch runs, which run here too (``fused`` on float64, ``foreach`` on
    complex, ``differentiable`` with ``foreach``)."""
    entry = REGISTRY[name]
    accepted = inspect.signature(entry.twin()).parameters
    cases = [({"capturable": True}, torch.float32, False),
             ({"fused": True, "foreach": True}, torch.float32, False),
             ({"fused": True, "differentiable": True}, torch.float32, False),
             ({"fused": True}, torch.complex64, False),
             ({"fused": True}, torch.float64, False),
             ({"fused": True}, torch.float32, True),
             ({"foreach": True}, torch.float32, False),
             ({"foreach": True}, torch.complex64, False),
             ({"foreach": False, "differentiable": True}, torch.float32, False)]
    for kwargs, dtype, sparse in cases:
        if not set(kwargs) <= set(accepted) or (sparse and not optimizer_info(entry.twin()).supports_sparse):
            continue
        if dtype.is_complex and not optimizer_info(entry.twin()).supports_complex:
            continue
        mine, theirs = both(entry, lambda cls, kw=kwargs, d=dtype, s=sparse: flag_outcome(cls, entry, kw, d, s))
        assert mine == theirs, f"{kwargs}, {dtype}, sparse={sparse}: {mine}, torch {theirs}"
