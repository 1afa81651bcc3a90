"""The fused CPU path against the eager reference (and torch.optim), and what users do to it.

Every comparison runs the same optimizer twice from identical parameters and gradients, once
with ``engine.using("eager")`` and once on the default path, and also checks, through
``engine.path_counts``, that the fast path really ran: a test that silently compared eager
with eager could not fail.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch

import optimlab
from optimlab import engine
from optimlab.core import state_spec
from optimlab.engine.segments import segments_of
from optimlab.optimizers.registry import ENTRIES
from tests.helpers import adam_on_each_path, fit_shape, rich_config, step_with


def kind_of(name: str, kwargs: dict) -> str | None:
    """The kind of math (:data:`optimlab.core.KINDS`) ``name`` runs with ``kwargs``; None for an
    optimizer that runs whole steps of its own and builds no transform (L-BFGS)."""
    optimizer = getattr(optimlab, name)([torch.zeros(fit_shape(name, (3,)), requires_grad=True)], **kwargs)
    try:
        return optimizer.transform_for(optimizer.param_groups[0]).kind
    except NotImplementedError:
        return None


#: (optimizer, constructor arguments): every configuration of every registry entry, split by
#: whether the fused path takes it (elementwise math) or not (tensor math, whole steps of its own).
EVERY = [(entry.name, dict(config)) for entry in ENTRIES for config in entry.configs]
CONFIGS = [config for config in EVERY if kind_of(*config) == "elementwise"]
NOT_FUSED = [config for config in EVERY if kind_of(*config) != "elementwise"]
SHAPES = [(5, 3), (7,), (), (1,), (40,), (2, 3, 4)]
#: The fused path rounds exactly where torch does (half types after every operation), so it
#: agrees with eager to a unit or two in the last place; sqrt is the usual difference (torch's
#: vectorised sqrt is not always correctly rounded).
#: In float16 a unit of difference in one step can grow to three over the run where a value
#: nearly cancels (measured: Adadelta with eps=1e-4, 2.5 units, the fused run the closer of the
#: two to float64).
TOL = {torch.float32: dict(rtol=2e-6, atol=1e-7), torch.float64: dict(rtol=1e-13, atol=1e-15),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5), torch.float16: dict(rtol=3e-3, atol=1e-6)}
STEPS = 6


@pytest.fixture(autouse=True)
def default_path() -> Any:
    """These tests are about the default path, whatever OPTIMLAB_ENGINE says for the session."""
    with engine.using("auto"):
        yield


def config_id(config: tuple[str, dict]) -> str:
    name, kwargs = config
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def make_params(dtype: torch.dtype, seed: int = 0, shapes: list = SHAPES) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64).to(dtype)) for s in shapes]


def grad_for(p: torch.Tensor, step: int, index: int) -> torch.Tensor | None:
    """Deterministic gradients; some parameters get none on some steps (they must be skipped)."""
    if (step + index) % 4 == 3:
        return None
    g = torch.Generator().manual_seed(1000 * step + index)
    return torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)


def train(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int, start: int = 0) -> None:
    for step in range(start, start + steps):
        step_with(opt, params, [grad_for(p, step, i) for i, p in enumerate(params)])


def params_for(name: str, dtype: torch.dtype) -> list[torch.nn.Parameter]:
    """The parameters of :data:`SHAPES`, fitted to the optimizer (Muon: matrices)."""
    return make_params(dtype, shapes=[fit_shape(name, shape) for shape in SHAPES])


def run(name: str, kwargs: dict, path: str, dtype: torch.dtype, steps: int = STEPS) -> tuple[list, Any]:
    params = params_for(name, dtype)
    opt = getattr(optimlab, name)(params, **kwargs)
    with engine.using(path):
        train(opt, params, steps)
    return params, opt


def assert_same(params_a: list, opt_a: Any, params_b: list, opt_b: Any, tol: dict) -> None:
    for a, b in zip(params_a, params_b):
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip(params_a, params_b):
        state_a, state_b = opt_a.state[a], opt_b.state[b]
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            torch.testing.assert_close(state_a[key], state_b[key], **tol)


def fused_count() -> int:
    return engine.path_counts["fused"]


CASES = ([(c, torch.float32) for c in CONFIGS] + [(c, torch.float64) for c in CONFIGS]
         + [(c, torch.bfloat16) for c in CONFIGS] + [(c, torch.float16) for c in CONFIGS[::3]])


@pytest.mark.parametrize("config, dtype", CASES, ids=[f"{config_id(c)}-{str(d)[6:]}" for c, d in CASES])
def test_fused_equals_eager(config: tuple[str, dict], dtype: torch.dtype) -> None:
    """The fused path must run for the parameters whose state the kernel takes (:func:`kernel_takes`)."""
    name, kwargs = config
    reference = run(name, kwargs, "eager", dtype)
    before = fused_count()
    fast = run(name, kwargs, "auto", dtype)
    params, optimizer = fast
    if any(kernel_takes(optimizer, p) for p in params):
        assert fused_count() > before, "the fused path did not run"
    assert_same(*fast, *reference, TOL[dtype])


def kernel_takes(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> bool:
    """Whether the fused kernel takes ``param``'s state (as its transform declares it,
    :func:`optimlab.core.state_spec`): each entry shaped like the parameter and in its dtype, or
    0-d beside a parameter with dimensions (per-tensor state: NAdam's ``mu_product``, ASGD's
    ``eta`` and ``mu``, float32 as torch keeps them). Half-precision parameters with 0-d state of
    another dtype may step eagerly (torch rounds such a value to the half type before using it,
    which the kernel does not), so no path is asserted for them."""
    transform = optimizer.transform_for(optimizer.param_groups[0])
    spec = state_spec(transform, param).values()
    if param.dtype in (torch.bfloat16, torch.float16) and any(
            shape == () and dtype != param.dtype for shape, dtype in spec):
        return False
    return all((shape == tuple(param.shape) and dtype == param.dtype) or (shape == () and param.dim() > 0)
               for shape, dtype in spec)


@pytest.mark.parametrize("name, kwargs", [("NAdam", {}), ("NAdam", dict(momentum_decay=0.01, weight_decay=0.1)),
                                          ("ASGD", dict(t0=2, lambd=0.01)), ("ASGD", {})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_d_state_steps_once_per_tensor_on_every_thread(name: str, kwargs: dict, dtype: torch.dtype) -> None:
    """0-d per-tensor state is updated once per tensor, whatever the threads: a tensor large
    enough to be split between two threads (each reads the value from before the step) beside
    small ones, bit for bit the eager path's, its state included."""
    shapes = [(70000,), (5, 3), (1,)]

    def run_on(path: str) -> tuple[list, Any]:
        generator = torch.Generator().manual_seed(3)
        params = [torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes]
        optimizer = getattr(optimlab, name)(params, lr=0.01, **kwargs)
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            with engine.using(path):
                for _ in range(5):
                    for p in params:
                        p.grad = torch.randn(p.shape, generator=generator, dtype=dtype)
                    optimizer.step()
        finally:
            torch.set_num_threads(threads)
        return params, optimizer

    reference = run_on("eager")
    before = fused_count()
    fast = run_on("auto")
    assert fused_count() - before == 5 * len(shapes)
    assert_same(*fast, *reference, dict(rtol=0, atol=0) if name == "ASGD" else TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", NOT_FUSED, ids=config_id)
def test_chains_of_mixed_kinds_fuse_their_elementwise_parts(config: tuple[str, dict], dtype: torch.dtype) -> None:
    """The other side: a chain that mixes math on whole tensors with elementwise links (Muon's
    Newton-Schulz between momentum and weight decay, Adafactor's factored moments before weight
    decay) runs its elementwise parts on the kernel and the rest as torch ops on the true shapes
    (:mod:`optimlab.engine.segments`); whole steps of an optimizer's own (L-BFGS) do not go
    through the engine at all. Either way the results are the eager path's, bit for bit."""
    name, kwargs = config
    reference = run(name, kwargs, "eager", dtype)
    before = dict(engine.path_counts)
    default = run(name, kwargs, "auto", dtype)
    ran = {path: count - before.get(path, 0) for path, count in engine.path_counts.items()}
    params, optimizer = default
    sparse = next(entry for entry in ENTRIES if entry.name == name).sparse_grads  # the kernel takes dense ones
    in_segments = kind_of(name, kwargs) is not None and not sparse and segments_of(
        optimizer.transform_for(optimizer.param_groups[0])) is not None
    assert (ran.get("segments", 0) > 0) == in_segments
    assert (ran.get("fused", 0) > 0) == in_segments
    # the rest: eagerly (SparseAdam's sparse rows), or not in the engine at all (L-BFGS)
    assert (ran.get("eager", 0) > 0) == (not in_segments and kind_of(name, kwargs) is not None)
    assert_same(*default, *reference, dict(rtol=0, atol=0))


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_fused_equals_torch(config: tuple[str, dict]) -> None:
    """The fused path against torch.optim's for-loop implementation, in float64."""
    name, kwargs = config
    params, opt = run(name, kwargs, "auto", torch.float64)
    twin_params = params_for(name, torch.float64)
    twin = getattr(torch.optim, name)(twin_params, **kwargs, foreach=False)
    train(twin, twin_params, STEPS)
    for a, b in zip(params, twin_params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_skipped_parameters_keep_their_step_count() -> None:
    params = make_params(torch.float32, shapes=[(3,), (4,)])
    opt = optimlab.Adam(params, lr=0.1)
    for step in range(4):
        params[0].grad = torch.ones(3)
        params[1].grad = torch.ones(4) if step % 2 == 0 else None
        before = params[1].detach().clone()
        opt.step()
        if step % 2:
            assert torch.equal(params[1], before)
    assert opt.state[params[0]]["step"].item() == 4
    assert opt.state[params[1]]["step"].item() == 2
    opt.zero_grad()  # set_to_none=True: nothing has a gradient, nothing moves
    before = [p.detach().clone() for p in params]
    opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert opt.state[params[0]]["step"].item() == 4


#: Each optimizer the fused path takes, in its richest configuration.
ROUND_TRIPS = [(entry.name, rich_config(entry.name)) for entry in ENTRIES
               if kind_of(entry.name, rich_config(entry.name)) == "elementwise"]


@pytest.mark.parametrize("config", ROUND_TRIPS, ids=config_id)
def test_state_dict_round_trips(config: tuple[str, dict]) -> None:
    name, kwargs = config
    reference_params, reference = run(name, kwargs, "eager", torch.float32, steps=2 * STEPS)

    # optimlab (fused) -> state_dict -> a new optimlab optimizer, continued on the fused path
    params, opt = run(name, kwargs, "auto", torch.float32, steps=STEPS)
    saved = copy.deepcopy(opt.state_dict())
    resumed = getattr(optimlab, name)(params, **kwargs)
    resumed.load_state_dict(saved)
    train(resumed, params, STEPS, start=STEPS)
    assert_same(params, resumed, reference_params, reference, TOL[torch.float32])

    # optimlab (fused) -> torch.optim: the checkpoint format is torch's
    params, opt = run(name, kwargs, "auto", torch.float32, steps=STEPS)
    twin = getattr(torch.optim, name)(params, **kwargs, foreach=False)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(twin, params, STEPS, start=STEPS)
    for a, b in zip(params, reference_params):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6)

    # torch.optim -> optimlab (fused)
    params = params_for(name, torch.float32)
    twin = getattr(torch.optim, name)(params, **kwargs, foreach=False)
    train(twin, params, STEPS)
    ours = getattr(optimlab, name)(params, **kwargs)
    ours.load_state_dict(copy.deepcopy(twin.state_dict()))
    before = fused_count()
    train(ours, params, STEPS, start=STEPS)
    assert fused_count() > before
    for a, b in zip(params, reference_params):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-6)


