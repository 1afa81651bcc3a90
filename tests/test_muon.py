"""Muon beyond the registry's parity test (and torch's error cases, tests/test_optim_db.py): weights
of more than two dimensions (which torch.optim.Muon refuses), and where optimlab differs from torch on purpose."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

import optimlab
from tests.helpers import record, rel_error, through_bytes

STEPS = 30


@pytest.mark.parametrize("shape", [(), (3,)])
def test_vectors_and_scalars_are_refused_by_name(shape: tuple[int, ...]) -> None:
    weight, bias = torch.zeros(3, 4, requires_grad=True), torch.zeros(shape, requires_grad=True)
    with pytest.raises(ValueError, match=r"parameter 'bias' has shape .*optimlab\.AdamW"):
        optimlab.Muon([("weight", weight), ("bias", bias)])
    optimizer = optimlab.Muon([weight])
    with pytest.raises(ValueError, match="parameter #0 of group 1"):
        optimizer.add_param_group({"params": [bias]})
    assert len(optimizer.param_groups) == 1  # the failed group was not added


def matrix(t: Tensor) -> Tensor:
    """The ``(shape[0], -1)`` matrix optimlab orthogonalizes a weight as."""
    return t.reshape(t.shape[0], -1)


#: A wide convolution kernel (8 x 27), one in channels-last layout, tall 3-D and 4-D weights
#: (32 x 6, 64 x 8: the transposed Newton-Schulz), and a plain matrix beside them.
SHAPES = [((8, 3, 3, 3), False), ((8, 3, 3, 3), True), ((32, 2, 3), False), ((64, 2, 2, 2), False), ((5, 7), False)]


@pytest.mark.parametrize("config", [dict(lr=0.02), dict(lr=0.02, nesterov=False, momentum=0.9, weight_decay=0.05,
                                                         adjust_lr_fn="match_rms_adamw")], ids=["default", "options"])
@pytest.mark.parametrize("dtype", [pytest.param(torch.float64, marks=pytest.mark.slow), torch.float32])  # float64: slow tier
def test_nd_weights_step_as_torch_steps_their_matrices(config: dict[str, Any], dtype: torch.dtype) -> None:
    """optimlab.Muon on N-D weights == torch.optim.Muon on 2-D copies of them (same values,
    gradients reshaped the same way): the orthogonalization and the lr adjustment both use the
    ``(shape[0], -1)`` matrix. optimlab saves and reloads its state half-way."""
    generator = torch.Generator().manual_seed(7)
    start = [torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype) for shape, _ in SHAPES]
    mine = [p.clone(memory_format=torch.channels_last if last else torch.contiguous_format).requires_grad_()
            for p, (_, last) in zip(start, SHAPES)]
    theirs = [matrix(p).clone().requires_grad_() for p in start]
    my_optimizer, their_optimizer = optimlab.Muon(mine, **config), torch.optim.Muon(theirs, **config)
    for step in range(1, STEPS + 1):
        for p, q in zip(mine, theirs):
            g = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(dtype)
            p.grad, q.grad = torch.empty_like(p).copy_(g), matrix(g)  # in the weight's layout, as autograd's
        my_optimizer.step()
        their_optimizer.step()
        if step == STEPS // 2:
            saved = through_bytes(my_optimizer.state_dict())
            my_optimizer = optimlab.Muon(mine, **config)
            my_optimizer.load_state_dict(saved)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for p, q in zip(mine, theirs):
        error = record(f"Muon N-D {dtype} params", rel_error(matrix(p.detach()), q.detach()))
        assert error <= tol
        buffers = matrix(my_optimizer.state[p]["momentum_buffer"]), their_optimizer.state[q]["momentum_buffer"]
        assert record(f"Muon N-D {dtype} state", rel_error(*buffers)) <= tol


def test_float32_tensor_lr_matches_torch_within_its_rounding() -> None:
    """optim_db's ``lr=torch.tensor(0.001)``, on float64 weights: torch keeps lr a float32 tensor,
    so ``1 - lr * weight_decay`` and ``lr * ratio`` are rounded to float32 (2^-24 relative) every
    step; optimlab reads the lr once and computes them in double. Over 30 steps the difference
    stays below 30 * 2^-24 ~ 2e-6 (measured: 5e-7); a float64 tensor lr matches to 1e-15 (registry)."""
    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in ((4, 5), (6, 3))]
    mine, theirs = [p.clone().requires_grad_() for p in start], [p.clone().requires_grad_() for p in start]
    my_optimizer = optimlab.Muon(mine, lr=torch.tensor(0.001))
    their_optimizer = torch.optim.Muon(theirs, lr=torch.tensor(0.001))
    for _ in range(STEPS):
        for p, q in zip(mine, theirs):
            p.grad = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            q.grad = p.grad.clone()
        my_optimizer.step()
        their_optimizer.step()
    for p, q in zip(mine, theirs):
        assert record("Muon float32 tensor lr params", rel_error(p.detach(), q.detach())) <= STEPS * 2.0**-24


def test_bfloat16_weights_keep_their_momentum() -> None:
    """With bfloat16 weights and ``nesterov=False``, torch.optim.Muon normalizes its momentum
    buffer in place (``grad.bfloat16()`` is the buffer itself, then ``div_``); optimlab never
    writes into the direction, so its buffer is the moving average of the gradients."""
    weight = torch.randn(4, 6, dtype=torch.bfloat16, requires_grad=True)
    optimizer = optimlab.Muon([weight], nesterov=False, momentum=0.9)
    grads = [torch.randn(4, 6, dtype=torch.bfloat16) for _ in range(2)]
    expected = torch.zeros(4, 6, dtype=torch.bfloat16)
    for g in grads:
        weight.grad = g
        optimizer.step()
        expected.lerp_(g, 0.1)
    assert torch.equal(optimizer.state[weight]["momentum_buffer"], expected)


def newton_schulz_float64(m: Tensor, steps: int = 5) -> Tensor:
    """Jordan et al.'s quintic iteration, written out in float64 (the paper's algorithm box)."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    x = m.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm().clamp(min=1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


@pytest.mark.parametrize("ns_dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12), (None, 3e-2)])
def test_ns_dtype_chooses_the_precision_of_the_newton_schulz_products(ns_dtype: torch.dtype | None,
                                                                        tol: float) -> None:
    generator = torch.Generator().manual_seed(3)
    shapes = ((6, 10), (12, 5), (4, 3, 3, 3))
    params = [torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True) for shape in shapes]
    start = [p.detach().clone() for p in params]
    grads = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes]
    optimizer = optimlab.Muon(params, lr=0.1, weight_decay=0.0, momentum=0.0, nesterov=False, ns_dtype=ns_dtype)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    for p, p0, g in zip(params, start, grads):
        rows, cols = p.shape[0], p[0].numel()
        expected = p0 - 0.1 * max(1, rows / cols) ** 0.5 * newton_schulz_float64(g.reshape(rows, -1)).reshape(p.shape)
        assert rel_error(p.detach(), expected) < tol  # bfloat16 (None): only to its 8 bits
    assert optimizer.param_groups[0]["ns_dtype"] is ns_dtype
    assert optimlab.Muon(params).param_groups[0]["ns_dtype"] is None  # torch's bfloat16 by default
    with pytest.raises(ValueError, match="ns_dtype must be one of None, torch.bfloat16"):
        optimlab.Muon(params, ns_dtype=torch.int32)
