"""The report's plots (matplotlib, Agg backend, PNG).

Every plot gives each optimizer the same colour (:mod:`optimlab.lab.report.style`), labels its axes
with units, and marks the validation target. Curves over seeds are aggregated at the
evaluation steps that all of an optimizer's (non-diverged) seeds share: the median as a line and
the min-max range over seeds as a band. Runs stop when they reach the target, so the aggregate
ends where the first seed stopped; a dot marks each seed's last evaluation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.lab.report.recommend import Goal, no_lr_text, plural
from optimlab.lab.report.style import color_map, save_figure
from optimlab.lab.training.zoo import fmt_lr

Curve = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Entry:
    """One optimizer as the plots see it: its sweep summary (``optimizer``, ``label``,
    ``best_lr``, ``steps_to_target``, ``seconds_to_target``, ``best_valid``, ``by_lr``), the
    curves of its runs at the best lr that did not diverge, how many did, and the min-max steps
    to the target over those runs."""

    summary: Any
    curves: tuple[Curve, ...]
    diverged: int
    steps_range: tuple[float, float] | None
    seconds_range: tuple[float, float] | None


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3})
    return plt



def value(point: Mapping[str, Any], column: str) -> float:
    v = point.get(column)
    return math.nan if v is None else float(v)


def aggregate(curves: Sequence[Curve], column: str, x: str) -> tuple[np.ndarray, ...]:
    """``(steps, xs, median, low, high)`` of ``column`` over ``curves`` at the steps they all share.

    ``x`` is "step" (the x values are the steps) or "seconds" (at each shared step, the median
    over the curves of the training seconds).
    """
    if not curves:
        return (np.empty(0),) * 5
    steps = sorted(set.intersection(*({int(p["step"]) for p in c} for c in curves)))
    rows, xs = [], []
    for c in curves:
        by_step = {int(p["step"]): p for p in c}
        rows.append([value(by_step[s], column) for s in steps])
        xs.append([value(by_step[s], "seconds") for s in steps])
    table = np.array(rows, dtype=float).reshape(len(curves), len(steps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns: no training loss at step 0
        med, low, high = np.nanmedian(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)
        xaxis = np.array(steps, dtype=float) if x == "step" else np.nanmedian(np.array(xs, dtype=float), 0)
    return np.array(steps, dtype=float), xaxis, med, low, high


def ends(curves: Sequence[Curve], column: str, x: str) -> list[tuple[float, float]]:
    """Each curve's last point with a finite ``column`` value, as (x, value)."""
    out = []
    for c in curves:
        for p in reversed(c):
            v = value(p, column)
            if math.isfinite(v):
                out.append((value(p, "step" if x == "step" else "seconds"), v))
                break
    return out


def metric_label(goal: Goal) -> str:
    return f"validation {goal.metric}"


