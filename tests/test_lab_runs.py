"""One run: its config and key, its execution and result, and learning-rate schedules by name."""

from __future__ import annotations

import math

import pytest
import torch

from optimlab.lab.problems.catalog import get_problem
from optimlab.lab.running.runs import RunConfig, RunResult, execute, summarize
from optimlab.lab.running.schedule_specs import (
    SCHEDULES,
    build_schedule,
    canonical_schedule,
    register_schedule,
)
from optimlab.lab.training.loop import Evaluation, StepRecord, StopReason, TrainResult
from optimlab.lab.training.specs import UnknownNameError
from optimlab.lab.training.zoo import make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


# -- configs and keys --------------------------------------------------------------------------

def test_for_problem_takes_the_problems_batch_size_and_budget():
    config = RunConfig.for_problem("mlp-digits", "adam", 1e-3, seed=4)
    assert (config.batch_size, config.max_steps, config.seed) == (32, 2000, 4)
    assert RunConfig.for_problem("mlp-digits", "adam", 1e-3, batch_size=None).batch_size is None  # full batch
    assert RunConfig.for_problem("linreg", "sgd", 0.01, max_steps=7).max_steps == 7


def test_keys_are_stable_and_tell_configs_apart():
    a = RunConfig.for_problem("logreg-cancer", "adam", 0.01, kwargs={"betas": (0.8, 0.9)})
    b = RunConfig.from_dict(a.to_dict())
    assert b == a and b.key() == a.key() and hash(b) == hash(a) and len(a.key()) == 16
    assert b.kwargs == {"betas": [0.8, 0.9]}  # canonical JSON values
    others = [RunConfig(**{**a.to_dict(), **change}) for change in (
        {"lr": 0.0100001}, {"seed": 1}, {"batch_size": 16}, {"max_steps": 999}, {"schedule": "cosine"},
        {"kwargs": {}}, {"stop_at_target": False}, {"optimizer": "adamw"})]
    assert len({a.key(), *(o.key() for o in others)}) == 1 + len(others)
    # The problem is stored in canonical form, and a variant of it is another problem.
    assert RunConfig("quadratic:cond=1e2", "sgd", 1.0).key() == RunConfig("quadratic", "sgd", 1.0).key()
    assert RunConfig("quadratic:cond=10", "sgd", 1.0).key() != RunConfig("quadratic", "sgd", 1.0).key()