def mixed_setup(seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """Groups with different hyperparameters and dtypes, and tensors the kernel cannot take."""
    g = torch.Generator().manual_seed(seed)

    def param(shape: tuple, dtype: torch.dtype = torch.float32) -> torch.nn.Parameter:
        return torch.nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64).to(dtype))

    transposed = torch.nn.Parameter(torch.randn(4, 6, generator=g).t())  # not contiguous
    complex_param = torch.nn.Parameter(torch.randn(5, generator=g, dtype=torch.complex64))
    groups = [
        dict(params=[param((3, 4)), param((5,)), transposed]),
        dict(params=[param((6,), torch.float64), param((2, 2)), complex_param, param((7,), torch.bfloat16)],
             lr=0.003, weight_decay=0.2, betas=(0.8, 0.95)),
        dict(params=[param((3,), torch.float64)], lr=0.02, amsgrad=True, eps=1e-6),
    ]
    params = [p for group in groups for p in group["params"]]
    return params, groups


def test_groups_dtypes_and_fallbacks_in_one_optimizer() -> None:
    results = {}
    for path in ("eager", "auto"):
        params, groups = mixed_setup()
        opt = optimlab.AdamW(groups, lr=0.01)
        before = dict(engine.path_counts)
        with engine.using(path):
            train(opt, params, STEPS)
        results[path] = params, opt, {k: v - before.get(k, 0) for k, v in engine.path_counts.items()}
    params, opt, counts = results["auto"]
    assert counts["fused"] > 0 and counts["eager"] > 0  # float32/64, bfloat16 fused; complex, transposed eager
    ref_params, ref_opt, _ = results["eager"]
    for a, b in zip(params, ref_params):
        torch.testing.assert_close(a, b, **TOL.get(a.dtype, TOL[torch.float32]))


