"""The report's words: metric formatting and a plain-language recommendation built from numbers.

Every sentence comes from a sweep's summary (:class:`optimlab.lab.running.sweep.SweepResult`, ranked by
:meth:`~optimlab.lab.running.sweep.SweepResult.ranking`): who reached the target fastest, who was close,
who missed it, and how touchy each optimizer was about its learning rate. Nothing is written
that the numbers do not say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optimlab.lab.training.zoo import fmt_lr


@dataclass(frozen=True)
class Goal:
    """What the runs aimed at: ``metric`` reaching ``target`` on the validation split within
    ``max_steps`` (None when the runs had different budgets)."""

    problem: str
    metric: str
    higher_is_better: bool
    target: float
    max_steps: int | None = None
    description: str = ""

    @property
    def percent(self) -> bool:
        """Whether the metric reads as a percentage (accuracies)."""
        return self.metric == "accuracy" or self.metric.endswith("_accuracy")

    def fmt(self, value: float | None) -> str:
        """A metric value for people: accuracies as percentages, others to 4 significant digits."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{100 * value:.2f}%" if self.percent else f"{value:.4g}"

    def scaled(self, value: float) -> float:
        """A metric value as plotted (accuracies in percent)."""
        return 100 * value if self.percent else value

    @property
    def target_text(self) -> str:
        return f"{self.fmt(self.target)} validation {self.metric}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def fmt_steps(steps: float | None) -> str:
    return "n/a" if steps is None else f"{steps:.0f}"


def lrs_reaching_target(summary: Any) -> int:
    """Learning rates of the grid where the median run reached the target."""
    return sum(1 for p in summary.by_lr if p.steps_to_target is not None)


def no_lr_text(summary: Any) -> str:
    """Why an optimizer has no best learning rate: no run stored yet, or every rate diverged."""
    return "no runs stored yet" if not summary.by_lr else "diverged at every learning rate tried"


def lrs_diverged(summary: Any) -> int:
    """Learning rates of the grid where at least one run diverged."""
    return sum(1 for p in summary.by_lr if p.diverged > 0)


def recommendation(ranked: Sequence[Any], goal: Goal, within: float = 0.2) -> list[str]:
    """Sentences from the ranked optimizer summaries (best first).

    ``within``: an optimizer whose median steps to the target is at most ``1 + within`` times
    the fastest one's is called close to it.
    """
    pending = [s for s in ranked if not s.by_lr]  # an interrupted sweep: no run of these yet
    ranked = [s for s in ranked if s.by_lr]
    if not ranked:
        return ["No runs were stored for this sweep."]
    reached = [s for s in ranked if s.steps_to_target is not None]
    missed = [s for s in ranked if s.steps_to_target is None]
    budget = f" within {goal.max_steps} steps" if goal.max_steps else ""
    sentences = []
    if reached:
        best = reached[0]
        sentences.append(
            f"{best.label} reached {goal.target_text} fastest: median {fmt_steps(best.steps_to_target)} steps "
            f"({fmt_seconds(best.seconds_to_target)} of training) over {plural(best.runs, 'seed')} at lr "
            f"{fmt_lr(best.best_lr)}, "
            f"ending with {goal.fmt(best.test_metric)} test {goal.metric}.")
        close = [s for s in reached[1:] if s.steps_to_target <= (1 + within) * best.steps_to_target]
        if close:
            detail = ", ".join(f"{s.label} ({fmt_steps(s.steps_to_target)} steps, lr {fmt_lr(s.best_lr)})" for s in close)
            sentences.append(f"Within {within:.0%} of it: {detail}.")
        slower = [s for s in reached[1:] if s not in close]
        if slower:
            detail = ", ".join(f"{s.label} ({fmt_steps(s.steps_to_target)})" for s in slower)
            sentences.append(f"Also reached the target, more slowly (median steps): {detail}.")
    else:
        best = next((s for s in ranked if s.best_valid is not None), ranked[0])
        sentences.append(
            f"No optimizer reached {goal.target_text}{budget}. The best median validation {goal.metric} was "
            f"{goal.fmt(best.best_valid)}, by {best.label}"
            + (f" at lr {fmt_lr(best.best_lr)}." if best.best_lr is not None else "."))
        missed = [s for s in missed if s is not best]
    if missed:
        parts = []
        for s in missed:
            if s.best_lr is None:
                parts.append(f"{s.label} ({no_lr_text(s)})")
            else:
                parts.append(f"{s.label} (best {goal.fmt(s.best_valid)} at lr {fmt_lr(s.best_lr)})")
        sentences.append(f"Did not reach the target{budget}: {', '.join(parts)}.")
    swept = [s for s in ranked if len(s.by_lr) > 1]
    if reached and len(swept) > 1:
        def share(s: Any) -> float:
            return lrs_reaching_target(s) / len(s.by_lr)

        most = max(swept, key=share)
        least = min(swept, key=share)
        if share(most) > share(least):
            sentences.append(
                f"Sensitivity to the learning rate: {most.label} reached the target at {lrs_reaching_target(most)} "
                f"of the {len(most.by_lr)} learning rates tried, {least.label} at {lrs_reaching_target(least)} of "
                f"{len(least.by_lr)}.")
    touchy = [s for s in ranked if lrs_diverged(s)]
    if touchy:
        detail = ", ".join(f"{s.label} at {lrs_diverged(s)} of {len(s.by_lr)}" for s in touchy)
        sentences.append(f"Diverged at some learning rates: {detail}. A loss that oscillates and then blows up "
                         "usually means the learning rate is too large for that optimizer.")
    if pending:
        sentences.append(f"Not run yet (the sweep is incomplete): {', '.join(s.label for s in pending)}.")
    return sentences
