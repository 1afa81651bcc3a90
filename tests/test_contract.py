"""The torch.optim.Optimizer contract, for every optimizer of the registry: what users,
schedulers and libraries rely on.

Parameter groups and ``add_param_group``, ``zero_grad``, step hooks, ``step(closure)``,
parameters without a gradient, dtypes and layouts, constructor signatures and ``defaults`` equal
to torch's, ``repr``, learning rates written into ``param_groups`` between steps, torch's LR
schedulers and optimlab's own schedules, ``deepcopy`` and ``pickle``.

Every test runs each entry of :data:`optimlab.optimizers.registry.ENTRIES` (in its richest
configuration, :func:`~tests.helpers.rich_config`, so that it keeps state) for a few steps on
small parameters, as its flags ask: shapes with ``min_dim`` dimensions (Muon: matrices), a
closure for ``needs_closure`` (L-BFGS, :func:`~tests.helpers.step_with`), one group for
``single_group``. A property that holds only under a flag is parametrized by that flag, and the
other side of it is asserted too (``one_vector``, ``single_group``, ``lr_scales_steps``).
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import torch

import optimlab
from optimlab import schedules as S
from optimlab.optimizers.registry import REGISTRY
from tests.helpers import (
    Run,
    as_fed,
    clone_params,
    compare_runs,
    contiguous_grads,
    described_signature,
    expected_signature,
    fit_shape,
    fit_specs,
    grad_sequence,
    half_lr,
    loss_with_grads,
    lr_of,
    make_params,
    max_rel_error,
    names,
    record,
    repr_without_extra_options,
    rich_config,
    same,
    snapshot,
    split_of,
    step_with,
    takes,
    twins,
    values,
    without_extra_options,
)

#: Small tensors step fastest on one torch thread (Muon's bfloat16 matrix products of a few rows are
#: ~100x slower on two threads of a busy machine than on one).
pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = [((), "contiguous"), ((3, 4), "transposed"), ((5, 2), "strided"), ((4,), "contiguous")]
ALL = names()
#: The tests against torch.optim: the entries whose reference is a torch twin.
TWINNED = names(lambda entry: entry.twin() is not None)
#: Groups with options of their own: every optimizer but the single-group ones (L-BFGS).
GROUPED = names(lambda entry: not entry.single_group)


def params64(name: str, seed: int = 0) -> list[torch.Tensor]:
    return make_params(fit_specs(name, SPECS), torch.float64, seed)


def build(name: str, params: list[torch.Tensor], **overrides: Any) -> torch.optim.Optimizer:
    """optimlab's ``name`` in its richest configuration (``overrides`` on top), one group."""
    return getattr(optimlab, name)(params, **{**rich_config(name), **overrides})


def overrides_of(name: str) -> dict[str, Any]:
    """Options a second group sets for itself: half the lr, and a weight decay where there is one."""
    return {**half_lr(name, rich_config(name)), **({"weight_decay": 0.2} if takes(name, "weight_decay") else {})}


# -- signatures and defaults ------------------------------------------------------------------
@pytest.mark.parametrize("name", TWINNED)
def test_constructor_signature_is_torchs(name):
    mine, theirs = (cls.__init__ for cls in twins(name))
    assert described_signature(mine) == expected_signature(theirs)


@pytest.mark.parametrize("name", TWINNED)
def test_defaults_and_repr_are_torchs(name):
    mine, theirs = (cls(params64(name)) for cls in twins(name))
    assert without_extra_options(mine.defaults) == theirs.defaults
    assert list(without_extra_options(mine.defaults)) == list(theirs.defaults)
    assert repr_without_extra_options(mine) == repr(theirs) and f"{name} (" in repr(mine) and "Parameter Group 0" in repr(mine)


