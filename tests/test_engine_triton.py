"""The Triton path (optimlab.engine.triton): the traced update as one Triton kernel per group.

On a CUDA machine these tests run the kernels on the GPU; elsewhere, where Triton is installed,
they run the very same kernels through Triton's CPU interpreter (``TRITON_INTERPRET=1``) on CPU
tensors, with the path forced. Without Triton they skip.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from typing import Any

import pytest
import torch

import optimlab
from optimlab import engine
from optimlab.schedules import cosine

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton"),
              # the interpreter computes masked-out lanes too, and numpy warns about what they hold
              pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(5, 3), (7,), (1,), (3000,), (40,)]
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
]
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-6),
       torch.bfloat16: dict(rtol=1e-2, atol=1e-2), torch.float16: dict(rtol=1e-3, atol=1e-3)}


@pytest.fixture(autouse=True)
def interpreter_without_cuda(monkeypatch: Any) -> None:
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def train(name: str, kwargs: dict, path: str, dtype: torch.dtype, steps: int = 5, script: Any = None,
          fallbacks: bool = False) -> tuple:
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g).to(DEVICE, dtype)) for s in SHAPES]
    opt = getattr(optimlab, name)([{"params": params[:3]}, {"params": params[3:], "lr": kwargs["lr"] / 2}], **kwargs)
    before = engine.path_counts["triton"]
    with engine.using(path), warnings.catch_warnings():
        if not fallbacks:
            warnings.filterwarnings("error", message="optimlab:")  # a fallback warns: not expected here
        for step in range(steps):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g).to(DEVICE, dtype)
            if script is not None:
                script(opt, params, step)
            opt.step()
    return params, opt, engine.path_counts["triton"] - before


def assert_same(a: list, b: list, dtype: torch.dtype) -> None:
    for x, y in zip(a, b):  # float16 Adam makes NaN (eps below its range) where eager does
        torch.testing.assert_close(x, y, equal_nan=True, **TOL[dtype])


def forced() -> str:
    return "triton"


# float32 in the quick tier (every configuration), the other dtypes in the slow one.
@pytest.mark.parametrize("dtype", [torch.float32, *(pytest.param(d, marks=pytest.mark.slow)
                                                 for d in (torch.float64, torch.bfloat16, torch.float16))])
@pytest.mark.parametrize("config", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_triton_path_agrees_with_eager(config: tuple, dtype: torch.dtype) -> None:
    name, kwargs = config
    expected, eager_opt, _ = train(name, kwargs, "eager", dtype)
    got, opt, stepped = train(name, kwargs, forced(), dtype)
    # every parameter of every step, but SGD's first step with momentum (its buffer is made there)
    first_eager = 1 if kwargs.get("momentum") else 0
    assert stepped == len(SHAPES) * (5 - first_eager)
    assert_same(got, expected, dtype)
    for a, b in zip(got, expected):
        for key, value in opt.state[a].items():
            torch.testing.assert_close(value, eager_opt.state[b][key], equal_nan=True, **TOL[dtype])


def test_bfloat16_is_rounded_as_eager_rounds() -> None:
    """bfloat16 math in float, rounded after every operation: bit for bit the eager result."""
    expected, _, _ = train("AdamW", dict(lr=0.01), "eager", torch.bfloat16)
    got, _, _ = train("AdamW", dict(lr=0.01), forced(), torch.bfloat16)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def test_schedules_and_changed_values_never_build_a_new_kernel() -> None:
    def script(opt: Any, params: list, step: int) -> None:
        opt.param_groups[0]["lr"] = 0.01 * (step + 1)
        opt.param_groups[1]["betas"] = (0.9 - 0.1 * step, 0.99)
        opt.param_groups[1]["weight_decay"] = 0.0 if step < 2 else 0.5  # a zero changes the structure once

    expected, _, _ = train("AdamW", dict(lr=0.01), "eager", torch.float64, steps=6, script=script)
    train("AdamW", dict(lr=0.01), forced(), torch.float64, steps=1)
    kernels = sum(len(found) for found in engine.triton._kernels.values())
    got, opt, _ = train("AdamW", dict(lr=0.01), forced(), torch.float64, steps=6, script=script)
    assert_same(got, expected, torch.float64)
    built = sum(len(found) for found in engine.triton._kernels.values()) - kernels
    assert built <= 2  # this optimizer's transform: with and without weight decay


def test_schedule_objects_in_place_of_numbers() -> None:
    results = []
    for path in ("eager", forced()):
        g = torch.Generator().manual_seed(1)
        params = [torch.nn.Parameter(torch.randn(50, generator=g, dtype=torch.float64).to(DEVICE))]
        opt = optimlab.Adam(params, lr=cosine(0.1, 10), betas=(cosine(0.9, 10, 0.5), 0.999))
        with engine.using(path):
            for _ in range(6):
                params[0].grad = torch.randn(50, generator=g, dtype=torch.float64).to(DEVICE)
                opt.step()
        results.append(params)
    assert_same(results[1], results[0], torch.float64)


def test_parameters_at_different_step_counts_in_one_kernel() -> None:
    """A parameter without a gradient skips a step, so a group holds several step counts; the
    host computes the scalar table once per count."""
    def script(opt: Any, params: list, step: int) -> None:
        if step in (1, 2):
            params[3].grad = None
        if step == 3:
            params[0].grad = None

    expected, eager_opt, _ = train("Adam", dict(lr=0.01), "eager", torch.float64, steps=6, script=script)
    got, opt, _ = train("Adam", dict(lr=0.01), forced(), torch.float64, steps=6, script=script)
    assert_same(got, expected, torch.float64)
    assert [opt.state[p]["step"].item() for p in got] == [eager_opt.state[p]["step"].item() for p in expected]


def test_autograd_sees_the_in_place_update() -> None:
    p = torch.nn.Parameter(torch.randn(10, device=DEVICE))
    opt = optimlab.Adam([p], lr=0.1)
    with engine.using(forced()):
        p.grad = torch.ones_like(p)
        opt.step()
        loss = (p * p).sum()  # saves p for backward
        p.grad = torch.ones_like(p)
        opt.step()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_generated_source_reads_like_the_program() -> None:
    p = torch.nn.Parameter(torch.randn(10, device=DEVICE))
    opt = optimlab.AdamW([p], lr=0.1)
    with engine.using(forced()):
        for _ in range(2):
            p.grad = torch.ones_like(p)
            opt.step()
    (kernels,) = [found for transform, found in engine.triton._kernels.items() if transform is opt.transform_for(
        opt.param_groups[0])]
    (kernel,) = kernels.values()
    assert "def optimlab_step(ptrs, scalars," in kernel.source
    assert "# write ('param',)" in kernel.source and "tl.store(R0 + offs" in kernel.source
    assert kernel.roles.names[:2] == ["param", "grad"]


# -- the steady step: a group confirmed in bulk -------------------------------------------------
def test_steady_steps_skip_the_full_checks(monkeypatch: Any) -> None:
    from optimlab import engine

    def no_full_checks(opt: Any, params: list, step: int) -> None:
        if step == 3:  # from here on, every step must be a steady one
            monkeypatch.setattr(engine.triton, "split", lambda *a, **k: pytest.fail("full plan on a steady step"))

    got, opt, stepped = train("AdamW", dict(lr=0.01), forced(), torch.float64, steps=7, script=no_full_checks)
    expected, _, _ = train("AdamW", dict(lr=0.01), "eager", torch.float64, steps=7)
    assert_same(got, expected, torch.float64)
    assert stepped == len(SHAPES) * 7
    group = opt.param_groups[0]
    work = engine.collect(opt.transform_for(group), group, opt.state, opt.counts_steps, opt.owner, str)
    assert engine.fused.group_cache(work).triton is not None


def test_changes_between_steady_steps() -> None:
    saved: dict = {}

    def script(opt: Any, params: list, step: int) -> None:
        if step == 2:
            saved["sd"] = copy.deepcopy(opt.state_dict())
        if step == 3:
            params[0].data = params[0].data.clone()                       # a parameter moved
        if step == 4:
            params[1].grad = None                                          # a parameter skipped
            opt.param_groups[1]["weight_decay"] = 0.0                      # another kernel
        if step == 5:
            opt.state[params[3]]["exp_avg"] = opt.state[params[3]]["exp_avg"].clone()  # state replaced
        if step == 6:
            params[0].grad = params[0].grad.t().contiguous().t()              # a non-contiguous gradient
            opt.param_groups[0]["lr"] = 0.02
        if step == 7:
            opt.load_state_dict(saved["sd"])                               # a checkpoint mid-run
        if step == 8:
            params[2].data = params[2].data.to(torch.float32).to(torch.float64)

    expected, eager_opt, _ = train("AdamW", dict(lr=0.01, weight_decay=0.1), "eager", torch.float64, steps=10,
                                   script=script)
    got, opt, _ = train("AdamW", dict(lr=0.01, weight_decay=0.1), forced(), torch.float64, steps=10, script=script)
    assert_same(got, expected, torch.float64)
    for a, b in zip(got, expected):
        assert opt.state[a]["step"].item() == eager_opt.state[b]["step"].item()


class BrokenKernel:
    """Stands in for a Triton kernel whose launch fails (``kernel[grid](...)`` raises)."""

    def __getitem__(self, grid: Any) -> Any:
        def launch(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("no device")
        return launch


def test_a_failed_launch_falls_back_once_and_counts_each_step_once(monkeypatch: Any) -> None:
    def break_the_kernel(opt: Any, params: list, step: int) -> None:
        if step == 3:
            for found in engine.triton._kernels.get(opt.transform_for(opt.param_groups[0]), {}).values():
                if isinstance(found, engine.triton.Kernel):
                    monkeypatch.setattr(found, "function", BrokenKernel())

    expected, eager_opt, _ = train("Adam", dict(lr=0.01), "eager", torch.float64, steps=6)
    with pytest.warns(RuntimeWarning, match="the Triton step of .* failed|has no Triton kernel"):
        params, opt, _ = train("Adam", dict(lr=0.01), forced(), torch.float64, steps=6, script=break_the_kernel,
                               fallbacks=True)
    assert_same(params, expected, torch.float64)
    for a, b in zip(params, expected):
        assert opt.state[a]["step"].item() == eager_opt.state[b]["step"].item() == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_chooses_the_triton_path_on_cuda_when_told_to(monkeypatch: Any) -> None:
    monkeypatch.setattr(engine.triton, "AUTO_ON_CUDA", True)
    expected, _, _ = train("AdamW", dict(lr=0.01), "eager", torch.float32)
    got, _, stepped = train("AdamW", dict(lr=0.01), "auto", torch.float32)
    assert stepped == len(SHAPES) * 5
    assert_same(got, expected, torch.float32)


def test_auto_leaves_cpu_parameters_to_the_c_kernel(monkeypatch: Any) -> None:
    monkeypatch.setattr(engine.triton, "AUTO_ON_CUDA", True)
    if DEVICE == "cuda":
        pytest.skip("checked on CPU parameters")
    before = dict(engine.path_counts)
    train("AdamW", dict(lr=0.01), "auto", torch.float32)
    assert engine.path_counts["triton"] == before.get("triton", 0)
    assert engine.path_counts["fused"] > before.get("fused", 0)


def test_empty_and_one_element_parameters() -> None:
    results = []
    for path in ("eager", forced()):
        params = [torch.nn.Parameter(torch.zeros(0, device=DEVICE)), torch.nn.Parameter(torch.ones(1, device=DEVICE)),
                  torch.nn.Parameter(torch.arange(5.0, device=DEVICE))]
        opt = optimlab.Adam(params, lr=0.1)
        with engine.using(path):
            for _ in range(3):
                for p in params:
                    p.grad = torch.ones_like(p)
                opt.step()
        results.append(params)
    assert_same(results[1], results[0], torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, kwargs", [("Muon", dict(lr=0.02, weight_decay=0.1)),
                                          ("Muon", dict(lr=0.02, nesterov=False)),
                                          ("Adafactor", dict(lr=0.01, maximize=True, weight_decay=0.1))])
def test_chains_of_mixed_kinds_run_their_elementwise_parts_on_triton(name: str, kwargs: dict,
                                                                    dtype: torch.dtype) -> None:
    """Muon's momentum and weight decay, Adafactor's sign and weight decay: Triton kernels
    between the tensor math (:mod:`optimlab.engine.segments`), which reads each kernel's update;
    the step counts advance once per step, as on the eager path."""
    def run_on(path: str) -> tuple[list, Any, int]:
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=g).to(DEVICE, dtype)) for s in [(6, 4), (3, 2, 5)]]
        opt = getattr(optimlab, name)(params, **kwargs)
        before = engine.path_counts["triton"]
        with engine.using(path), warnings.catch_warnings():
            warnings.filterwarnings("error", message="optimlab:")
            for _ in range(4):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=g).to(DEVICE, dtype)
                opt.step()
        return params, opt, engine.path_counts["triton"] - before

    expected, eager_opt, _ = run_on("eager")
    got, opt, launched = run_on(forced())
    assert launched == 4 * 2 * 2  # two elementwise parts, two parameters, four steps
    assert_same(got, expected, dtype)
    for p, q in zip(got, expected):
        for key, value in eager_opt.state[q].items():
            torch.testing.assert_close(opt.state[p][key], value, **TOL[dtype])
