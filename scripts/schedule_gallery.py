#!/usr/bin/env python3
"""Draw every schedule in optimlab.schedules, one labelled panel per kind, into one PNG.

    python scripts/schedule_gallery.py                      # writes docs/gallery/schedules.png
    python scripts/schedule_gallery.py path/to/out.png

The picture in docs/schedules.md is this script's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optimlab import schedules as S

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "docs" / "gallery" / "schedules.png"
LR = 0.1


def synthetic_loss(steps: int) -> list[float]:
    """A validation loss that falls, flattens and stays noisy: something to reduce on plateau."""
    rng = np.random.default_rng(0)
    t = np.arange(steps)
    return list(1.0 + 2.0 * np.exp(-t / 40) + rng.normal(0.0, 0.03, steps))


def panels() -> list[tuple[str, dict[str, S.Schedule], int]]:
    """(title, {label: schedule}, steps) for each panel."""
    return [
        ("constant", {"constant(0.1)": S.constant(LR)}, 300),
        ("step_decay", {"step_size=60, gamma=0.5": S.step_decay(LR, 60, 0.5)}, 300),
        ("multistep", {"milestones [100, 200, 250]": S.multistep(LR, [100, 200, 250], 0.3)}, 300),
        ("exponential", {"gamma=0.99": S.exponential(LR, 0.99), "gamma=0.995": S.exponential(LR, 0.995)}, 300),
        ("cosine (annealing to a floor)", {"floor=0": S.cosine(LR, 250), "floor=0.02": S.cosine(LR, 250, 0.02)},
         300),
        ("warm_restarts (SGDR)", {"period=100": S.warm_restarts(LR, 100), "period=20, mult=2, floor=0.01":
                                  S.warm_restarts(LR, 20, 2, 0.01)}, 300),
        ("warm-ups", {"linear_warmup": S.linear_warmup(LR, 200),
                      "exponential_warmup from 1e-4": S.exponential_warmup(LR, 200, 1e-4)}, 300),
        ("polynomial", {f"power={p}": S.polynomial(LR, 250, p) for p in (0.5, 1.0, 2.0)}, 300),
        ("ramp shapes", {shape: S.ramp(LR, 0.01, 250, shape) for shape in ("linear", "cos", "sqrt", "exp")}, 300),
        ("inverse_sqrt after warm-up", {"warmup 30, then peak/sqrt(1 + t/30)": S.sequence(
            S.linear_warmup(LR, 30), S.inverse_sqrt(LR, 30))}, 300),
        ("one_cycle", {"cos": S.one_cycle(LR, 300), "linear": S.one_cycle(LR, 300, anneal="linear"),
                       "cos, three_phase": S.one_cycle(LR, 300, pct_start=0.25, three_phase=True)}, 300),
        ("cyclic", {"triangular": S.cyclic(0.01, LR, 25, 25), "triangular2": S.cyclic(0.01, LR, 25, 25,
                                                                                         "triangular2"),
                    "exp_range, gamma=0.995": S.cyclic(0.01, LR, 25, 25, "exp_range", 0.995)}, 300),
        ("wsd (warmup-stable-decay)", {f"decay {shape}": S.wsd(LR, 300, 30, 90, 0.005, shape)
                                       for shape in ("linear", "cos", "sqrt")}, 300),
        ("join: warm-up then cosine", {"sequence(linear_warmup(0.1, 50), cosine(0.1, 250, 0.01))": S.sequence(
            S.linear_warmup(LR, 50), S.cosine(LR, 250, 0.01))}, 300),
        ("momentum against lr (one_cycle)", {"lr (x10)": 10 * S.one_cycle(LR, 300),
                                             "momentum": S.one_cycle(0.85, 300, start=0.95, end=0.95)}, 300),
    ]


def draw(path: Path) -> Path:
    items = panels()
    columns = 4
    rows = (len(items) + 1 + columns - 1) // columns
    figure = Figure(figsize=(4.2 * columns, 2.9 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns).flatten()
    for ax, (title, schedules, steps) in zip(axes, items):
        S.plot(schedules, steps, ax=ax, title=title, ylabel="lr" if "momentum" not in title else "value")
    # the one stateful schedule, with the metric that drives it
    ax = axes[len(items)]
    loss = synthetic_loss(300)
    plateau = {"reduce_on_plateau(0.1, factor=0.5, patience=10)": S.reduce_on_plateau(LR, factor=0.5, patience=10)}
    S.plot(plateau, 300, ax=ax, title="reduce_on_plateau (fed a metric)", ylabel="lr", metrics=loss)
    metric_ax = ax.twinx()
    metric_ax.plot(range(300), loss, color="0.6", linewidth=0.8, label="metric")
    metric_ax.set_ylabel("metric", color="0.45")
    for ax in axes[len(items) + 1:]:
        ax.set_visible(False)
    for ax in axes:
        if ax.get_legend() is not None:
            ax.legend(fontsize=7, loc="best")
    axes[len(items)].legend(fontsize=7, loc="upper right")
    figure.suptitle("optimlab.schedules: value against step", fontsize=14)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path


if __name__ == "__main__":
    out = draw(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