# -- parameter groups -------------------------------------------------------------------------
@pytest.mark.parametrize("name", GROUPED)
def test_groups_take_defaults_and_keep_their_overrides(name):
    """Two groups are two optimizers: each group steps like an optimizer built with its options alone."""
    override = overrides_of(name)
    a, b = params64(name)[:2]
    optimizer = build(name, [{"params": [a]}, {"params": [b], **override}])
    first, second = optimizer.param_groups
    assert {k: v for k, v in first.items() if k != "params"} == optimizer.defaults
    assert all(second[k] == v for k, v in override.items())
    assert all(second[k] == v for k, v in optimizer.defaults.items() if k not in override)
    sequence = grad_sequence([a, b], 5, seed=1)
    grouped = Run(optimizer, [a, b]).steps(sequence)
    alone = [Run(build(name, [p], **hp), [p]).steps([[grads[i]] for grads in sequence])
             for i, (p, hp) in enumerate(zip(clone_params(params64(name)[:2]), [{}, override]))]
    assert torch.equal(grouped.params[0], alone[0].params[0]) and torch.equal(grouped.params[1], alone[1].params[0])


@pytest.mark.parametrize("name", names(lambda entry: entry.single_group))
def test_single_group_optimizers_refuse_a_second_group(name):
    """The other side of ``single_group`` (the group tests above run every other optimizer): a
    second group is refused, at construction and later, as torch's twin refuses it."""
    a, b = params64(name)[:2]
    for cls in twins(name):
        with pytest.raises(ValueError, match="parameter groups"):
            cls([{"params": [a]}, {"params": [b]}])
    optimizer = build(name, [a])
    before = snapshot(optimizer)
    with pytest.raises(ValueError, match="parameter groups"):
        optimizer.add_param_group({"params": [b]})
    assert same(snapshot(optimizer), before)


@pytest.mark.parametrize("name", GROUPED)
def test_add_param_group_after_steps(name):
    params = params64(name)
    override = half_lr(name, rich_config(name))
    optimizer = build(name, params[:2])
    Run(optimizer, params[:2]).steps(grad_sequence(params[:2], 3, seed=1))
    optimizer.add_param_group({"params": params[2:], **override})
    assert optimizer.param_groups[1]["lr"] == override["lr"]
    assert all(optimizer.param_groups[1][k] == v for k, v in optimizer.defaults.items() if k != "lr")
    new = clone_params(params[2:])
    alone = build(name, new, **override)
    grads = grad_sequence(params, 2, seed=2)
    Run(optimizer, params).steps(grads)
    Run(alone, new).steps([g[2:] for g in grads])
    assert all(torch.equal(p, q) for p, q in zip(params[2:], new))


BAD_GROUPS = {
    "negative lr": (lambda p, new: {"params": [new], "lr": -1.0}, ValueError,
                    "lr must be a finite number >=? 0, got -1.0"),  # > 0: SparseAdam's, as torch's
    "integer parameter": (lambda p, new: {"params": [new.detach().long()]}, TypeError,
                          "is torch.int64; optimizers need floating-point or complex parameters"),
    "parameter already in a group": (lambda p, new: {"params": [p]}, ValueError, "more than one parameter group"),
    "string lr": (lambda p, new: {"params": [new], "lr": "0.1"}, TypeError, "lr must be a real number, got str '0.1'"),
}


@pytest.mark.parametrize("bad", list(BAD_GROUPS))
@pytest.mark.parametrize("name", GROUPED)
def test_bad_param_group_is_rejected_and_nothing_changes(name, bad):
    params = params64(name)
    optimizer = build(name, params)
    Run(optimizer, params).steps(grad_sequence(params, 2, seed=1))
    make_group, error, message = BAD_GROUPS[bad]
    before = snapshot(optimizer)
    with pytest.raises(error, match=message):
        optimizer.add_param_group(make_group(params[0], torch.zeros(fit_shape(name, (2,)), requires_grad=True)))
    assert same(snapshot(optimizer), before)
    Run(optimizer, params).steps(grad_sequence(params, 1, seed=2))  # and it still steps


# -- zero_grad, hooks, closures, skipped parameters ------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_zero_grad(name):
    params = params64(name)
    optimizer = build(name, params)
    for p, g in zip(params, grad_sequence(params, 1, seed=1)[0]):
        p.grad = g
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("name", ALL)
def test_step_hooks_are_called_with_the_optimizer(name):
    params = params64(name)
    optimizer = build(name, params)
    calls = []
    pre = optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append(("pre", opt, values(params))))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append(("post", opt, values(params))))
    start = values(params)
    grads = grad_sequence(params, 1, seed=1)[0]
    step_with(optimizer, params, grads)
    assert [c[0] for c in calls] == ["pre", "post"] and all(c[1] is optimizer for c in calls)
    assert same(calls[0][2], start) and same(calls[1][2], values(params)) and not same(start, values(params))
    pre.remove()
    step_with(optimizer, params, grads)
    assert [c[0] for c in calls] == ["pre", "post", "post"]


