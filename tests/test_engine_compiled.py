"""The ``torch.compile`` path: CUDA parameters by default (unless the Triton path is chosen for
them), any device when asked for.

On CUDA machines the default path must run it (or the Triton kernel, where ``auto`` chooses
that) and agree with eager; without CUDA those tests skip. The same code is checked on the CPU by forcing the path, which costs one inductor
compile (tens of seconds cold, a few seconds with inductor's cache warm), hence ``slow``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import optimlab
from optimlab import engine
from tests.helpers import adam_on_each_path

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIGS = [("AdamW", dict(lr=0.01)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
           ("RMSprop", dict(lr=0.01, centered=True)), ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
           ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1))]


def run(name: str, kwargs: dict, path: str, device: str, dtype: torch.dtype = torch.float32,
        steps: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g).to(device, dtype)) for s in [(5, 3), (7,), (1,)]]
    opt = getattr(optimlab, name)(params, **kwargs)
    with engine.using(path):
        for step in range(steps):
            for i, p in enumerate(params):
                p.grad = None if (step + i) % 3 == 2 else torch.randn(p.shape, generator=g).to(device, dtype)
            opt.param_groups[0]["lr"] *= 0.9  # a schedule: must not recompile
            opt.step()
    return params


def assert_paths_agree(name: str, kwargs: dict, path: str, device: str, counter: str = "compiled") -> None:
    expected = run(name, kwargs, "eager", device)
    before = engine.path_counts[counter]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = run(name, kwargs, path, device)
    assert not [w for w in caught if str(w.message).startswith("optimlab:")], "a fast path fell back"
    assert engine.path_counts[counter] > before, f"the {counter} path did not run"
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@needs_cuda
@pytest.mark.parametrize("config", CONFIGS, ids=[name for name, _ in CONFIGS])
def test_cuda_default_path_is_triton_or_compiled_and_agrees_with_eager(config: tuple) -> None:
    assert_paths_agree(*config, path="auto", device="cuda",
                       counter="triton" if engine.triton.chosen("auto") else "compiled")


@needs_cuda
def test_cuda_and_cpu_parameters_in_one_optimizer() -> None:
    (eager, _), (auto, counts) = adam_on_each_path(
        lambda: [torch.nn.Parameter(torch.arange(4.0, device="cuda")), torch.nn.Parameter(torch.arange(4.0))])
    assert counts["triton" if engine.triton.chosen("auto") else "compiled"] > 0
    assert counts["fused"] > 0
    for a, b in zip(eager, auto):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_path_on_cpu_agrees_with_eager() -> None:
    """The CUDA path's logic (hyperparameter tensors, zeros, step counts, state made on the
    first step) exercised on the CPU: AdamW and Nesterov SGD."""
    for name, kwargs in CONFIGS[:2]:
        assert_paths_agree(name, kwargs, path="compiled", device="cpu")


def test_a_failed_compile_is_remembered_and_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transform whose compile fails runs eagerly from then on: the failure is kept under the
    transform's key, so the next step does not try (and fail) to compile it again."""
    attempts = []

    def broken_compile(transform):
        def update(*args, **kwargs):
            attempts.append(1)
            raise RuntimeError("simulated compiler failure")
        return update

    monkeypatch.setattr(engine.compiled, "compiled_update", broken_compile)
    monkeypatch.setattr(engine.compiled, "_broken", {})
    params = [torch.nn.Parameter(torch.randn(5)) for _ in range(2)]
    reference = [p.detach().clone() for p in params]
    opt = optimlab.SGD(params, lr=0.1, momentum=0.9)
    ref_opt = optimlab.SGD([torch.nn.Parameter(r) for r in reference], lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(3):
            for p, q in zip(params, ref_opt.param_groups[0]["params"]):
                p.grad = torch.ones_like(p)
                q.grad = torch.ones_like(q)
            with engine.using("compiled"):
                opt.step()
            with engine.using("eager"):
                ref_opt.step()
    assert len(attempts) == 1, f"compile tried {len(attempts)} times"
    for p, q in zip(params, ref_opt.param_groups[0]["params"]):
        torch.testing.assert_close(p, q)