@pytest.mark.parametrize("change, error, message", [
    ({"lr": 0}, ValueError, "lr must be a positive finite number, got 0"),
    ({"lr": math.inf}, ValueError, "lr must be a positive finite number, got inf"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
    ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1 or None (full batch), got 0"),
    ({"max_steps": 2.5}, ValueError, "max_steps must be an int >= 1, got 2.5"),
    ({"optimizer": "lion"}, UnknownNameError, "unknown optimizer 'lion'; valid names: sgd, "),
    ({"problem": "mnist"}, UnknownNameError, "unknown problem 'mnist'; valid names: "),
    ({"kwargs": {"lr": 0.1}}, ValueError, "kwargs must not contain 'lr'"),
    ({"kwargs": {"fn": print}}, TypeError, "kwargs must hold JSON values"),
    ({"schedule": "cosine:warm=3"}, ValueError, "unknown parameter 'warm'; valid parameters: min_factor"),
    ({"stop_at_target": 1}, TypeError, "stop_at_target must be a bool, got 1"),
])
def test_bad_configs_are_named(change, error, message):
    base = {"problem": "linreg", "optimizer": "sgd", "lr": 0.01}
    with pytest.raises(error) as caught:
        RunConfig(**{**base, **change})
    assert message in str(caught.value)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown fields \['momentum'\]"):
        RunConfig.from_dict({"problem": "linreg", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9})


# -- execution -------------------------------------------------------------------------------------

def test_execute_is_deterministic_and_fills_the_result():
    config = RunConfig.for_problem("mlp-digits", "adam", 0.0316, stop_at_target=False, max_steps=200)
    a, b = execute(config), execute(config)
    assert [(p.step, p.train_loss, p.valid_loss, p.valid_metric) for p in a.curve] == \
           [(p.step, p.train_loss, p.valid_loss, p.valid_metric) for p in b.curve]
    assert a.stop_reason is StopReason.MAX_STEPS and a.steps == 200 and not a.diverged
    assert [p.step for p in a.curve] == list(range(0, 201, 20))
    assert a.curve[0].train_loss is None and all(p.train_loss > 0 for p in a.curve[1:])
    assert [p.seconds for p in a.curve] == sorted(p.seconds for p in a.curve) and a.seconds >= a.curve[-1].seconds
    assert a.best_valid == max(p.valid_metric for p in a.curve) and a.final_valid == a.curve[-1].valid_metric
    assert a.steps_to_target == next(p.step for p in a.curve if p.valid_metric >= 0.95)
    assert (a.metric, a.higher_is_better, a.target) == ("accuracy", True, 0.95)
    assert 0.9 < a.test_metric <= 1 and a.test_loss > 0
    assert RunResult.from_dict(a.to_dict()) == a
    other = execute(RunConfig(**{**config.to_dict(), "seed": 1}))
    assert other.curve[1].train_loss != a.curve[1].train_loss


def test_stopping_at_the_target():
    problem = get_problem("mlp-digits")
    result = execute(RunConfig.for_problem(problem, "adam", 0.0316))
    assert result.stop_reason is StopReason.TARGET and result.steps == result.steps_to_target < problem.max_steps
    assert result.curve[-1].valid_metric >= problem.target and result.seconds_to_target == result.curve[-1].seconds


def test_a_diverged_run_is_a_result_without_test_metric():
    result = execute(RunConfig.for_problem("linreg", "sgd", 0.5))  # curvature 22: stable below 1/11
    assert result.diverged and result.stop_reason is StopReason.DIVERGED and "exploded" in result.message
    assert result.test_metric is None and result.test_loss is None and result.steps_to_target is None


def test_the_curve_averages_the_training_loss_between_evaluations():
    problem = get_problem("linreg")
    records = [StepRecord(i + 1, 0, float(loss), 0.1 * (i + 1)) for i, loss in enumerate([8, 6, 4, 2])]
    evaluations = [Evaluation(0, {"loss": 9.0}), Evaluation(2, {"loss": 5.0}, 0.2),
                   Evaluation(4, {"loss": math.nan}, 0.4)]
    result = summarize(problem, TrainResult(StopReason.MAX_STEPS, 4, 1, records, evaluations, 0.4), None)
    assert [p.train_loss for p in result.curve] == [None, 7.0, 3.0]
    assert [p.valid_metric for p in result.curve] == [9.0, 5.0, None]  # linreg's metric is the loss
    assert result.best_valid == 5.0 and result.final_valid is None and result.steps_to_target is None


def test_optimizer_kwargs_reach_the_optimizer(monkeypatch):
    from optimlab.lab.running import runs

    built = []
    real = runs.get_optimizer

    class Spy:
        def __init__(self, spec):
            self.spec = spec

        def make(self, params, lr, **kwargs):
            built.append(self.spec.make(params, lr, **kwargs))
            return built[-1]

    monkeypatch.setattr(runs, "get_optimizer", lambda name: Spy(real(name)))
    execute(RunConfig.for_problem("linreg", "momentum", 0.01, kwargs={"dampening": 0.5}, max_steps=3))
    group = built[0].param_groups[0]
    assert (group["lr"], group["momentum"], group["dampening"], group["nesterov"]) == (0.01, 0.9, 0.5, False)


# -- schedules ---------------------------------------------------------------------------------------

def lrs_over(spec, steps=100):
    optimizer = make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 1.0)
    scheduler = build_schedule(spec, optimizer, steps)
    seen = []
    for _ in range(steps):
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        seen.append(optimizer.param_groups[0]["lr"])
    return seen


def test_schedules_by_name():
    assert lrs_over(None) == lrs_over("constant") == [1.0] * 100
    cosine = lrs_over("cosine")
    assert cosine[49] == pytest.approx(0.5) and cosine[-1] == pytest.approx(0.0, abs=1e-12)
    assert lrs_over("linear:end_factor=0.1")[-1] == pytest.approx(0.1)
    warm = lrs_over("warmup-cosine:warmup=10")
    # lr / 10 at the start, +0.09 a step to lr after 10 steps, then cosine to 0.
    assert warm[0] == pytest.approx(0.19) and warm[9] == pytest.approx(1.0) and warm[-1] == pytest.approx(0, abs=1e-9)
    step = lrs_over("step:every=30,gamma=0.5")  # step[i] is the lr after i + 1 steps
    assert (step[28], step[29], step[59]) == (1.0, 0.5, 0.25)
    assert canonical_schedule("constant") is None and canonical_schedule("cosine:min_factor=0.0") == "cosine"
    with pytest.raises(UnknownNameError, match="unknown schedule 'cos'; valid names: constant, cosine, linear"):
        canonical_schedule("cos")
    with pytest.raises(ValueError, match=r"warmup must be in \[1, 100\)"):
        lrs_over("warmup-cosine:warmup=100")


def test_a_registered_schedule_is_used_by_runs(monkeypatch):
    monkeypatch.setitem(SCHEDULES, "halve", None)  # removed again after the test
    register_schedule("halve", lambda optimizer, total_steps, factor=0.5: torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: factor))
    assert lrs_over("halve:factor=0.25", 3) == [0.25] * 3
    config = RunConfig.for_problem("linreg", "sgd", 0.01, schedule="halve", max_steps=5)
    assert config.schedule == "halve" and execute(config).steps == 5
    with pytest.raises(ValueError, match="name must be a non-empty string without ':' or ','"):
        register_schedule("a:b", lambda optimizer, total_steps: None)