def closure_run(cls: type, name: str, params: list[torch.Tensor], targets: list[torch.Tensor], steps: int):
    """``steps`` calls of ``step(closure)`` inside ``no_grad``: the parameters, and the losses the
    steps returned with the first loss each step's closure computed."""
    params = clone_params(params)
    optimizer = cls(params, **rich_config(name))
    returned, first = [], []

    def closure():
        assert torch.is_grad_enabled()
        optimizer.zero_grad()
        loss = sum(torch.log(torch.cosh(p - c)).sum() + 0.1 * (p**2).sum() for p, c in zip(params, targets))
        loss.backward()
        contiguous_grads(params)
        for p, g in zip(params, as_fed(optimizer, [p.grad for p in params])):
            p.grad = g
        computed.append(loss)
        return loss

    for _ in range(steps):
        computed = []
        with torch.no_grad():
            returned.append(optimizer.step(closure))
        first.append(computed[0])
    assert all(r is c for r, c in zip(returned, first, strict=True))
    return values(params), torch.stack([loss.detach() for loss in returned])


@pytest.mark.parametrize("name", TWINNED)
def test_step_with_closure(name):
    """``step(closure)`` evaluates the closure with grad enabled (even inside ``no_grad``),
    returns the loss of its first evaluation (the loss before the step), and steps with the
    gradients it computed, exactly as torch.optim does."""
    params = make_params(fit_specs(name, [((), "contiguous"), ((3, 4), "transposed")]), torch.float64, seed=7)
    targets = [torch.randn(p.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64) for p in params]
    (mine_params, mine_losses), (torch_params, torch_losses) = (closure_run(cls, name, params, targets, 20)
                                                                for cls in twins(name))
    # the run optimizes something: the loss goes down, or up for a run that maximizes it
    assert (torch_losses[-1] < torch_losses[0]) != rich_config(name).get("maximize", False)
    assert record(f"{name} closure params", max_rel_error(mine_params, torch_params)) <= 1e-10
    assert max_rel_error([mine_losses], [torch_losses]) <= 1e-10


@pytest.mark.parametrize("name", ALL)
def test_step_without_closure(name):
    """Returns None; an optimizer that needs a closure (``needs_closure``) refuses to step
    without one, as its torch twin does."""
    p = torch.ones(fit_shape(name, (2,)), requires_grad=True)
    if REGISTRY[name].needs_closure:
        for cls in twins(name):
            with pytest.raises(TypeError, match="closure"):
                cls([p]).step()
    else:
        optimizer = getattr(optimlab, name)([p])
        (p.grad,) = as_fed(optimizer, [torch.ones_like(p)])
        assert optimizer.step() is None


@pytest.mark.parametrize("name", names(lambda entry: not entry.one_vector))
def test_parameters_without_grad_are_skipped_and_their_state_untouched(name):
    params = params64(name)
    optimizer = build(name, params)
    Run(optimizer, params).steps(grad_sequence(params, 3, seed=1))
    frozen, before = params[1], snapshot(optimizer)["state"][1]
    value = frozen.detach().clone()
    grads = grad_sequence(params, 3, seed=2)
    for g in grads:
        g[1] = None
    Run(optimizer, params).steps(grads)
    assert torch.equal(frozen, value) and same(snapshot(optimizer)["state"][1], before)


