"""What the per-step shortcuts remember between steps, and everything that must make them forget.

A steady step reuses the last step's hyperparameter check, state lookups, kernel and argument
array (:mod:`optimlab.engine.state`, :mod:`optimlab.engine.fused`, the facade's
``check_group_cached``). Each test changes one thing between steady steps and checks that the
result is the eager path's (or the error is the one a fresh check raises), and that the fused
path really ran, so a shortcut that skipped the change could not pass.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import optimlab
from optimlab import engine
from optimlab.engine.state import StateDict, StateTable

#: float64, so that the fused kernel's last-place differences from eager (a reciprocal for a
#: division, a correctly rounded sqrt) stay far below any effect of a stale cache.
TOL = dict(rtol=1e-12, atol=1e-14)
SHAPES = [(5, 3), (7,), (1,), (40,)]


@pytest.fixture(autouse=True)
def default_path() -> Any:
    with engine.using("auto"):
        yield


@pytest.fixture(autouse=True, params=["native checks", "python checks"])
def steady_checks(request: Any, monkeypatch: Any) -> None:
    """Every test runs with the native helper's steady-state checks and with the Python ones."""
    if request.param == "python checks":
        monkeypatch.setattr(engine.native, "helper", lambda: None)
        return
    reason = engine.native.unavailable_reason()
    if reason:
        pytest.skip(f"no native helper here: {reason}")
    module = engine.native.load(engine.native.build())
    monkeypatch.setattr(engine.native, "helper", lambda: module)


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in SHAPES]


def set_grads(params: list[torch.Tensor], step: int, skip: tuple[int, ...] = ()) -> None:
    for i, p in enumerate(params):
        g = torch.Generator().manual_seed(1000 * step + i)
        p.grad = None if i in skip else torch.randn(p.shape, generator=g, dtype=p.dtype)


def both_paths(name: str, kwargs: dict, script: Callable[[Any, list, int], None], steps: int = 8) -> None:
    """Run ``script(opt, params, step)`` before each step on the eager and the default path:
    same results, and the default path used its kernel on every step after the first two."""
    results = []
    for path in ("eager", "auto"):
        params = make_params()
        opt = getattr(optimlab, name)(params, **kwargs)
        with engine.using(path):
            fused_before = engine.path_counts["fused"]
            for step in range(steps):
                set_grads(params, step)
                script(opt, params, step)
                opt.step()
            fused = engine.path_counts["fused"] - fused_before
        results.append((params, opt, fused))
    (eager_params, eager_opt, _), (params, opt, fused) = results
    assert fused >= len(params) * (steps - 3)
    for a, b in zip(params, eager_params):
        torch.testing.assert_close(a, b, **TOL)
    for a, b in zip(params, eager_params):
        assert opt.state[a].keys() == eager_opt.state[b].keys()
        for key in opt.state[a]:
            torch.testing.assert_close(opt.state[a][key], eager_opt.state[b][key], **TOL)


# -- hyperparameter checks ---------------------------------------------------------------------
@pytest.mark.parametrize("key, value, error", [
    ("lr", -0.1, ValueError),
    ("weight_decay", float("nan"), ValueError),
    ("betas", (0.9, 1.0), ValueError),
    ("betas", (0.9, "0.999"), TypeError),
    ("maximize", 0, TypeError),        # 0 == False, but not a flag
    ("eps", torch.tensor(-1.0), ValueError),
])
def test_a_bad_value_written_between_steps_raises_the_checks_error(key: str, value: Any, error: type) -> None:
    params = make_params()
    opt = optimlab.Adam(params, lr=0.01)
    for step in range(3):
        set_grads(params, step)
        opt.step()
    before = [p.detach().clone() for p in params]
    opt.param_groups[0][key] = value
    with pytest.raises(error) as raised:
        opt.step()
    with pytest.raises(error) as fresh:
        opt.check_group(opt.param_groups[0])
    assert str(raised.value) == str(fresh.value)
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # nothing stepped