def test_schedules_change_hyperparameters_without_new_kernels() -> None:
    params = make_params(torch.float32)
    opt = optimlab.AdamW(params, lr=0.01, weight_decay=0.0)
    ref_params = make_params(torch.float32)
    ref = optimlab.AdamW(ref_params, lr=0.01, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    ref_schedule = torch.optim.lr_scheduler.StepLR(ref, step_size=1, gamma=0.5)
    transform = opt.transform_for(opt.param_groups[0])
    for step in range(8):
        if step == 4:  # a zero becoming non-zero changes the math: one more kernel
            opt.param_groups[0]["weight_decay"] = ref.param_groups[0]["weight_decay"] = 0.1
        opt.param_groups[0]["betas"] = ref.param_groups[0]["betas"] = (0.9 - 0.01 * step, 0.999)
        for i, (p, q) in enumerate(zip(params, ref_params)):
            p.grad = q.grad = grad_for(p, step, i)
        opt.step()
        with engine.using("eager"):
            ref.step()
        schedule.step()
        ref_schedule.step()
    assert isinstance(opt.param_groups[0]["lr"], float)  # the group keeps plain numbers
    assert len(engine.cpu._kernels[transform]) == 2
    for a, b in zip(params, ref_params):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_user_changes_to_parameters_and_state() -> None:
    """``p.data = ...``, moved state tensors, replaced state: results stay the eager ones."""
    outcomes = []
    for path in ("eager", "auto"):
        params = make_params(torch.float32)
        opt = optimlab.Adam(params, lr=0.01, weight_decay=0.1)
        with engine.using(path):
            train(opt, params, 3)
            params[0].data = params[0].data.clone()                        # new storage
            params[1].data = params[1].data * 0.5
            state = opt.state[params[2]]
            state["exp_avg"].data = state["exp_avg"].data.clone()          # state moved
            opt.state[params[3]]["exp_avg_sq"] = opt.state[params[3]]["exp_avg_sq"].clone()
            train(opt, params, 3, start=3)
            opt.state[params[4]] = {}                                      # state dropped: starts over
            train(opt, params, 3, start=6)
        outcomes.append((params, opt))
    assert_same(*outcomes[1], *outcomes[0], TOL[torch.float32])


def test_errors_match_the_eager_path() -> None:
    for path in ("eager", "auto"):
        params = make_params(torch.float32, shapes=[(4, 4)])
        opt = optimlab.Adam(params, lr=0.01)
        with engine.using(path):
            train(opt, params, 2)
            params[0].grad = torch.randn(4, 4).to_sparse()
            with pytest.raises(RuntimeError, match="sparse gradient"):
                opt.step()
            params[0].grad = torch.randn(4, 4)
            params[0].data = torch.randn(16)                  # shape changed under the gradient
            with pytest.raises(RuntimeError, match="gradient of parameter"):
                opt.step()


def test_model_to_float64_behaves_as_eager() -> None:
    """``model.to(torch.float64)`` after some steps leaves float32 state: the eager error, on both paths."""
    messages = []
    for path in ("eager", "auto"):
        params = make_params(torch.float32, shapes=[(4, 4), (3,)])
        opt = optimlab.Adam(params, lr=0.01)
        with engine.using(path):
            train(opt, params, 2)
            for p in params:
                p.grad = None
                p.data = p.data.double()
            before = [p.detach().clone() for p in params]
            with pytest.raises(RuntimeError) as error:
                train(opt, params, 1, start=2)
            assert all(torch.equal(p, b) for p, b in zip(params, before))
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_non_contiguous_gradient_falls_back_per_parameter() -> None:
    outcomes = []
    for path in ("eager", "auto"):
        params = make_params(torch.float32, shapes=[(6, 4), (5,)])
        opt = optimlab.RMSprop(params, lr=0.01)
        with engine.using(path):
            for step in range(3):
                params[0].grad = torch.randn(4, 6, generator=torch.Generator().manual_seed(step)).t()
                params[1].grad = torch.ones(5)
                opt.step()
        outcomes.append((params, opt))
    assert_same(*outcomes[1], *outcomes[0], TOL[torch.float32])


def test_autograd_sees_the_in_place_update() -> None:
    """The kernel writes through raw pointers; autograd must still know the parameter changed."""
    p = torch.nn.Parameter(torch.randn(8))
    opt = optimlab.SGD([p], lr=0.1)
    loss = (p * p).sum()
    loss.backward(retain_graph=True)
    before = fused_count()
    opt.step()
    assert fused_count() > before
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


class SortedScale(optimlab.Transform):
    """Not elementwise (a sort): the fused path must decline it and run it eagerly."""

    def update(self, u: torch.Tensor, param: torch.Tensor, state: Any, hp: Any, step: Any) -> torch.Tensor:
        return -0.1 * u / u.abs().flatten().sort().values[-1]


class SortedSGD(optimlab.SGD):
    def build_transform(self, group: Any) -> optimlab.Transform:
        return SortedScale()


def test_untraceable_transform_falls_back_with_one_warning() -> None:
    outcomes = []
    for path in ("eager", "auto"):
        params = make_params(torch.float32, shapes=[(4,), (3, 2)])
        opt = SortedSGD(params, lr=0.1)
        with engine.using(path), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(opt, params, 3)
        outcomes.append((params, [w for w in caught if "eager path" in str(w.message)]))
    assert len(outcomes[1][1]) == 1 and "sort" in str(outcomes[1][1][0].message)
    for a, b in zip(outcomes[0][0], outcomes[1][0]):
        torch.testing.assert_close(a, b)


class Halve(optimlab.Transform):
    """A transform no other test uses, so that its kernel is built fresh here."""

    hyperparams = ("lr",)

    def update(self, u: torch.Tensor, param: torch.Tensor, state: Any, hp: Any, step: Any) -> torch.Tensor:
        return u * (-0.5 * hp["lr"]) + 0.0  # the + 0.0 makes this program unlike any other


class HalveSGD(optimlab.SGD):
    def build_transform(self, group: Any) -> optimlab.Transform:
        return Halve()


def test_no_compiler_means_eager_with_one_warning(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    params = make_params(torch.float32, shapes=[(4,)])
    opt = HalveSGD(params, lr=0.1)
    expected = params[0].detach() - 0.05 * torch.ones(4) * 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            params[0].grad = torch.ones(4)
            opt.step()
    messages = [str(w.message) for w in caught if "fused CPU step is unavailable" in str(w.message)]
    assert len(messages) == 1 and "no-such-compiler" in messages[0]
    torch.testing.assert_close(params[0].detach(), expected)


def test_engine_path_selection() -> None:
    assert engine.get_path() in engine.PATHS
    with pytest.raises(ValueError, match="path must be one of"):
        engine.set_path("fast")
    with engine.using("eager"):
        assert engine.get_path() == "eager"
        params = make_params(torch.float32, shapes=[(3,)])
        before = dict(engine.path_counts)
        train(optimlab.Adam(params), params, 2)
        assert engine.path_counts["fused"] == before.get("fused", 0)


def test_channels_last_parameters_use_the_kernel() -> None:
    """Dense tensors that share a layout (channels_last convolution weights) are stepped in
    memory order: same result as eager, and the fused path runs."""
    outcomes = []
    for path in ("eager", "auto"):
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(4, 3, 2, 5, generator=g).to(memory_format=torch.channels_last)),
                  torch.nn.Parameter(torch.randn(6, generator=g))]
        opt = optimlab.AdamW(params, lr=0.01)
        before = fused_count()
        with engine.using(path):
            for step in range(3):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g).to(memory_format=torch.channels_last) \
                        if p.dim() == 4 else torch.randn(p.shape, generator=g)
                opt.step()
        assert (fused_count() - before == 6) == (path == "auto")
        assert opt.state[params[0]]["exp_avg"].is_contiguous(memory_format=torch.channels_last)
        outcomes.append((params, opt))
    assert_same(*outcomes[1], *outcomes[0], TOL[torch.float32])