def metric_axis(ax, goal: Goal, values: Sequence[np.ndarray]) -> str:
    """Give the metric axis a scale that spreads out the region near the target; return its name.

    Accuracies go on a logit scale, ``log(p / (1 - p))``, labelled in percent: 90%, 99% and
    99.9% are equally far apart, so the last points before a 97% target are as visible as the
    first rise from 10%. Positive metrics where lower is better (losses) go on a log scale;
    anything else stays linear.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter

    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.empty(0)
    if goal.percent and finite.size and finite.min() >= 0 and finite.max() <= 1:
        ax.set_yscale("logit", nonpositive="clip")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.10g}%"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        low = max(min(finite.min(), goal.target), 1e-3)
        high = min(max(finite.max(), goal.target), 1 - 1e-4)
        # Pad by a fraction of the range in logit units, so no point sits on the frame.
        pad = 0.05 * (logit(high) - logit(low)) + 0.05
        bottom, top = expit(logit(low) - pad), expit(logit(high) + pad)
        ax.set_ylim(bottom, top)
        ticks: list[float] = []
        for tier in LOGIT_TICKS:  # coarse levels first; finer ones while the axis has room
            more = [t for t in tier if bottom <= t <= top]
            if ticks and len(ticks) + len(more) > 8:
                break
            ticks += more
        if len(ticks) < 3:  # a narrow band (e.g. 66% to 79%): evenly spaced percents instead
            ticks = even_ticks(bottom, top)
        ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
        ax.yaxis.set_minor_locator(FixedLocator([]))
        return "logit scale"
    if not goal.higher_is_better and finite.size and finite.min() > 0:
        ax.set_yscale("log")
        ax.set_ylim(min(finite.min(), goal.target) / 1.5, finite.max() * 1.5)
        plain_log_ticks(ax)
        return "log scale"
    return ""


#: Labelled levels of a logit axis, coarse to fine: the usual accuracies.
LOGIT_TICKS = ((0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999),
               (0.3, 0.7, 0.95, 0.995, 0.9995),
               (0.2, 0.8, 0.97, 0.98, 0.998),
               (0.92, 0.94, 0.96, 0.985),
               (0.91, 0.93, 0.975))


def even_ticks(bottom: float, top: float) -> list[float]:
    """At least 3 levels in [bottom, top], the coarsest of 10%, 5%, 2%, 1%, 0.5%, ... apart."""
    for step in (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001):
        levels = [round(k * step, 6) for k in range(math.ceil(bottom / step), math.floor(top / step) + 1)]
        levels = [t for t in levels if 0 < t < 1]
        if len(levels) >= 3:
            return levels
    return [bottom, (bottom + top) / 2, top]


def plain_log_ticks(ax) -> None:
    """Label a log axis with plain numbers: 0.1, 0.2, 0.5, 1 over up to 3 decades, powers of 10 beyond."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    low, high = ax.get_ylim()
    decades = math.log10(high / low) if low > 0 and high > low else 1.0
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def expit(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def curves_figure(entries: Sequence[Entry], goal: Goal, x: str, path: Path) -> Path:
    """Training loss and validation metric against steps (``x="step"``) or seconds, one line per optimizer."""
    plt = pyplot()
    colors = color_map([e.summary.optimizer for e in entries])
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(13, 5.4), dpi=100)
    shown = []
    for e in entries:
        s = e.summary
        color = colors[s.optimizer]
        if s.best_lr is None:
            ax_metric.plot([], [], color=color, linewidth=1.8, label=f"{s.label} ({no_lr_text(s)})")
            continue
        name = f"{s.label}, lr {fmt_lr(s.best_lr)} ({plural(len(e.curves), 'seed')}" + (
            f", {e.diverged} diverged)" if e.diverged else ")")
        for ax, column in ((ax_loss, "train_loss"), (ax_metric, "valid_metric")):
            steps, xs, med, low, high = aggregate(e.curves, column, x)
            if column == "valid_metric":  # the axis fits the trained part; step 0 may lie below it
                shown.extend([low[steps > 0], high[steps > 0]])
            ok = np.isfinite(med)
            ax.plot(xs[ok], med[ok], color=color, linewidth=1.8, label=name)
            ax.fill_between(xs[ok], low[ok], high[ok], color=color, alpha=0.18, linewidth=0)
            for ex, ev in ends(e.curves, column, x):
                ax.plot(ex, ev, "o", color=color, markersize=3.5)
    ax_metric.axhline(goal.target, color="black", linestyle="--", linewidth=1,
                      label=f"target {goal.fmt(goal.target)}")
    scale = metric_axis(ax_metric, goal, shown)
    xlabel = "optimizer steps" if x == "step" else "training time (seconds, evaluation excluded)"
    ax_loss.set_yscale("log")
    plain_log_ticks(ax_loss)
    ax_loss.set_ylabel("training loss (log scale)")
    ax_metric.set_ylabel(metric_label(goal) + (f" ({scale})" if scale else ""))
    for ax in (ax_loss, ax_metric):
        ax.set_xlabel(xlabel)
        ax.set_xlim(left=0)
    what = "steps" if x == "step" else "seconds"
    ax_loss.set_title(f"Training loss vs {what} (median over seeds; band: min to max)")
    ax_metric.set_title(f"Validation {goal.metric} vs {what}, each optimizer at its best lr")
    handles, names = ax_metric.get_legend_handles_labels()
    rows = math.ceil(len(names) / 4)
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.02 + 0.045 * rows, 1, 1))
    return save_figure(fig, path)