def test_a_tensor_hyperparameter_is_checked_on_every_step() -> None:
    params = make_params()
    lr = torch.tensor(0.01)
    opt = optimlab.SGD(params, lr=lr, momentum=0.9)
    for step in range(3):
        set_grads(params, step)
        opt.step()
    lr.fill_(-1.0)  # in place: the group holds the same object
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        opt.step()


def test_a_check_spanning_values_runs_again_after_a_change() -> None:
    params = make_params()
    opt = optimlab.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    for step in range(3):
        set_grads(params, step)
        opt.step()
    opt.param_groups[0]["dampening"] = 0.5
    with pytest.raises(ValueError, match="nesterov=True requires"):
        opt.step()
    opt.param_groups[0]["dampening"] = 0.0
    opt.step()


# -- hyperparameters reaching the kernel -------------------------------------------------------
def test_hyperparameters_changed_between_steady_steps() -> None:
    def script(opt: Any, params: list, step: int) -> None:
        group = opt.param_groups[0]
        if step < 5:
            group["lr"] = [0.01, 0.02, 0.01][step % 3]
        elif step == 5:
            group["lr"] = torch.tensor(0.01)
        else:
            group["lr"].mul_(0.5)  # a tensor changed in place: read on every step
        group["betas"] = (0.9, 0.999) if step % 2 else (0.8, 0.99)
        group["weight_decay"] = 0.0 if step < 3 else 0.1

    both_paths("AdamW", dict(lr=0.01), script)


# -- state --------------------------------------------------------------------------------------
def test_state_changed_between_steady_steps() -> None:
    def script(opt: Any, params: list, step: int) -> None:
        if step == 3:
            opt.state[params[0]]["exp_avg"] = opt.state[params[0]]["exp_avg"].clone()  # counted dict
        if step == 4:
            opt.state[params[1]] = {}                                   # replaced: starts over
        if step == 5:
            opt.state[params[1]]["exp_avg_sq"] = torch.full_like(params[1], 0.5)  # plain dict, written into
        if step == 6:
            del opt.state[params[2]]
        if step == 7:
            opt.state[params[3]].clear()

    both_paths("Adam", dict(lr=0.01), script)


def test_gradients_missing_on_some_steps() -> None:
    def script(opt: Any, params: list, step: int) -> None:
        if step in (3, 4):
            params[step - 2].grad = None
        if step == 6:
            params[0].grad = None
            params[3].grad = None

    both_paths("RMSprop", dict(lr=0.01, momentum=0.5), script, steps=9)


def test_parameters_moved_between_steady_steps() -> None:
    def script(opt: Any, params: list, step: int) -> None:
        if step == 3:
            params[0].data = params[0].data.clone()
        if step == 5:
            params[3].data = params[3].data[:40].clone() * 0.5

    both_paths("Adagrad", dict(lr=0.1), script)


def test_load_state_dict_mid_run() -> None:
    saved: dict = {}

    def script(opt: Any, params: list, step: int) -> None:
        if step == 2:
            saved["sd"] = copy.deepcopy(opt.state_dict())
        if step == 5:
            opt.load_state_dict(saved["sd"])
            assert type(opt.state) is StateTable
            assert all(type(s) is StateDict for s in opt.state.values())

    both_paths("AdamW", dict(lr=0.01), script)


def test_add_param_group_mid_run() -> None:
    extra: dict = {}

    def script(opt: Any, params: list, step: int) -> None:
        if step == 3:
            extra["p"] = torch.nn.Parameter(torch.ones(6, dtype=torch.float64))
            opt.add_param_group({"params": [extra["p"]], "lr": 0.05})
        if "p" in extra:
            extra["p"].grad = torch.full((6,), 0.1 * step, dtype=torch.float64)

    both_paths("SGD", dict(lr=0.1, momentum=0.9), script)