def test_the_engine_keeps_no_gradients_or_old_state_alive() -> None:
    """``zero_grad()`` frees gradients and a loaded checkpoint frees the old state, as with eager."""
    import gc
    import weakref

    params = make_params(torch.float32, shapes=[(64, 8), (9,)])
    opt = optimlab.Adam(params, lr=0.01)
    train(opt, params, 3)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    grads = [weakref.ref(p.grad) for p in params]
    old_state = [weakref.ref(opt.state[p]["exp_avg"]) for p in params]
    opt.zero_grad()
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(opt, params, 1, start=3)
    gc.collect()
    assert all(ref() is None for ref in grads)
    assert all(ref() is None for ref in old_state)


class Tagged(torch.Tensor):
    """A tensor subclass (like those of distributed or quantization libraries)."""


def test_tensor_subclasses_take_the_eager_path() -> None:
    outcomes = adam_on_each_path(
        lambda: [torch.nn.Parameter(torch.arange(6.0).as_subclass(Tagged)), torch.nn.Parameter(torch.arange(4.0))])
    assert outcomes[1][1]["fused"] == 3 and outcomes[1][1]["eager"] == 3  # the plain one fused, the subclass not
    for a, b in zip(outcomes[0][0], outcomes[1][0]):
        torch.testing.assert_close(a, b)
