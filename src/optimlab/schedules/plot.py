"""Pictures of schedules with matplotlib (the optional extra ``optimlab[plot]``).

Figures are drawn on matplotlib's Agg canvas without pyplot, so plotting works on machines with
no display and never changes the caller's pyplot state or backend.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from optimlab.schedules.base import Schedule, walk


def trace(schedule: Schedule, steps: int, metrics: Sequence[float] | None = None) -> list[float]:
    """``[schedule(0), ..., schedule(steps - 1)]``.

    A schedule fed a metric (``reduce_on_plateau``, alone or inside a product) is run on a
    copy, fed ``metrics[t]`` after its value at step ``t`` is read; the schedule itself is not
    changed.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"trace: expected a Schedule, got {type(schedule).__name__} {schedule!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"trace: steps must be an integer >= 1, got {steps!r}")
    parts = [p for p in walk(schedule) if p.stateful]
    if not parts:
        return [schedule.at(t) for t in range(steps)]
    if metrics is None or len(metrics) < steps:
        raise ValueError(f"trace: {schedule!r} is fed a metric: give metrics with at least steps={steps} values, "
                         f"got {None if metrics is None else len(metrics)}")
    schedule = copy.deepcopy(schedule)
    parts = list({id(p): p for p in walk(schedule) if p.stateful}.values())
    values = []
    for t in range(steps):
        values.append(schedule.at(t))
        for part in parts:
            part.step(metrics[t])  # type: ignore[attr-defined]
    return values


def plot(schedules: Schedule | Sequence[Schedule] | Mapping[str, Schedule], steps: int | None = None, *,
         ax: Any = None, title: str | None = None, ylabel: str = "value", log: bool = False,
         metrics: Sequence[float] | None = None, path: str | None = None) -> Any:
    """Draw one or several schedules against the step; returns the matplotlib ``Figure``.

    Args:
        schedules: a schedule, a list of them (labelled by their ``repr``), or a dict label -> schedule.
        steps: how many steps to draw (default: enough to show every schedule's whole shape).
        ax: draw into this matplotlib ``Axes`` (e.g. one panel of a grid) instead of a new figure.
        title, ylabel: labels; ``log``: logarithmic value axis.
        metrics: the metric fed to ``reduce_on_plateau`` schedules, one value per step.
        path: if given, also save the figure there (the format follows the file extension).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(schedules, Schedule):
        items = [(repr(schedules), schedules)]
    elif isinstance(schedules, Mapping):
        items = list(schedules.items())
    else:
        items = [(repr(s), s) for s in schedules]
    if not items:
        raise ValueError("plot: no schedules to draw")
    for label, s in items:
        if not isinstance(s, Schedule):
            raise TypeError(f"plot: {label!r} is not a Schedule: {type(s).__name__}")
    if steps is None:
        steps = len(metrics) if metrics is not None else max(s.span() for _, s in items)
    if ax is None:
        figure = Figure(figsize=(7, 4), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
    figure = ax.figure
    x = range(steps)
    for label, s in items:
        ax.plot(x, trace(s, steps, metrics), label=_short(label), linewidth=1.6)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(items) > 1 or isinstance(schedules, Mapping):
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def _short(label: str, width: int = 60) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"