def sensitivity_figure(entries: Sequence[Entry], goal: Goal, path: Path) -> Path:
    """Median best validation metric against the learning rate (log x), diverged lrs marked.

    For accuracies the axis stops a few target-gaps below the target (at least to 1.5 logit
    units below it), so the good range, where the optimizers differ, is not squeezed by one poor
    rate; a rate below the axis is drawn as a triangle on its bottom edge, labelled with its value.
    """
    plt = pyplot()
    colors = color_map([e.summary.optimizer for e in entries])
    fig, ax = plt.subplots(figsize=(12, 5.6), dpi=100)
    series = []
    for e in entries:
        points = e.summary.by_lr
        lrs = np.array([p.lr for p in points], dtype=float)
        values = np.array([math.nan if p.best_valid is None else p.best_valid for p in points])
        series.append((e, lrs, values))
    shown = [v for _, _, v in series]
    finite = np.concatenate([v[np.isfinite(v)] for v in shown]) if shown else np.empty(0)
    if goal.percent and finite.size and 0 < goal.target < 1:
        top = min(max(float(finite.max()), goal.target), 1 - 1e-4)
        floor = expit(logit(goal.target) - max(4 * (logit(top) - logit(goal.target)), 1.5))
        shown = [np.where(v >= floor, v, np.nan) for v in shown] + [np.array([max(floor, finite.min())])]
    scale = metric_axis(ax, goal, shown)
    bottom = ax.get_ylim()[0]
    for e, lrs, values in series:
        s = e.summary
        color = colors[s.optimizer]
        ax.plot(lrs, values, "-o", color=color, linewidth=1.6, markersize=5,
                label=f"{s.label} (" + (f"chosen lr {fmt_lr(s.best_lr)}" if s.best_lr is not None else no_lr_text(s)) + ")")
        below = np.isfinite(values) & (values < bottom)
        for lr, v in zip(lrs[below], values[below]):
            ax.plot(lr, bottom, "v", color=color, markersize=9, clip_on=False, zorder=6)
            ax.annotate(goal.fmt(float(v)), (lr, bottom), textcoords="offset points", xytext=(6, 4), fontsize=8,
                        color=color)
        bad = np.array([p.diverged > 0 for p in s.by_lr])
        if bad.any():  # an x at the rate's value, or on the bottom edge when it has none or is below
            ys = np.where(np.isfinite(values[bad]) & (values[bad] >= bottom), values[bad], bottom)
            ax.plot(lrs[bad], ys, "x", color=color, markersize=11, markeredgewidth=2.5, clip_on=False, zorder=6)
        if s.best_lr is not None and s.best_valid is not None:
            chosen = next((v for lr, v in zip(lrs, values) if lr == s.best_lr), s.best_valid)
            ax.plot(s.best_lr, chosen, "*", color=color, markersize=16, markeredgecolor="black", zorder=5)
    ax.axhline(goal.target, color="black", linestyle="--", linewidth=1, label=f"target {goal.fmt(goal.target)}")
    ax.plot([], [], "x", color="0.3", markersize=10, markeredgewidth=2.5, label="diverged (at least one seed)")
    ax.plot([], [], "*", color="0.7", markeredgecolor="black", markersize=13, label="chosen lr")
    ax.plot([], [], "v", color="0.3", markersize=9, label="below the axis (value written)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"best {metric_label(goal)}" + (f" ({scale})" if scale else "") +
                  "\nmedian over the seeds at that lr")
    ax.set_title(f"Learning-rate sensitivity: the best validation {goal.metric} each learning rate reached")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def target_bars_figure(entries: Sequence[Entry], goal: Goal, path: Path) -> Path:
    """Median steps and seconds to the target per optimizer, ranked (whiskers: min to max over seeds)."""
    plt = pyplot()
    colors = color_map([e.summary.optimizer for e in entries])
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.55 * len(entries) + 2.3), dpi=100)
    ys = np.arange(len(entries))
    names = [e.summary.label for e in entries]
    bar_colors = [colors[e.summary.optimizer] for e in entries]
    for ax, attr, span, unit in ((axes[0], "steps_to_target", "steps_range", "steps"),
                                 (axes[1], "seconds_to_target", "seconds_range", "s")):
        values = np.array([getattr(e.summary, attr) or 0.0 for e in entries], dtype=float)
        low = [v - getattr(e, span)[0] if getattr(e, span) and v else 0.0 for e, v in zip(entries, values)]
        high = [getattr(e, span)[1] - v if getattr(e, span) and v else 0.0 for e, v in zip(entries, values)]
        ax.barh(ys, values, color=bar_colors, xerr=[low, high], capsize=3, ecolor="0.25")
        right = float(max((values + np.array(high)).max(), 1e-9)) if values.size else 1.0
        for y, v, e in zip(ys, values, entries):
            s = e.summary
            if v:
                text = f"{v:.0f} steps" if unit == "steps" else f"{v:.3g} s"
            elif s.best_lr is None:
                text = no_lr_text(s)
            else:
                text = f"not reached (best {goal.fmt(s.best_valid)})"
            ax.text((v + high[y] if v else 0) + 0.01 * right, y, " " + text, va="center", fontsize=9)
        ax.set_xlim(0, right * 1.4)
        ax.set_yticks(ys, names)
        ax.invert_yaxis()  # rank 1 on top
        ax.grid(axis="y", visible=False)
    axes[0].set_xlabel("optimizer steps to the target\n(median over seeds; whiskers: min to max)")
    axes[1].set_xlabel("training seconds to the target, evaluation excluded\n(median over seeds; whiskers: min to max)")
    fig.suptitle(f"Time to reach {goal.target_text}, each optimizer at its best lr (ranked, best on top)",
                 fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)

