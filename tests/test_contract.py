"""The torch.optim.Optimizer contract: what users, schedulers and libraries rely on.

Parameter groups and ``add_param_group``, ``zero_grad``, step hooks, parameters without a
gradient, dtypes and layouts, constructor signatures and ``defaults`` equal to torch's, ``repr``,
learning rates written into ``param_groups`` between steps, and torch's LR schedulers.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import optimlab
from tests.helpers import (
    NAMES,
    Run,
    clone_params,
    compare_runs,
    grad_sequence,
    make_params,
    same,
    set_grads,
    snapshot,
    twins,
    values,
)

SPECS = [((), "contiguous"), ((3, 4), "transposed"), ((5, 2), "strided"), ((4,), "contiguous")]
#: Non-default hyperparameters for each optimizer, so that every test runs some state.
HP = {"SGD": dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
      "Adagrad": dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
      "RMSprop": dict(lr=0.01, momentum=0.5, centered=True),
      "Adam": dict(lr=0.01, amsgrad=True, weight_decay=0.01),
      "AdamW": dict(lr=0.01, weight_decay=0.1)}


def params64(seed: int = 0) -> list[torch.Tensor]:
    return make_params(SPECS, torch.float64, seed)


# -- signatures and defaults ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_constructor_signature_is_torchs(name):
    mine, theirs = (inspect.signature(cls.__init__) for cls in twins(name))
    describe = lambda sig: [(p.name, p.kind, p.default) for p in sig.parameters.values()]  # noqa: E731
    assert describe(mine) == describe(theirs)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_and_repr_are_torchs(name):
    mine, theirs = (cls(params64()) for cls in twins(name))
    assert mine.defaults == theirs.defaults
    assert list(mine.defaults) == list(theirs.defaults)
    assert repr(mine) == repr(theirs) and f"{name} (" in repr(mine) and "Parameter Group 0" in repr(mine)


# -- parameter groups -------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_groups_take_defaults_and_keep_their_overrides(name):
    cls = getattr(optimlab, name)
    a, b = params64()[:2]
    optimizer = cls([{"params": [a]}, {"params": [b], "lr": 0.5, "weight_decay": 0.2}], **HP[name])
    first, second = optimizer.param_groups
    assert {k: v for k, v in first.items() if k != "params"} == optimizer.defaults
    assert second["lr"] == 0.5 and second["weight_decay"] == 0.2
    assert all(second[k] == v for k, v in optimizer.defaults.items() if k not in ("lr", "weight_decay"))
    # The overrides act: each group steps like an optimizer built with its hyperparameters alone.
    sequence = grad_sequence([a, b], 5, seed=1)
    grouped = Run(optimizer, [a, b]).steps(sequence)
    alone = [Run(cls([p], **{**HP[name], **hp}), [p]).steps([[grads[i]] for grads in sequence])
             for i, (p, hp) in enumerate(zip(clone_params(params64()[:2]), [{}, {"lr": 0.5, "weight_decay": 0.2}]))]
    assert torch.equal(grouped.params[0], alone[0].params[0]) and torch.equal(grouped.params[1], alone[1].params[0])


@pytest.mark.parametrize("name", NAMES)
def test_add_param_group_after_steps(name):
    cls = getattr(optimlab, name)
    params = params64()
    optimizer = cls(params[:2], **HP[name])
    Run(optimizer, params[:2]).steps(grad_sequence(params[:2], 3, seed=1))
    optimizer.add_param_group({"params": params[2:], "lr": 0.05})
    assert optimizer.param_groups[1]["lr"] == 0.05
    assert all(optimizer.param_groups[1][k] == v for k, v in optimizer.defaults.items() if k != "lr")
    new = clone_params(params[2:])
    alone = cls(new, **{**HP[name], "lr": 0.05})
    grads = grad_sequence(params, 2, seed=2)
    Run(optimizer, params).steps(grads)
    Run(alone, new).steps([g[2:] for g in grads])
    assert all(torch.equal(p, q) for p, q in zip(params[2:], new))


BAD_GROUPS = {
    "negative lr": (lambda p: {"params": [torch.zeros(2, requires_grad=True)], "lr": -1.0}, ValueError,
                    "lr must be a finite number >= 0, got -1.0"),
    "integer parameter": (lambda p: {"params": [torch.zeros(3, dtype=torch.long)]}, TypeError,
                          "is torch.int64; optimizers need floating-point or complex parameters"),
    "parameter already in a group": (lambda p: {"params": [p]}, ValueError, "more than one parameter group"),
    "string lr": (lambda p: {"params": [torch.zeros(2, requires_grad=True)], "lr": "0.1"}, TypeError,
                  "lr must be a real number, got str '0.1'"),
}


@pytest.mark.parametrize("bad", list(BAD_GROUPS))
@pytest.mark.parametrize("name", NAMES)
def test_bad_param_group_is_rejected_and_nothing_changes(name, bad):
    params = params64()
    optimizer = getattr(optimlab, name)(params, **HP[name])
    Run(optimizer, params).steps(grad_sequence(params, 2, seed=1))
    make_group, error, message = BAD_GROUPS[bad]
    before = snapshot(optimizer)
    with pytest.raises(error, match=message):
        optimizer.add_param_group(make_group(params[0]))
    assert same(snapshot(optimizer), before)
    Run(optimizer, params).steps(grad_sequence(params, 1, seed=2))  # and it still steps


# -- zero_grad, hooks, skipped parameters -----------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_zero_grad(name):
    params = params64()
    optimizer = getattr(optimlab, name)(params)
    set_grads(params, grad_sequence(params, 1, seed=1)[0])
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    optimizer.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("name", NAMES)
def test_step_hooks_are_called_with_the_optimizer(name):
    params = params64()
    optimizer = getattr(optimlab, name)(params, **HP[name])
    calls = []
    pre = optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append(("pre", opt, values(params))))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append(("post", opt, values(params))))
    start = values(params)
    set_grads(params, grad_sequence(params, 1, seed=1)[0])
    optimizer.step()
    assert [c[0] for c in calls] == ["pre", "post"] and all(c[1] is optimizer for c in calls)
    assert same(calls[0][2], start) and same(calls[1][2], values(params)) and not same(start, values(params))
    pre.remove()
    optimizer.step()
    assert [c[0] for c in calls] == ["pre", "post", "post"]


@pytest.mark.parametrize("name", NAMES)
def test_parameters_without_grad_are_skipped_and_their_state_untouched(name):
    params = params64()
    optimizer = getattr(optimlab, name)(params, **HP[name])
    Run(optimizer, params).steps(grad_sequence(params, 3, seed=1))
    frozen, before = params[1], snapshot(optimizer)["state"][1]
    value = frozen.detach().clone()
    grads = grad_sequence(params, 3, seed=2)
    for g in grads:
        g[1] = None
    Run(optimizer, params).steps(grads)
    assert torch.equal(frozen, value) and same(snapshot(optimizer)["state"][1], before)
    never = torch.ones(3, dtype=torch.float64, requires_grad=True)
    optimizer.add_param_group({"params": [never]})
    Run(optimizer, [*params, never]).steps([[*g, None] for g in grads])
    if optimizer.state_at_construction:  # made when its group was added (as torch does), never stepped
        twin = never.detach().clone().requires_grad_()
        initial = getattr(optimlab, name)([twin], **HP[name]).state[twin]
        assert same(dict(optimizer.state[never]), dict(initial)) and float(initial["step"]) == 0
    else:
        assert never not in optimizer.state or optimizer.state[never] == {}


@pytest.mark.parametrize("name", NAMES)
def test_state_exists_from_construction_exactly_where_the_torch_twin_makes_it(name):
    """torch.optim.Adagrad makes every parameter's state in its constructor; the others on the
    first step. A checkpoint taken before any step has the same entries in both."""
    params = params64()
    ours, theirs = getattr(optimlab, name)(params, **HP[name]), getattr(torch.optim, name)(params, **HP[name])
    mine, reference = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert mine.keys() == reference.keys()
    for index, state in reference.items():
        assert same(mine[index], state), index
    theirs.load_state_dict(ours.state_dict())  # and torch can step from it
    for p in params:
        p.grad = torch.ones_like(p)
    theirs.step()


# -- dtypes and layouts -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_dtypes_and_layouts_are_kept(name, dtype):
    """0-d, transposed and strided parameters keep dtype, shape and strides; state tensors have
    the keys, dtypes and shapes of torch.optim's; steps are finite. (Strides of state may differ:
    optimlab's momentum buffer starts as a copy of the first direction, laid out like the
    gradient, where torch.optim.RMSprop allocates it like the parameter.)"""
    params = make_params(SPECS, dtype, seed=0)
    sequence = grad_sequence(params, 3, seed=1)
    mine, theirs = (Run.build(cls, params, HP[name], {}, len(params)).steps(sequence) for cls in twins(name))
    for p, original in zip(mine.params, params):
        assert (p.dtype, p.shape, p.stride()) == (original.dtype, original.shape, original.stride())
        assert torch.isfinite(p).all() and not torch.equal(p, original)
    for s_mine, s_theirs in zip(*(snapshot(run.optimizer)["state"] for run in (mine, theirs))):
        assert s_mine.keys() == s_theirs.keys()
        for k in s_mine:
            assert (s_mine[k].dtype, s_mine[k].shape) == (s_theirs[k].dtype, s_theirs[k].shape), k


# -- learning rates: written into groups, tensors, schedulers -------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_lr_written_into_param_groups_takes_effect(name):
    params = params64()
    sequence = grad_sequence(params, 6, seed=1)
    runs = [Run.build(cls, params, HP[name], {}, len(params)) for cls in twins(name)]
    for run in runs:
        run.steps(sequence[:3])
        run.optimizer.param_groups[0]["lr"] = 0.5
        run.steps(sequence[3:])
    compare_runs(f"{name} lr written into param_groups", runs[0], runs[1], sequence, 1e-10)
    unchanged = Run.build(optimlab.__dict__[name], params, HP[name], {}, len(params)).steps(sequence)
    assert not same(values(unchanged.params), values(runs[0].params))


@pytest.mark.parametrize("name", NAMES)
def test_tensor_lr(name):
    params = params64()
    sequence = grad_sequence(params, 5, seed=1)
    # float64, like the parameters: torch.optim computes e.g. Adam's lr / (1 - beta1^t) in the
    # tensor's dtype, so a float32 lr rounds its step sizes to float32 (optimlab reads it once).
    hp = {**HP[name], "lr": torch.tensor(HP[name]["lr"], dtype=torch.float64)}
    mine, theirs = (Run.build(cls, params, hp, {}, len(params)).steps(sequence) for cls in twins(name))
    compare_runs(f"{name} tensor lr", mine, theirs, sequence, 1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_lr_scheduler_drives_it_like_torch(name):
    params = params64()
    sequence = grad_sequence(params, 12, seed=1)
    runs, lrs = [], []
    for cls in twins(name):
        run = Run.build(cls, params, HP[name], {"lr": HP[name]["lr"] / 2}, 2)
        scheduler = torch.optim.lr_scheduler.StepLR(run.optimizer, step_size=4, gamma=0.3)
        history = []
        for grads in sequence:
            run.steps([grads])
            scheduler.step()
            history.append(scheduler.get_last_lr())
        runs.append(run)
        lrs.append(history)
    assert lrs[0] == lrs[1] and lrs[0][-1] == pytest.approx([HP[name]["lr"] * 0.3**3, HP[name]["lr"] / 2 * 0.3**3])
    compare_runs(f"{name} StepLR", runs[0], runs[1], sequence, 1e-10)
