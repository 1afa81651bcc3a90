"""The learning-rate range test: its schedule, its smoothing, its stop and its suggestion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import optimlab
from optimlab.lab import Split
from optimlab.lab.report.lr_find import (
    exponential_lrs,
    plot_range_test,
    range_test,
    smooth,
)


def noisy_line(n: int = 64) -> Split:
    """y = 2x + noise on x in [-1, 1]: MSE curvature 2 E[x^2] = 0.69, so SGD is stable for lr < 2.9."""
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, n).unsqueeze(1)
    return Split(x, 2 * x + 0.1 * torch.randn(n, 1, generator=g))


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


def zero_line() -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def test_schedule_is_exponential_from_min_to_max():
    lrs = exponential_lrs(1e-4, 1.0, 5)
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])


def test_each_step_runs_at_its_scheduled_lr():
    seen = []

    def make(params, lr):
        opt = optimlab.SGD(params, lr=lr)
        opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(o.param_groups[0]["lr"]))
        return opt

    test = range_test(zero_line(), mse, make, noisy_line(), lr_min=1e-5, lr_max=1e-2, steps=30, batch_size=8)
    assert test.stopped == "max lr reached" and test.steps == 30  # lr never large enough to blow up
    assert seen == pytest.approx(list(exponential_lrs(1e-5, 1e-2, 30)), rel=1e-12)
    assert test.lrs == pytest.approx(seen, rel=1e-12)


def test_smoothing_is_a_bias_corrected_moving_average():
    assert smooth([3.0] * 10, beta=0.9) == pytest.approx([3.0] * 10)  # no pull towards 0 at the start
    values = [1.0, 5.0, 2.0]
    beta = 0.5
    expected, average = [], 0.0
    for i, v in enumerate(values):
        average = beta * average + (1 - beta) * v
        expected.append(average / (1 - beta ** (i + 1)))
    assert smooth(values, beta) == pytest.approx(expected)


@pytest.mark.parametrize("batch_size", [None, 8])
def test_stops_after_the_blow_up_and_suggests_a_stable_lr_that_trains(batch_size):
    test = range_test(zero_line(), mse, lambda p, lr: optimlab.SGD(p, lr=lr), noisy_line(), lr_min=1e-4,
                      lr_max=100.0, steps=120, batch_size=batch_size)
    assert test.stopped == "loss > 4x best"
    assert test.steps < 120
    assert test.smoothed[-1] > 4 * test.smoothed[:-1].min()  # the cut is at the first point above 4x best
    assert np.all(test.smoothed[:-1] <= 4 * np.minimum.accumulate(test.smoothed[:-1]) + 1e-12)
    assert test.suggested == pytest.approx(test.lr_min_loss / 10)
    assert test.lr_min_loss == test.lrs[np.argmin(test.smoothed)]
    assert test.lr_steepest <= test.lr_min_loss
    assert 0.05 < test.suggested < 2.9, test  # SGD on this line is stable below 2 / 0.69 = 2.9
    # The suggestion trains: 100 steps of full-batch SGD reach the noise floor (~0.01).
    model = zero_line()
    opt = optimlab.SGD(model.parameters(), lr=test.suggested)
    data = noisy_line()
    for _ in range(100):
        opt.zero_grad()
        loss = mse(model(data.x), data.y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(mse(model(data.x), data.y)) < 0.02


def test_divergence_to_nan_is_a_stop_not_an_error():
    def poisoned(out, y):  # finite for the first 20 batches, then nan
        poisoned.calls += 1
        loss = mse(out, y)
        return loss if poisoned.calls <= 20 else loss * math.nan
    poisoned.calls = 0
    test = range_test(zero_line(), poisoned, lambda p, lr: optimlab.SGD(p, lr=lr), noisy_line(), lr_min=1e-5,
                      lr_max=1e-3, steps=50, batch_size=8)
    assert test.stopped == "diverged" and test.steps == 20
    assert np.isfinite(test.losses).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr_min=0.0), "lr_min must be a finite number > 0"),
    (dict(lr_min=1e-3, lr_max=1e-4), "lr_max must be a finite number > lr_min"),
    (dict(steps=1), "steps must be an int >= 2"),
    (dict(beta=1.0), "beta must be in [0, 1)"),
    (dict(stop_factor=1.0), "stop_factor must be > 1"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        range_test(zero_line(), mse, lambda p, lr: optimlab.SGD(p, lr=lr), noisy_line(), **kwargs)


def test_plot_is_written(tmp_path):
    from PIL import Image

    test = range_test(zero_line(), mse, lambda p, lr: optimlab.SGD(p, lr=lr), noisy_line(), lr_min=1e-4,
                      lr_max=100.0, steps=120, batch_size=8)
    path = plot_range_test(test, tmp_path / "sub" / "lr.png", "SGD on a noisy line", "training loss (MSE)")
    with Image.open(path) as image:
        assert image.size[0] >= 800 and image.size[1] >= 500
        assert len(image.convert("RGB").getcolors(1 << 20)) > 50  # lines, text and markers, not blank
