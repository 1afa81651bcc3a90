"""The tracer and the C code generator, operation by operation, against eager torch.

Each supported ATen operation is run inside a one-line transform, once eagerly and once as a
generated kernel, on gradients that include NaN, infinities, signed zeros, tiny and huge
values. What the tracer must refuse (views, reductions, data-dependent branches, writes to the
gradient) is refused, and what it needs the eager path for (state made during a step) is
reported as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import optimlab
from optimlab import engine
from optimlab.core import is_zero
from optimlab.engine.errors import NeedsEagerStep, Unsupported
from optimlab.engine.hyper import hp_structure
from optimlab.engine.trace import trace

Update = Callable[[torch.Tensor, torch.Tensor, dict, dict, Any], torch.Tensor]


@pytest.fixture(autouse=True)
def default_path() -> Any:
    """These tests are about the default path, whatever OPTIMLAB_ENGINE says for the session."""
    with engine.using("auto"):
        yield


class Lambda(optimlab.Transform):
    """A transform made of one expression, with a state buffer ``buf`` and ``lr`` as hyperparameter."""

    hyperparams = ("lr",)

    def __init__(self, update: Update) -> None:
        self.fn = update

    def init(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"buf": torch.linspace(-1.5, 2.5, param.numel(), dtype=param.dtype).reshape(param.shape)}

    def update(self, u: torch.Tensor, param: torch.Tensor, state: Any, hp: Any, step: Any) -> torch.Tensor:
        return self.fn(u, param, state, hp, step)


class LambdaOptimizer(optimlab.Adagrad):  # counts steps, like Adam; the transform is ours
    def __init__(self, params: Any, update: Update, lr: float = 0.25) -> None:
        self.fn = update
        super().__init__(params, lr=lr)

    def build_transform(self, group: Any) -> optimlab.Transform:
        return Lambda(self.fn)


SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-30, -1e30, 3.0, -0.75, 0.5]

#: name -> (update, exact): exact ones must agree to rounding; the others (libm vs torch's
#: vectorised transcendental functions) to a few units in the last place.
OPS: dict[str, tuple[Update, bool]] = {
    "add": (lambda u, p, s, hp, t: u + p, True),
    "add_alpha": (lambda u, p, s, hp, t: torch.add(u, p, alpha=0.3), True),
    "sub_alpha": (lambda u, p, s, hp, t: torch.sub(u, p, alpha=2.5), True),
    "rsub": (lambda u, p, s, hp, t: 2 - u, True),
    "mul_hp": (lambda u, p, s, hp, t: u * hp["lr"], True),
    "div": (lambda u, p, s, hp, t: u / (p.abs() + 1), True),
    "div_number": (lambda u, p, s, hp, t: u / 3.0, True),
    "neg": (lambda u, p, s, hp, t: -u, True),
    "sqrt": (lambda u, p, s, hp, t: u.abs().sqrt(), True),
    "rsqrt": (lambda u, p, s, hp, t: (u.abs() + 0.5).rsqrt(), True),
    "reciprocal": (lambda u, p, s, hp, t: (u.abs() + 0.5).reciprocal(), True),
    "abs": (lambda u, p, s, hp, t: u.abs(), True),
    "sign": (lambda u, p, s, hp, t: u.sign() + torch.sgn(p), True),
    "exp": (lambda u, p, s, hp, t: (p * 0.1).exp() * u, False),
    "log": (lambda u, p, s, hp, t: (u.abs() + 1).log(), False),
    "pow_2": (lambda u, p, s, hp, t: u ** 2, True),
    "pow_3": (lambda u, p, s, hp, t: u ** 3, True),
    "pow_half": (lambda u, p, s, hp, t: u.abs() ** 0.5, True),
    "pow_minus_half": (lambda u, p, s, hp, t: (u.abs() + 1) ** -0.5, True),
    "pow_minus_1": (lambda u, p, s, hp, t: (u.abs() + 1) ** -1, True),
    "pow_minus_2": (lambda u, p, s, hp, t: (u.abs() + 1) ** -2, True),
    "pow_1_7": (lambda u, p, s, hp, t: u.abs() ** 1.7, False),
    "pow_tensors": (lambda u, p, s, hp, t: (u.abs() + 1) ** p, False),
    "pow_hp": (lambda u, p, s, hp, t: u.abs() ** hp["lr"], False),
    "scalar_math": (lambda u, p, s, hp, t: u * (1 - hp["lr"] ** t) / (1 + (t - 1) * hp["lr"]) ** 0.5, True),
    "lerp_low": (lambda u, p, s, hp, t: u.lerp(p, 0.3), True),
    "lerp_high": (lambda u, p, s, hp, t: u.lerp(p, 0.8), True),
    "lerp_hp": (lambda u, p, s, hp, t: u.lerp(p, 1 - hp["lr"]), True),
    "lerp_tensor": (lambda u, p, s, hp, t: u.lerp(p, p.abs() / (p.abs() + 1)), True),
    "maximum": (lambda u, p, s, hp, t: torch.maximum(u, p), True),
    "minimum": (lambda u, p, s, hp, t: torch.minimum(u, p), True),
    "clamp": (lambda u, p, s, hp, t: u.clamp(-0.5, 0.5), True),
    "clamp_min": (lambda u, p, s, hp, t: u.clamp(min=0.1), True),
    "clamp_max": (lambda u, p, s, hp, t: u.clamp(max=-0.1), True),
    "addcmul": (lambda u, p, s, hp, t: torch.addcmul(u, u, p, value=0.5), True),
    "addcdiv": (lambda u, p, s, hp, t: torch.addcdiv(u, u, p.abs() + 1, value=0.5), True),
    "where": (lambda u, p, s, hp, t: torch.where(u > p, u, p), True),
    "where_number": (lambda u, p, s, hp, t: torch.where(u >= 0, u, 0.5), True),
    "comparisons": (lambda u, p, s, hp, t: torch.where(u < p, u, p) + torch.where(u <= 0.1, u, p)
                    + torch.where(u == p, 1.0, u) + torch.where(u != 0, u, 2.0), True),
    "clone": (lambda u, p, s, hp, t: u.clone() * 2, True),
    "to_double": (lambda u, p, s, hp, t: (u.double() * 1.1).to(u.dtype), True),
    "state_mul_add": (lambda u, p, s, hp, t: s["buf"].mul_(0.9).add_(u) * 1, True),
    "state_copy": (lambda u, p, s, hp, t: s["buf"].copy_(u) * hp["lr"], True),
    "state_fill": (lambda u, p, s, hp, t: u + s["buf"].fill_(2.0), True),
    "state_zero": (lambda u, p, s, hp, t: s["buf"].zero_() + u, True),
    "state_maximum_out": (lambda u, p, s, hp, t: torch.maximum(s["buf"], u.abs(), out=s["buf"]) * -hp["lr"], True),
    "state_returned": (lambda u, p, s, hp, t: s["buf"].lerp_(u, 0.5), True),
    "zeros_like": (lambda u, p, s, hp, t: torch.zeros_like(u) + u, True),
    "ones_like": (lambda u, p, s, hp, t: torch.ones_like(u) * u, True),
    "full_like": (lambda u, p, s, hp, t: torch.full_like(u, 3.0) * u, True),
    "constant_tensor": (lambda u, p, s, hp, t: u * torch.tensor(2.5), True),
    "is_zero_branch": (lambda u, p, s, hp, t: u if is_zero(hp["lr"]) else u * hp["lr"], True),
}
#: float64 is checked on a representative subset (each case compiles a kernel).
DOUBLE = ["add_alpha", "div", "sqrt", "lerp_high", "maximum", "addcdiv", "scalar_math", "state_mul_add", "where", "pow_1_7"]


def run(update: Update, path: str, dtype: torch.dtype, steps: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.nn.Parameter(torch.tensor(SPECIAL + [0.25 * i - 2 for i in range(30)], dtype=dtype))
    opt = LambdaOptimizer([p], update)
    g = torch.Generator().manual_seed(0)
    with engine.using(path):
        for step in range(steps):
            grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype)
            grad[:len(SPECIAL)] = torch.tensor(SPECIAL, dtype=dtype).roll(step)
            p.grad = grad
            opt.step()
    return p.detach(), opt.state[p]["buf"]


#: bfloat16 and float16, rounded after every operation as torch does, on another subset.
HALF = ["add_alpha", "div", "sqrt", "lerp_high", "maximum", "to_double", "where", "scalar_math", "state_mul_add"]
CASES = ([(name, torch.float32) for name in OPS] + [(name, torch.float64) for name in DOUBLE]
         + [(name, torch.bfloat16) for name in HALF] + [(name, torch.float16) for name in HALF])


@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{str(d)[6:]}" for n, d in CASES])
def test_operation_matches_eager(name: str, dtype: torch.dtype) -> None:
    update, exact = OPS[name]
    expected = run(update, "eager", dtype)
    before = engine.path_counts["fused"]
    got = run(update, "auto", dtype)
    assert engine.path_counts["fused"] > before, "the fused path did not run"
    eps = torch.finfo(dtype).eps
    for a, b in zip(got, expected):
        # A last-place difference in one operation: torch's sqrt/exp/log come from vectorised
        # libraries that may round differently, its add/lerp use a fused multiply-add or not
        # depending on the position in the tensor, and the kernel divides by a per-tensor scalar
        # as a product with its reciprocal. After a cancellation such a difference is relative
        # to the operands, hence an absolute tolerance on the scale of the values.
        finite = b[b.isfinite()].abs()
        scale = finite.max().item() if finite.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=(4 if exact else 8) * eps, atol=2 * eps * scale, equal_nan=True)


def trace_of(update: Update, state: dict | None = None, hp: dict | None = None) -> Any:
    state = {"step": torch.tensor(1.0), "buf": torch.zeros(3)} if state is None else state
    return trace(Lambda(update), hp or {"lr": 0.1}, torch.float32, state, counts_steps=True)


@pytest.mark.parametrize("update, reason", [
    (lambda u, p, s, hp, t: u - u.sum(), "sum"),
    (lambda u, p, s, hp, t: u.view(-1) * 2, "view"),
    (lambda u, p, s, hp, t: u * float(hp["lr"]), "value in Python"),
    (lambda u, p, s, hp, t: u if hp["lr"] == 0 else u * 2, "is_zero"),
    (lambda u, p, s, hp, t: u.mul_(2), "writes grad"),
    (lambda u, p, s, hp, t: s.__setitem__("buf", u * 2) or u, "replaces state"),
    (lambda u, p, s, hp, t: u.to(torch.int32).to(u.dtype), "int32"),
], ids=["reduction", "view", "item", "branch", "grad-write", "state-replace", "integer"])
def test_tracer_refuses(update: Update, reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        trace_of(update)


def test_state_made_during_a_step_needs_the_eager_step() -> None:
    def update(u: torch.Tensor, p: torch.Tensor, s: dict, hp: dict, t: Any) -> torch.Tensor:
        if "momentum_buffer" not in s:
            s["momentum_buffer"] = u.clone()
        return s["momentum_buffer"] * 1
    with pytest.raises(NeedsEagerStep):
        trace_of(update)
    program = trace_of(update, state={"step": torch.tensor(1.0), "buf": torch.zeros(3),
                                      "momentum_buffer": torch.zeros(3)})
    assert program.writes == [(("param",), program.writes[0][1])]


def test_hyperparameter_structure() -> None:
    structure, names, values = hp_structure({"lr": torch.tensor(0.5), "betas": (0.9, 0.0), "wd": 0,
                                             "nesterov": True, "eps": 1e-8})
    assert names == ["lr", "betas[0]", "eps"] and values == [0.5, 0.9, 1e-8]
    assert dict(structure)["wd"] == ("zero",) and dict(structure)["nesterov"] == ("static", True)
    assert hp_structure({"lr": 0.1})[0] == hp_structure({"lr": 0.7})[0]  # a new value is not a new program
    with pytest.raises(Unsupported):
        hp_structure({"lr": object()})


def test_kernels_are_cached_on_disk(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPTIMLAB_CACHE_DIR", str(tmp_path))
    program = trace_of(lambda u, p, s, hp, t: u * -hp["lr"] + 0.125)  # a program no other test builds
    roles = engine.trace.Roles(program, torch.float32, True)
    source = engine.codegen_c.generate(program, roles)
    kernel = engine.cpu.build(source)
    assert engine.cpu.build(source) is kernel
    assert list((tmp_path / "kernels").glob("step-*.so")) == [kernel.path]
    engine.cpu._loaded.pop(source)
    monkeypatch.setenv("CC", str(tmp_path / "no-compiler"))  # a warm cache needs no compiler
    assert engine.cpu.build(source).path == kernel.path


class RunningProduct(optimlab.Transform):
    """0-d per-tensor state in a dtype of its own, as NAdam's ``mu_product``: a float32 product
    of numbers computed in float64 from the step count and a hyperparameter."""

    hyperparams = ("lr",)

    def init(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"product": torch.ones((), dtype=torch.float32, device=param.device)}

    def update(self, u: torch.Tensor, param: torch.Tensor, state: Any, hp: Any, step: Any) -> torch.Tensor:
        factor = 1 - 0.5 * 0.97 ** (step * hp["lr"])  # a Python number on the eager path
        product = state["product"].mul_(factor).double()
        return u * (1 - product) * -hp["lr"]


class RunningProductOptimizer(optimlab.Adagrad):
    def build_transform(self, group: Any) -> optimlab.Transform:
        return RunningProduct()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_d_state_is_per_tensor_and_numbers_never_widen_it(dtype: torch.dtype) -> None:
    """A float32 0-d state multiplied in place by a number is multiplied in float32 (the number
    rounded first), as on the eager path where the number is a Python float; a float64 0-d
    tensor would have widened the product. The fused path keeps one value per tensor."""
    def run_on(path: str) -> tuple[list, list]:
        params = [torch.nn.Parameter(torch.linspace(-1, 1, n, dtype=dtype)) for n in (9, 40)]
        opt = RunningProductOptimizer(params, lr=0.3)
        products = []
        with engine.using(path):
            for _ in range(6):
                for p in params:
                    p.grad = torch.ones_like(p)
                opt.step()
                products.append([opt.state[p]["product"].item() for p in params])
        return [p.detach() for p in params], products

    before = engine.path_counts["fused"]
    fast = run_on("auto")
    assert engine.path_counts["fused"] - before == 12
    eager = run_on("eager")
    assert fast[1] == eager[1]
    for a, b in zip(fast[0], eager[0]):
        assert torch.equal(a, b)


def test_per_element_values_are_never_written_into_zero_d_state() -> None:
    def update(u: torch.Tensor, p: torch.Tensor, s: dict, hp: dict, t: Any) -> torch.Tensor:
        s["product"].copy_(u.sum())
        return u
    with pytest.raises(Unsupported):
        trace(Lambda(update), {"lr": 0.1}, torch.float32, {"step": torch.tensor(1.0), "product": torch.ones(())},
              counts_steps=True, per_tensor=frozenset({"product"}))
