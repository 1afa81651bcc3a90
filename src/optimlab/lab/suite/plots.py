"""The suite report's plots, drawn with the lab's report machinery (:mod:`optimlab.lab.report.plots`):
the performance profiles here; per workload, each track's curves at its tuned setting and the
learning-rate sensitivity of its trials, through the same figures ``compare``'s report uses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.lab.report import plots as report_plots
from optimlab.lab.report.recommend import Goal
from optimlab.lab.report.style import color_map, save_figure

PROFILES = (("tuned_steps", "Tuned: steps to target"), ("tuned_seconds", "Tuned: seconds to target (robust)"),
            ("self_tuning_steps", "Self-tuning (defaults, no tuning): steps"))


def profiles_figure(summary: dict[str, Any], path: Path) -> Path:
    """One panel per profile: fraction of workloads solved within tau x the best, per track."""
    plt = report_plots.pyplot()
    profiles = summary["profiles"]
    taus = np.array(profiles["taus"])
    colors = color_map(list(summary["tracks"]))
    fig, axes = plt.subplots(1, 3, figsize=(16, 6.2), dpi=100, sharey=True)
    for ax, (key, title) in zip(axes, PROFILES):
        scores = profiles[key]["scores"]
        for track in sorted(scores, key=lambda t: -scores[t]):
            dashed = "--" if summary["tracks"][track]["schedule"] != "constant" else "-"
            ax.step(taus, profiles[key]["profiles"][track], where="post", color=colors[track], linestyle=dashed,
                    linewidth=1.8, label=f"{track} ({scores[track]:.2f})")
        ax.set_xlim(1, 4)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("tau: within tau x the fastest track's time")
        ax.set_title(title)
        ax.legend(fontsize=7.5, loc="lower right", title="track (score)", title_fontsize=8)
    axes[0].set_ylabel("fraction of workloads reaching the target")
    noisy = profiles["noisy_workloads"]
    if noisy:
        axes[1].text(0.02, 0.98, "left out (noisy timing): " + ", ".join(noisy), transform=axes[1].transAxes,
                     va="top", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass(frozen=True)
class LrPoint:
    lr: float
    best_valid: float | None
    diverged: int


@dataclass(frozen=True)
class TrackView:
    """A track as the lab's report figures read a sweep's summary."""

    optimizer: str
    label: str
    best_lr: float | None
    best_valid: float | None
    by_lr: list[LrPoint] = field(default_factory=list)
    lrs_reaching: int = 0
    lrs_tried: int = 0


def short(value: float) -> float:
    return float(f"{value:.3g}")


def goal_of(workload: dict[str, Any]) -> Goal:
    return Goal(workload["problem"], workload["metric"], workload["higher_is_better"], workload["target"],
                workload["budget"], workload["description"])


def track_entry(name: str, label: str, data: dict[str, Any], higher: bool) -> report_plots.Entry:
    tuned = data["tuned"]
    # sampled rates to 3 digits: legends stay short, and the chosen rate is found among the points
    points = sorted((LrPoint(short(t["params"]["lr"]), t["best_valid"], int(t["diverged"])) for t in data["trials"]
                     if "lr" in t["params"]), key=lambda p: p.lr)
    values = [v for v in tuned["best_valid"] if v is not None and math.isfinite(v)]
    best = (max if higher else min)(values) if values else None
    lr = tuned["values"].get("lr")
    view = TrackView(name, label, None if lr is None else short(lr), best, points,
                     sum(1 for t in data["trials"] if t["steps_to_target"] is not None), len(points))
    curves = tuple(c for c in tuned["curves"] if c)
    steps = [s for s in tuned["steps_per_seed"] if s is not None]
    return report_plots.Entry(view, curves, 0, (min(steps), max(steps)) if steps else None, None)


def workload_figures(summary: dict[str, Any], workload: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    """Curves (vs steps) and lr sensitivity for one workload; ``(file name, caption)`` pairs."""
    goal = goal_of(workload)
    entries = [track_entry(name, name, data, goal.higher_is_better) for name, data in workload["tracks"].items()]
    slug = workload["problem"].replace(":", "_").replace("=", "-").replace(",", "_")
    curves, sensitivity = f"curves_{slug}.png", f"lr_{slug}.png"
    report_plots.curves_figure([e for e in entries if e.curves], goal, "step", folder / curves)
    report_plots.sensitivity_figure([e for e in entries if e.summary.by_lr], goal, folder / sensitivity)
    return [(curves, f"{workload['problem']}: training loss and validation {goal.metric} of each track at its "
                     "tuned setting, over the measurement seeds"),
            (sensitivity, f"{workload['problem']}: best validation {goal.metric} of every tuning trial against "
                          "its learning rate (the star: the tuned setting)")]