@pytest.mark.parametrize("change", [
    lambda t, k: t.__setitem__(k, {}),
    lambda t, k: t.__delitem__(k),
    lambda t, k: t.pop(k),
    lambda t, k: t.popitem(),
    lambda t, k: t.clear(),
    lambda t, k: t.update({k: {}}),
    lambda t, k: t.setdefault(object(), {}),
    lambda t, k: t.__ior__({k: {}}),
    lambda t, k: t[object()],                     # a missing key makes an entry
    lambda t, k: t[k].__setitem__("x", 1),
    lambda t, k: t[k].pop("a"),
    lambda t, k: t[k].update(x=1),
    lambda t, k: t[k].clear(),
    lambda t, k: t[k].setdefault("y", 2),
    lambda t, k: t[k].__delitem__("a"),
    lambda t, k: t[k].popitem(),
    lambda t, k: t[k].__ior__({"x": 1}),
])
def test_every_change_of_a_state_table_is_counted(change: Callable) -> None:
    table = StateTable()
    key = object()
    table[key]["a"] = 1
    version = table.version
    change(table, key)
    assert table.version > version


def test_state_tables_copy_pickle_and_checkpoint_as_torch_state() -> None:
    params = make_params()
    opt = optimlab.Adam(params, lr=0.01)
    for step in range(2):
        set_grads(params, step)
        opt.step()
    for other in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert type(other.state) is StateTable
        assert all(type(s) is StateDict and s.table is other.state for s in other.state.values())
    state_dict = opt.state_dict()
    assert all(type(s) is dict for s in state_dict["state"].values())
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # no optimlab class in a checkpoint
    torch.testing.assert_close(loaded["state"][0]["exp_avg"], opt.state[params[0]]["exp_avg"])
    assert type(pickle.loads(pickle.dumps(opt.state[params[0]]))) is dict


# -- torch.optim's step wrapper ------------------------------------------------------------------
def test_step_hooks_fire_and_can_change_arguments() -> None:
    params = make_params()
    opt = optimlab.Adam(params, lr=0.01)
    calls: list[str] = []
    set_grads(params, 0)
    opt.step()
    handles = [
        opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre")),
        opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post")),
        register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append("global pre")),
        register_optimizer_step_post_hook(lambda o, args, kwargs: calls.append("global post")),
    ]
    try:
        opt.step()
        assert calls == ["global pre", "pre", "post", "global post"]
        # A pre-hook may replace the arguments: here it supplies a closure.
        handles.append(opt.register_step_pre_hook(lambda o, args, kwargs: (args, {"closure": lambda: 7.0})))
        assert opt.step() == 7.0
    finally:
        for handle in handles:
            handle.remove()
    calls.clear()
    opt.step()
    assert calls == []


def test_the_profiler_sees_every_step() -> None:
    params = make_params()
    opt = optimlab.AdamW(params, lr=0.01)
    set_grads(params, 0)
    opt.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
        opt.step()
    assert [e.name for e in prof.events()].count("Optimizer.step#AdamW.step") == 2


def test_a_subclass_step_is_wrapped_as_torch_wraps_it() -> None:
    """A subclass's own ``step`` gets the wrapper as torch.optim gives it, including torch's quirk
    that a ``super().step()`` into an already wrapped step runs the hooks once more."""
    def hook_calls(base: type) -> int:
        class Subclass(base):  # type: ignore[valid-type, misc]
            def step(self, closure: Any = None) -> Any:
                return super().step(closure)

        params = make_params()
        opt = Subclass(params, lr=0.1)
        calls: list[int] = []
        opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(1))
        set_grads(params, 0)
        opt.step()
        return len(calls)

    for base in (optimlab.SGD, torch.optim.SGD):
        base(make_params(), lr=0.1)  # the base class's step is wrapped once an instance exists
    assert hook_calls(optimlab.SGD) == hook_calls(torch.optim.SGD) == 2
