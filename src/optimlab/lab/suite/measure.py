"""One measured run: steps and seconds to the target, timed so that machine load shows, not skews.

Wall-clock seconds to a target depend on what else the machine does: another job doubles them.
So each run records the wall and CPU time of every optimizer step (:class:`StepTimer`), and
seconds to the target are the *median* step time times the steps to the target, which one
descheduled step cannot move; CPU time is kept beside wall time, and a wall time well above the
CPU time says the process waited for a core (:func:`load_ratio`).

:func:`objective_value` ranks runs for the tuner (lower is better): a run that reached the target
scores its steps to it (at most the budget); one that missed scores above every run that reached
it, ordered by how close its best validation metric came.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from optimlab.lab import Problem, RunConfig, RunResult, execute

#: The score of a run with no finite metric at all (diverged at once): above every other.
WORST_SHORTFALL = 1e6


class StepTimer:
    """A loop hook that keeps each step's wall time (the loop's clock, evaluations excluded) and
    CPU time (``time.thread_time``: the runs use one torch thread, so the work is this thread's;
    and it costs a fraction of a microsecond where ``process_time`` may cost milliseconds). The first step is not
    timed: it has no start mark, and it pays for the optimizer's state being allocated."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._wall = 0.0
        self._cpu: float | None = None

    def after_step(self, loop: Any) -> bool:
        now_wall, now_cpu = loop.result.records[-1].seconds, time.thread_time()
        if self._cpu is not None:
            self.wall.append(now_wall - self._wall)
            self.cpu.append(now_cpu - self._cpu)
        self._wall, self._cpu = now_wall, now_cpu
        return False

    def after_evaluation(self, loop: Any, evaluation: Any) -> bool:
        # the evaluation's CPU time is not a step's: restart the CPU clock after it
        if self._cpu is not None:
            self._cpu = time.thread_time()
        return False


def shortfall(problem: Problem, best: float | None) -> float:
    """How far ``best`` (a validation metric) is from the target, >= 0: relative for metrics that
    grow to a target, in decades for losses driven to a small positive target."""
    if best is None or not math.isfinite(best):
        return WORST_SHORTFALL
    target = problem.target
    if problem.higher_is_better:
        gap = (target - best) / max(abs(target), 1e-12)
    elif target > 0 and best > 0:
        gap = math.log10(best / target)
    else:
        gap = (best - target) / max(abs(target), 1e-12)
    return min(max(gap, 0.0), WORST_SHORTFALL)


def objective_value(problem: Problem, budget: int, steps_to_target: int | None, best: float | None) -> float:
    """Steps to the target if reached (<= budget); else ``budget * (1 + 1e-9 + shortfall)``."""
    if steps_to_target is not None:
        return float(steps_to_target)
    return budget * (1.0 + 1e-9 + shortfall(problem, best))


@dataclass(frozen=True)
class Measurement:
    """A run as the suite keeps it: the result's numbers, the step timing, the curve."""

    steps_to_target: int | None
    wall_to_target: float | None  # seconds: median step wall time x steps to target
    cpu_to_target: float | None  # seconds: median step CPU time x steps to target
    raw_seconds_to_target: float | None  # the loop's own clock, for comparison
    median_step_wall: float | None
    median_step_cpu: float | None
    best_valid: float | None
    steps: int
    diverged: bool
    stop_reason: str
    curve: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**data)


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measurement(result: RunResult, timer: StepTimer) -> Measurement:
    wall, cpu = median_or_none(timer.wall), median_or_none(timer.cpu)
    reached = result.steps_to_target
    return Measurement(reached, None if reached is None or wall is None else wall * reached,
                       None if reached is None or cpu is None else cpu * reached, result.seconds_to_target,
                       wall, cpu, result.best_valid, result.steps, result.diverged, result.stop_reason.value,
                       [asdict(point) for point in result.curve])


def measured_run(config: RunConfig, extra_hooks: tuple[Any, ...] = ()) -> Measurement:
    """Run ``config`` through the lab's one loop with a :class:`StepTimer`; one torch thread."""
    timer = StepTimer()
    result = execute(config, threads=1, hooks=(timer, *extra_hooks))
    return measurement(result, timer)


def load_ratio(measurements: list[Measurement]) -> float | None:
    """Median wall / CPU time per step over the runs: about 1 on an idle core, more when the
    process waited for one."""
    ratios = [m.median_step_wall / m.median_step_cpu for m in measurements
              if m.median_step_wall and m.median_step_cpu]
    return statistics.median(ratios) if ratios else None