@pytest.mark.parametrize("name", ALL)
def test_a_parameter_never_given_a_gradient_is_untouched(name):
    """Never stepped, never moved; its state is none, or (``state_at_construction``, Adagrad) the
    state made when its group was added, as torch does. Also for optimizers that step all
    parameters as one vector (``one_vector``): its part of every direction stays zero."""
    params = params64(name)
    never = torch.ones(fit_shape(name, (3,)), dtype=torch.float64, requires_grad=True)
    optimizer = build(name, [*params, never])
    Run(optimizer, [*params, never]).steps([[*grads, None] for grads in grad_sequence(params, 4, seed=2)])
    assert torch.equal(never, torch.ones_like(never)) and not same(values(params), values(params64(name)))
    if getattr(optimizer, "state_at_construction", False):
        twin = never.detach().clone().requires_grad_()
        initial = build(name, [twin]).state[twin]
        assert same(dict(optimizer.state[never]), dict(initial)) and float(initial["step"]) == 0
    else:
        assert never not in optimizer.state or optimizer.state[never] == {}


@pytest.mark.parametrize("name", TWINNED)
def test_state_exists_from_construction_exactly_where_the_torch_twin_makes_it(name):
    """torch.optim.Adagrad makes every parameter's state in its constructor; the others on the
    first step. A checkpoint taken before any step has the same entries in both."""
    params = params64(name)
    ours, theirs = (cls(params, **rich_config(name)) for cls in twins(name))
    mine, reference = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert mine.keys() == reference.keys()
    for index, state in reference.items():
        assert same(mine[index], state), index
    theirs.load_state_dict(ours.state_dict())  # and torch can step from it
    step_with(theirs, params, [torch.ones_like(p) for p in params])


