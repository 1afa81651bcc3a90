"""Optimizer paths on 2-D functions: trained by the loop, plotted, animated."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import optimlab
from optimlab.lab.problems.functions2d import get_function
from optimlab.lab.report.trajectories import (
    animate_trajectories,
    plot_trajectories,
    run_trajectories,
    run_trajectory,
)
from optimlab.lab.training.loop import StopReason


def sgd(lr):
    return lambda params: optimlab.SGD(params, lr=lr)


def test_first_steps_are_gradient_steps():
    f = get_function("rosenbrock")
    t = run_trajectory(f, "sgd", sgd(1e-3), (-1.2, 1.0), steps=3)
    assert t.points.shape == (4, 2) and t.values.shape == (4,)
    assert tuple(t.points[0]) == (-1.2, 1.0)
    x, y = t.points[0]
    gradient = np.array([-2 * (1 - x) - 400 * x * (y - x ** 2), 200 * (y - x ** 2)])  # analytic
    assert t.points[1] == pytest.approx(t.points[0] - 1e-3 * gradient, rel=1e-12)
    assert t.values == pytest.approx([float(f(torch.tensor(px), torch.tensor(py))) for px, py in t.points])
    assert t.stop_reason is StopReason.MAX_STEPS and t.steps == 3


def test_every_optimizer_starts_at_the_same_point_and_descends():
    f = get_function("beale")
    paths = run_trajectories(f, {"sgd": sgd(0.01), "adam": lambda p: optimlab.Adam(p, lr=0.05)}, steps=200)
    for t in paths:
        assert tuple(t.points[0]) == f.start
        assert t.values[-1] < 0.05 * t.values[0]  # both head into the valley of the minimum (3, 0.5)


def test_saddle_is_escaped_along_the_descent_direction():
    t = run_trajectories(get_function("saddle"), {"sgd": sgd(0.1)}, steps=60)[0]
    assert abs(t.points[-1, 0]) < 1e-3  # x decays to the saddle's coordinate
    assert abs(t.points[-1, 1]) > 1.0  # y grows from 1e-3 by (1.2)^60: escaped
    assert t.values[-1] < 0


def test_a_diverging_path_keeps_its_finite_part():
    t = run_trajectories(get_function("rosenbrock"), {"sgd": sgd(0.1)}, steps=100)[0]
    assert t.stop_reason is StopReason.DIVERGED
    assert 1 <= t.steps < 100 and np.isfinite(t.points).all() and np.isfinite(t.values).all()


def test_bad_start_is_named():
    with pytest.raises(ValueError, match="start must be two finite numbers"):
        run_trajectory(get_function("beale"), "sgd", sgd(0.01), (1.0, math.nan), steps=3)


def test_plot_and_gif(tmp_path):
    from PIL import Image

    f = get_function("rosenbrock")
    paths = run_trajectories(f, {"sgd": sgd(1e-3), "momentum": lambda p: optimlab.SGD(p, lr=2e-4, momentum=0.9)},
                             steps=100)
    png = plot_trajectories(f, paths, tmp_path / "t.png")
    with Image.open(png) as image:
        assert image.size[0] >= 700 and image.size[1] >= 700
        assert len(image.convert("RGB").getcolors(1 << 20)) > 100
    gif = animate_trajectories(f, paths, tmp_path / "t.gif", frames=8)
    with Image.open(gif) as image:
        assert image.n_frames == 8
        first = np.asarray(image.convert("RGB")).copy()
        image.seek(7)
        last = np.asarray(image.convert("RGB"))
    assert (first != last).any()  # the paths grow
    with pytest.raises(ValueError, match="frames must be an int >= 2"):
        animate_trajectories(f, paths, tmp_path / "t.gif", frames=1)
