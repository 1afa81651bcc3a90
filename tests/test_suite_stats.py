"""The suite's statistics and objective, on numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimlab.lab import get_problem
from optimlab.lab.suite import stats
from optimlab.lab.suite.measure import objective_value, shortfall
from optimlab.lab.suite.verdict import speedup_text


def test_mean_interval_is_student_t():
    mean, low, high = stats.mean_interval([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert mean == 2.0 and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert stats.mean_interval([5.0]) == (5.0, None, None)
    assert stats.mean_interval([4.0] * 40)[1:] == (4.0, 4.0)
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_interval([])


def test_median_counts_misses_as_never():
    assert stats.median_with_misses([10, None, 20]) == 20
    assert stats.median_with_misses([10, 20]) == 15
    assert stats.median_with_misses([None, None, 5]) == math.inf  # most seeds missed: not solved


def test_ratio_interval():
    assert stats.ratio_interval([200.0] * 3, [100.0] * 3) == (2.0, 2.0, 2.0)
    ratio, low, high = stats.ratio_interval([90.0, 100.0, 110.0], [95.0, 100.0, 105.0])
    assert ratio == pytest.approx(1.0) and low < 1.0 < high
    assert stats.ratio_interval([1.0, 3.0], [2.0]) == stats.ratio_interval([1.0, 3.0], [2.0])  # seeded
    with pytest.raises(ValueError, match="positive"):
        stats.ratio_interval([0.0], [1.0])


def test_geometric_ratio_is_the_geometric_mean_of_the_ratios():
    ratio, low, high = stats.geometric_ratio_interval([([400.0], [100.0]), ([100.0], [100.0])])
    assert ratio == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)


def test_performance_profiles_and_scores():
    times = {"a": {"w1": 1.0, "w2": 2.0}, "b": {"w1": 2.0, "w2": 1.0}, "c": {"w1": math.inf, "w2": 4.0},
             "d": {"w1": math.inf, "w2": math.inf}}
    taus = stats.TAUS
    profiles = stats.performance_profiles(times)
    at = lambda track, tau: profiles[track][int(np.argmin(abs(taus - tau)))]  # noqa: E731
    assert at("a", 1.0) == 0.5 and at("a", 1.99) == 0.5 and at("a", 2.0) == 1.0
    assert at("c", 3.99) == 0.0 and at("c", 4.0) == 0.5  # exactly 4x the best still counts
    assert profiles["d"].max() == 0.0
    # a: 0.5 on [1, 2), 1 on [2, 4] -> (0.5 + 2) / 3, up to half a grid cell of trapezoid error
    assert stats.profile_score(profiles["a"]) == pytest.approx(2.5 / 3, abs=0.005)
    assert stats.profile_score(profiles["d"]) == 0.0
    assert stats.profile_score(np.ones_like(taus)) == pytest.approx(1.0)


def test_a_workload_nobody_solved_is_left_out_of_the_profiles():
    times = {"a": {"w1": 1.0, "w2": math.inf}, "b": {"w1": 3.0, "w2": math.inf}}
    profiles = stats.performance_profiles(times)
    assert profiles["a"][0] == 1.0  # a is fastest on the one workload that counts
    assert stats.performance_profiles({"a": {"w": math.inf}})["a"].max() == 0.0


def test_objective_ranks_reached_runs_before_misses_and_misses_by_closeness():
    accuracy = get_problem("mlp-digits")  # target accuracy >= 0.95
    budget = 600
    reached = [objective_value(accuracy, budget, s, 0.96) for s in (20, 600)]
    misses = [objective_value(accuracy, budget, None, best) for best in (0.949, 0.9, 0.5)]
    never = objective_value(accuracy, budget, None, None)
    assert reached[0] < reached[1] <= budget < misses[0] < misses[1] < misses[2] < never
    loss = get_problem("quadratic")  # f <= 1e-6: a miss at 1e-5 is one decade short
    assert shortfall(loss, 1e-5) == pytest.approx(1.0)
    assert objective_value(loss, 100, None, 1e-5) < objective_value(loss, 100, None, 1e-3)
    assert objective_value(loss, 100, None, math.nan) == never * 100 / budget


def test_speedup_sentences_say_plainly_when_the_goal_is_missed():
    assert "meets the 1.25x goal" in speedup_text(1.3, 1.6, 1.45)
    assert "NOT the 1.25x goal" in speedup_text(1.1, 1.5, 1.3)
    assert "includes 1x" in speedup_text(0.9, 1.5, 1.2)
    assert "SLOWER" in speedup_text(0.5, 0.8, 0.6)


class FakeTrial:
    def __init__(self, prune: bool) -> None:
        self.reports: list[tuple[float, int]] = []
        self.prune = prune

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return self.prune


def test_the_pruner_hook_reports_scores_and_never_prunes_a_run_at_the_target():
    from types import SimpleNamespace

    from optimlab.lab.suite.problems import Workload
    from optimlab.lab.suite.studies import PruneReporter

    workload = Workload("mlp-digits", 600)
    evaluation = lambda step, accuracy: SimpleNamespace(step=step, metrics={"accuracy": accuracy})  # noqa: E731
    trial = FakeTrial(prune=True)
    reporter = PruneReporter(trial, workload, every=100)
    assert reporter.after_evaluation(None, evaluation(0, 0.1)) is False  # step 0 is not reported
    assert reporter.after_evaluation(None, evaluation(50, 0.8)) is False  # not a reporting step
    assert reporter.after_evaluation(None, evaluation(100, 0.7)) is True  # hopeless: stop the run
    assert trial.reports == [(objective_value(workload.lab_problem, 600, None, 0.8), 100)]  # the best so far
    reached = PruneReporter(FakeTrial(prune=True), workload, every=100)
    assert reached.after_evaluation(None, evaluation(100, 0.96)) is False and not reached.pruned


def test_the_step_timer_times_every_step_but_the_first(one_thread):
    from optimlab.lab import RunConfig, execute
    from optimlab.lab.suite.measure import StepTimer, measurement

    timer = StepTimer()
    result = execute(RunConfig.for_problem("logreg-cancer", "sgd", 1e-4, max_steps=30), hooks=(timer,))
    assert result.steps == 30 and len(timer.wall) == len(timer.cpu) == 29
    assert all(t >= 0 for t in timer.wall + timer.cpu)
    measured = measurement(result, timer)
    assert measured.steps_to_target is None and measured.wall_to_target is None  # lr 1e-4: too slow
    assert measured.median_step_wall == sorted(timer.wall)[14]