# -- dtypes and layouts -----------------------------------------------------------------------
def layout_of(value: Any) -> Any:
    """What a state value is, without its numbers: (dtype, shape) of tensors, lists of those, types."""
    if isinstance(value, torch.Tensor):
        return value.dtype, tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return type(value), [layout_of(v) for v in value]
    return type(value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", TWINNED)
def test_dtypes_and_layouts_are_kept(name, dtype):
    """0-d, transposed and strided parameters keep dtype, shape and strides; state has the keys,
    dtypes and shapes of torch.optim's; steps are finite and move the parameters. (Strides of
    state may differ: optimlab's momentum buffer starts as a copy of the first direction, laid
    out like the gradient, where torch.optim.RMSprop allocates it like the parameter.)"""
    params = make_params(fit_specs(name, SPECS), dtype, seed=0)
    sequence = grad_sequence(params, 3, seed=1)
    mine, theirs = (Run.build(cls, params, rich_config(name), {}, None).steps(sequence) for cls in twins(name))
    for p, original in zip(mine.params, params):
        assert (p.dtype, p.shape, p.stride()) == (original.dtype, original.shape, original.stride())
        assert torch.isfinite(p).all()
    assert not same(values(mine.params), values(params))
    for s_mine, s_theirs in zip(*(snapshot(run.optimizer)["state"] for run in (mine, theirs))):
        assert s_mine.keys() == s_theirs.keys()
        for k in s_mine:
            assert layout_of(s_mine[k]) == layout_of(s_theirs[k]), k


# -- learning rates: written into groups, tensors, schedulers -------------------------------------
@pytest.mark.parametrize("name", TWINNED)
def test_lr_written_into_param_groups_takes_effect(name):
    """As in torch, from the next step on, for optimizers whose steps scale with the lr
    (``lr_scales_steps``); Rprop reads it on a parameter's first step only: no effect later."""
    params = params64(name)
    sequence = grad_sequence(params, 6, seed=1)
    config = rich_config(name)
    runs = [Run.build(cls, params, config, {}, None) for cls in twins(name)]
    for run in runs:
        run.steps(sequence[:3])
        run.optimizer.param_groups[0]["lr"] = lr_of(name, config) * 3
        run.steps(sequence[3:])
    compare_runs(f"{name} lr written into param_groups", runs[0], runs[1], sequence, 1e-10)
    unchanged = Run.build(getattr(optimlab, name), params, config, {}, None).steps(sequence)
    took_effect = not same(values(unchanged.params), values(runs[0].params))
    assert took_effect == REGISTRY[name].lr_scales_steps


@pytest.mark.parametrize("name", TWINNED)
def test_tensor_lr(name):
    params = params64(name)
    sequence = grad_sequence(params, 5, seed=1)
    # float64, like the parameters: torch.optim computes e.g. Adam's lr / (1 - beta1^t) in the
    # tensor's dtype, so a float32 lr rounds its step sizes to float32 (optimlab reads it once).
    config = rich_config(name)
    hp = {**config, "lr": torch.tensor(lr_of(name, config), dtype=torch.float64)}
    mine, theirs = (Run.build(cls, params, hp, {}, None).steps(sequence) for cls in twins(name))
    compare_runs(f"{name} tensor lr", mine, theirs, sequence, 1e-10)


@pytest.mark.parametrize("name", TWINNED)
def test_lr_scheduler_drives_it_like_torch(name):
    params = params64(name)
    sequence = grad_sequence(params, 12, seed=1)
    config = rich_config(name)
    lr, override = lr_of(name, config), half_lr(name, config)
    runs, lrs = [], []
    for cls in twins(name):
        run = Run.build(cls, params, config, override, split_of(name, params, 2))
        scheduler = torch.optim.lr_scheduler.StepLR(run.optimizer, step_size=4, gamma=0.3)
        history = []
        for grads in sequence:
            run.steps([grads])
            scheduler.step()
            history.append(scheduler.get_last_lr())
        runs.append(run)
        lrs.append(history)
    assert lrs[0] == lrs[1]
    assert lrs[0][-1] == pytest.approx([lr * 0.3**3] + ([override["lr"] * 0.3**3] if override else []))
    compare_runs(f"{name} StepLR", runs[0], runs[1], sequence, 1e-10)


@pytest.mark.parametrize("name", ALL)
def test_lr_schedule_given_directly_or_attached_is_the_lr_written_by_hand(name):
    """``lr=schedule`` (optimlab's direct form) and a :class:`optimlab.schedules.Scheduler`
    attached to the optimizer step exactly as the same values written into the group before
    each step."""
    params = params64(name)
    sequence = grad_sequence(params, 8, seed=1)
    config = rich_config(name)
    schedule = S.linear(lr_of(name, config), lr_of(name, config) / 4, len(sequence))
    direct = Run.build(getattr(optimlab, name), params, {**config, "lr": schedule}, {}, None).steps(sequence)
    by_hand, attached = (Run.build(getattr(optimlab, name), params, config, {}, None) for _ in range(2))
    scheduler = S.Scheduler(attached.optimizer, {"lr": schedule})
    for t, grads in enumerate(sequence):
        by_hand.optimizer.param_groups[0]["lr"] = schedule(t)
        by_hand.steps([grads])
        attached.steps([grads])
        scheduler.step()
    for run in (direct, attached):
        assert same(values(run.params), values(by_hand.params))
        assert same(snapshot(run.optimizer)["state"], snapshot(by_hand.optimizer)["state"])


# -- copies -------------------------------------------------------------------------------------
COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda obj: pickle.loads(pickle.dumps(obj))}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("name", ALL)
def test_copied_mid_run_goes_on_as_the_original(name, how):
    """An optimizer copied together with its parameters (deepcopy, pickle) after some steps goes
    on bit for bit as the original, and stepping the copy leaves the original alone."""
    params = params64(name)
    sequence = grad_sequence(params, 6, seed=1)
    original = Run(build(name, params), params).steps(sequence[:3])
    copied_params, copied_optimizer = COPIES[how]((params, original.optimizer))
    untouched = snapshot(original.optimizer)
    copied = Run(copied_optimizer, copied_params).steps(sequence[3:])
    assert same(snapshot(original.optimizer), untouched)
    original.steps(sequence[3:])
    assert same(values(copied.params), values(original.params))
    assert same(snapshot(copied.optimizer)["state"], snapshot(original.optimizer)["state"])


def test_closure_helper_feeds_the_given_gradients():
    """:func:`tests.helpers.loss_with_grads`, which drives the optimizers that need a closure:
    at the parameters it starts from, the gradients it makes are the given ones plus the
    parameters, and None stays None."""
    params = make_params([((2, 3), "transposed"), ((4,), "contiguous")], torch.float64, 0)
    grads = [torch.ones(2, 3, dtype=torch.float64), None]
    loss_with_grads(params, grads)()
    assert torch.equal(params[0].grad, 1 + params[0].detach()) and params[1].grad is None
