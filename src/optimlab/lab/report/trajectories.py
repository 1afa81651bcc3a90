"""Optimizer trajectories on 2-D test functions: the paths several optimizers take from one start.

A 2-D function makes an optimizer's behaviour visible: plain gradient descent zig-zags across
Rosenbrock's curved valley, momentum overshoots and swings back, Adam's per-coordinate scaling
takes near-diagonal steps, a saddle shows who escapes it and how fast, Rastrigin shows who gets
caught in a local minimum.

Each path is trained by the lab's one training loop (:func:`optimlab.lab.training.loop.train`): the
"model" is the point ``p = (x, y)`` (:class:`optimlab.lab.problems.problem.Point2D`, in float64), the
"loss" is ``f(p)`` and the loop's evaluation, run after every step, records where the point is.
The functions, their minima, view boxes and starts are :mod:`optimlab.lab.problems.functions2d`. A path
that diverges (``f`` non-finite) is kept up to its last finite point.

The plot draws the function's contours with log-spaced levels of ``f - min f`` (the interesting
structure of these functions spans several orders of magnitude), the paths with markers, the
start and the known minima.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from optimlab.lab.problems.functions2d import Function2D
from optimlab.lab.problems.problem import Point2D, mean_value
from optimlab.lab.report.style import save_figure
from optimlab.lab.training.data import Split
from optimlab.lab.training.loop import StopReason, train

#: Builds an optimizer for the given parameters (the lr and other settings are the factory's).
OptimizerFactory = Callable[[list[Tensor]], torch.optim.Optimizer]


#: Per function: default steps and, per optimizer of :mod:`optimlab.lab.training.zoo`, a learning rate
#: picked by hand so that the path makes visible progress in those steps without diverging and
#: shows the optimizer's character (momentum's overshoot, Adam's sign-like first steps). They
#: are illustrations, not tuned optima: pass other values to see what a too-large lr does.
DEFAULTS: dict[str, tuple[int, dict[str, float]]] = {
    "rosenbrock": (1000, {"sgd": 1e-3, "momentum": 2e-4, "nesterov": 2e-4, "adagrad": 0.3, "rmsprop": 3e-3,
                          "adam": 0.02, "adamw": 0.02}),
    "beale": (500, {"sgd": 0.01, "momentum": 2e-3, "nesterov": 2e-3, "adagrad": 0.3, "rmsprop": 0.01,
                    "adam": 0.05, "adamw": 0.05}),
    "saddle": (100, {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.5, "rmsprop": 0.01,
                     "adam": 0.05, "adamw": 0.05}),
    "rastrigin": (200, {"sgd": 4e-3, "momentum": 4e-3, "nesterov": 4e-3, "adagrad": 1.0, "rmsprop": 0.1,
                        "adam": 0.3, "adamw": 0.3}),
}
#: The optimizers drawn when none are named (Nesterov's path is hard to tell from momentum's).
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")


# -- paths ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trajectory:
    """One optimizer's path: ``points[i]`` is the position after ``i`` steps (``points[0]`` the
    start) and ``values[i]`` is ``f`` there. A diverged path ends at its last finite point."""

    label: str
    points: np.ndarray  # shape (k + 1, 2)
    values: np.ndarray  # shape (k + 1,)
    stop_reason: StopReason

    @property
    def steps(self) -> int:
        return len(self.points) - 1


def run_trajectory(function: Function2D, label: str, make_optimizer: OptimizerFactory, start: Sequence[float],
                   steps: int) -> Trajectory:
    """Minimise ``function`` from ``start`` for ``steps`` steps with the optimizer ``make_optimizer`` builds."""
    if len(start) != 2 or not all(math.isfinite(float(v)) for v in start):
        raise ValueError(f"trajectory: start must be two finite numbers (x, y), got {tuple(start)!r}")
    # float64: paths that creep along a flat valley floor lose their way in float32 rounding.
    point = Point2D(function, torch.tensor([float(v) for v in start], dtype=torch.float64))

    def where(model: nn.Module) -> dict[str, float]:
        x, y = (float(v) for v in model.w)
        return {"x": x, "y": y, "f": float(function.at(model.w))}

    dummy = Split(torch.zeros(1, 1), torch.zeros(1))  # one "example": every step is the full gradient
    result = train(point, mean_value, make_optimizer([point.w]), dummy, steps=steps, shuffle=False,
                   evaluate=where, eval_every=1, progress=False)
    rows = [(e.metrics["x"], e.metrics["y"], e.metrics["f"]) for e in result.evaluations]
    kept = []
    for row in rows:
        if not all(math.isfinite(v) for v in row):
            break
        kept.append(row)
    array = np.array(kept, dtype=np.float64).reshape(-1, 3)
    return Trajectory(label, array[:, :2], array[:, 2], result.stop_reason)


def run_trajectories(function: Function2D, optimizers: Mapping[str, OptimizerFactory],
                     start: Sequence[float] | None = None, steps: int = 300) -> list[Trajectory]:
    """One :func:`run_trajectory` per optimizer, all from the same start (default: the function's)."""
    if not optimizers:
        raise ValueError("trajectories: give at least one optimizer")
    start = function.start if start is None else tuple(start)
    return [run_trajectory(function, label, make, start, steps) for label, make in optimizers.items()]


# -- plots --------------------------------------------------------------------------------------

def grid(function: Function2D, trajectories: Sequence[Trajectory], n: int = 300):
    """``(X, Y, Z)`` on an n x n grid over the function's box, widened to hold every path's start."""
    xmin, xmax, ymin, ymax = function.view
    for t in trajectories:
        xmin, xmax = min(xmin, t.points[0, 0]), max(xmax, t.points[0, 0])
        ymin, ymax = min(ymin, t.points[0, 1]), max(ymax, t.points[0, 1])
    xs = torch.linspace(xmin, xmax, n, dtype=torch.float64)
    ys = torch.linspace(ymin, ymax, n, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        Z = function(X, Y)
    return X.numpy(), Y.numpy(), Z.numpy()


def contour_axes(function: Function2D, trajectories: Sequence[Trajectory], figsize=(8.0, 8.2)):
    """A figure with the function's contours, its minima and the common start.

    Functions with a minimum get log-spaced levels of ``f - f_min``: their interesting structure
    (a flat valley floor inside steep walls) spans several orders of magnitude. Functions
    unbounded below (the saddle) get evenly spaced levels of ``f``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter, LogLocator

    X, Y, Z = grid(function, trajectories)
    fig, ax = plt.subplots(figsize=figsize, dpi=110)
    if function.minimum is not None:
        f_min = min(function.minimum, float(Z.min()))
        shifted = Z - f_min
        positive = shifted[shifted > 0]
        floor = max(float(np.percentile(positive, 0.1)), 1e-7 * float(positive.max()))
        levels = np.geomspace(floor, float(shifted.max()), 31)
        shown = np.maximum(shifted, floor)
        filled = ax.contourf(X, Y, shown, levels=levels, norm=LogNorm(), cmap="Greys_r", alpha=0.6)
        ax.contour(X, Y, shown, levels=levels[::3], norm=LogNorm(), colors="0.35", linewidths=0.5)
        decades = math.log10(levels[-1] / levels[0])
        ticks = LogLocator(subs=(1.0,) if decades > 3 else (1.0, 2.0, 5.0))  # a few labels at any range
        bar = fig.colorbar(filled, ax=ax, pad=0.02, shrink=0.85, ticks=ticks,
                           format=FuncFormatter(lambda v, _: f"{v:g}"))
        bar.set_label(f"f(x, y) - f_min   (f_min = {f_min:.3g}; log scale)")
    else:
        levels = np.linspace(float(Z.min()), float(Z.max()), 31)
        filled = ax.contourf(X, Y, Z, levels=levels, cmap="Greys_r", alpha=0.6)
        ax.contour(X, Y, Z, levels=levels[::3], colors="0.35", linewidths=0.5)
        bar = fig.colorbar(filled, ax=ax, pad=0.02, shrink=0.85)
        bar.set_label("f(x, y)")
    for i, (mx, my) in enumerate(function.minima):
        ax.plot(mx, my, marker="*", markersize=18, color="gold", markeredgecolor="black", linestyle="none",
                zorder=7, label="global minimum" if i == 0 else None)
    if trajectories:
        sx, sy = trajectories[0].points[0]
        ax.plot(sx, sy, marker="o", markersize=10, color="white", markeredgecolor="black", linestyle="none",
                zorder=7, label=f"start ({sx:g}, {sy:g})")
    ax.set_xlim(X.min(), X.max())
    ax.set_ylim(Y.min(), Y.max())
    ax.set_aspect("auto")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return fig, ax


def path_colors(trajectories: Sequence[Trajectory]) -> list[str]:
    """The report's colour of each optimizer (a path's label starts with the optimizer's name);
    when one optimizer appears twice (two learning rates), distinct colours instead."""
    from optimlab.lab.report.style import color_map

    names = [t.label.split()[0] if t.label else "" for t in trajectories]
    if len(set(names)) < len(names):
        palette = plt_colors()
        return [palette[i % len(palette)] for i in range(len(names))]
    mapping = color_map(names)
    return [mapping[n] for n in names]


def plt_colors() -> list[str]:
    import matplotlib.pyplot as plt

    return list(plt.get_cmap("tab10").colors)


def path_label(t: Trajectory) -> str:
    end = "diverged" if t.stop_reason is StopReason.DIVERGED else f"f = {t.values[-1]:.3g}"
    return f"{t.label}: {end} after {t.steps} steps"


def plot_trajectories(function: Function2D, trajectories: Sequence[Trajectory], path: str | Path,
                      title: str | None = None) -> Path:
    """Write the contour plot with every path to ``path`` (PNG) and return it."""
    fig, ax = contour_axes(function, trajectories)
    colors = path_colors(trajectories)
    for t, color in zip(trajectories, colors):
        every = max(1, max(u.steps for u in trajectories) // 25)  # same spacing for all: shows the speed
        ax.plot(t.points[:, 0], t.points[:, 1], color=color, linewidth=1.6, marker="o", markersize=3.2,
                markevery=every, label=path_label(t), zorder=4)
        ax.plot(*t.points[-1], marker="X", markersize=9, color=color, markeredgecolor="black", zorder=6)
    ax.set_title(title or default_title(function, trajectories), fontsize=11)
    # Below the axes: inside, the legend would hide parts of the paths.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, fontsize=8.5, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def formula(function: Function2D) -> str:
    """The formula from the function's docstring (its first ``double-quoted`` span), else its description."""
    found = re.search(r"``(.+?)``", function.fn.__doc__ or "")
    return found.group(1) if found else function.description


def default_title(function: Function2D, trajectories: Sequence[Trajectory]) -> str:
    steps = max((t.steps for t in trajectories), default=0)
    return (f"{function.name}: f(x, y) = {formula(function)}\n{len(trajectories)} optimizers from one start, "
            f"up to {steps} steps (dots: every {max(1, steps // 25)} steps; X: end)")


def animate_trajectories(function: Function2D, trajectories: Sequence[Trajectory], path: str | Path,
                         frames: int = 60, fps: int = 12) -> Path:
    """Write an animated GIF of the paths growing step by step (``frames`` frames) and return it.

    The contours, axes and legend are drawn once; each frame restores that background and draws
    only the paths (matplotlib's blitting), and Pillow writes the frames. Redrawing the whole
    figure per frame, as ``FuncAnimation`` with ``PillowWriter`` does, is ~20x slower.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"animate_trajectories: frames must be an int >= 2, got {frames!r}")
    if not trajectories:
        raise ValueError("animate_trajectories: give at least one trajectory")
    fig, ax = contour_axes(function, trajectories, figsize=(7.0, 7.2))
    colors = path_colors(trajectories)
    lines = [ax.plot([], [], color=color, linewidth=1.8, label=t.label, zorder=4, animated=True)[0]
             for t, color in zip(trajectories, colors)]
    heads = [ax.plot([], [], marker="o", markersize=7, color=color, markeredgecolor="black", zorder=6,
                     animated=True)[0] for color in colors]
    counter = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", fontsize=10, animated=True,
                      bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
    longest = max(t.steps for t in trajectories)
    ax.set_title(f"{function.name}: {len(trajectories)} optimizers from one start", fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, fontsize=8.5, frameon=False)
    fig.tight_layout()
    canvas = fig.canvas
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    images = []
    for frame in range(frames):
        step = round(longest * frame / (frames - 1))
        canvas.restore_region(background)
        for t, line, head in zip(trajectories, lines, heads):
            shown = t.points[:min(step, t.steps) + 1]
            line.set_data(shown[:, 0], shown[:, 1])
            head.set_data([shown[-1, 0]], [shown[-1, 1]])
            ax.draw_artist(line)
            ax.draw_artist(head)
        counter.set_text(f"step {step} of {longest}")
        ax.draw_artist(counter)
        rgba = np.asarray(canvas.buffer_rgba())
        images.append(Image.fromarray(rgba[..., :3].copy()).quantize(colors=128))
    plt.close(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    last = 1000 // fps
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=[last] * (frames - 1) + [max(last, 1500)])  # hold the last frame 1.5 s
    return path
