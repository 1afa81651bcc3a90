"""The examples reach their targets: y = 2x with every optimizer, and the MNIST classifiers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from optimlab.lab import StopReason, mnist

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    """Import examples/<name>.py as a module (the examples are scripts, not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # run_all imports the others by name
    spec.loader.exec_module(module)
    return module


linreg = load("linear_regression")


@pytest.mark.parametrize("recipe", linreg.RECIPES, ids=[r.name for r in linreg.RECIPES])
def test_every_optimizer_fits_y_equals_2x(recipe):
    fit = linreg.fit(recipe)
    assert fit.stop_reason is StopReason.MAX_STEPS and fit.steps == recipe.steps
    assert abs(fit.w - 2) < 1e-3, f"{recipe.name}: w = {fit.w}"
    assert fit.loss == pytest.approx(11 * (fit.w - 2) ** 2, abs=1e-9)


@pytest.mark.parametrize("seed", [1, 2])
def test_stochastic_recipes_fit_in_any_order(seed):
    for recipe in linreg.RECIPES:
        if recipe.batch_size is not None:
            assert linreg.fit(recipe, seed=seed).ok


def test_batch_gd_stability_limit_is_one_eleventh():
    outcomes = {round(lr, 4): fit for lr, fit in linreg.learning_rate_table(steps=1000)}
    assert outcomes[0.0455].ok
    assert outcomes[0.09].ok  # just below 1/11: oscillates, converges
    above = outcomes[round(1 / 11 + 1e-3, 4)]
    assert not above.ok and abs(above.w - 2) > 1e6  # just above: grows by 1.022x a step
    assert outcomes[0.1].stop_reason is StopReason.DIVERGED


def test_batch_gd_lands_in_one_step_at_lr_one_over_22():
    fit = linreg.fit(linreg.Recipe("lr=1/22", lambda p: linreg.optimlab.SGD(p, lr=1 / 22), steps=1))
    assert fit.steps == 1 and abs(fit.w - 2) <= 2.5e-7  # float32 rounding of 1/22 * 44


def test_momentum_forms_first_steps():
    """Heavy ball and EMA-form momentum, checked against the recurrences by hand.

    g(w) = 22 (w - 2); heavy ball dw_t = m dw_{t-1} - lr g_t (dw_1 = -lr g_1); EMA form with
    step size a: b_1 = g_1, b_t = m b_{t-1} + (1 - m) g_t, dw_t = -a b_t.
    """
    def grad(w):
        return 22 * (w - 2)

    def heavy_ball(lr, m, n):
        w, moves, dw = 0.0, [], 0.0
        for _ in range(n):
            dw = m * dw - lr * grad(w)
            moves.append(dw)
            w += dw
        return moves

    def ema(a, m, n):
        w, moves, b = 0.0, [], None
        for _ in range(n):
            g = grad(w)
            b = g if b is None else m * b + (1 - m) * g
            moves.append(-a * b)
            w += -a * b
        return moves

    moves = linreg.momentum_first_steps(steps=3)
    expected = [heavy_ball(0.01, 0.9, 3), ema(0.01, 0.9, 3), ema(0.1, 0.9, 3)]
    for got, want in zip(moves.values(), expected):
        assert got == pytest.approx(want, rel=1e-5)
    hb, ema_same_lr, ema_scaled = moves.values()
    assert ema_same_lr[0] == pytest.approx(hb[0]) and ema_same_lr[1] < hb[1]
    assert ema_scaled[0] == pytest.approx(10 * hb[0])


def test_run_all_exits_non_zero_when_a_target_is_missed(monkeypatch, capsys):
    run_all = load("run_all")
    classifiers = load("mnist_classifiers")
    monkeypatch.setattr(run_all.linear_regression, "report", lambda fits: None)
    monkeypatch.setattr(classifiers, "report", lambda outcomes: None)
    good_fit = linreg.Fit("batch GD", 2.0, 0.0, 100, StopReason.MAX_STEPS)
    bad_fit = linreg.Fit("Adam", 1.5, 2.75, 100, StopReason.MAX_STEPS)

    def outcome(test):
        return classifiers.Outcome("softmax", "SGD", 1.0, 391, [0.9], 0.9, test, 0.91, 1.0, StopReason.MAX_STEPS)

    monkeypatch.setattr(run_all.linear_regression, "fit_all", lambda: [good_fit])
    monkeypatch.setattr(classifiers, "fit_all", lambda: [outcome(0.95)])
    assert run_all.main() == 0
    monkeypatch.setattr(classifiers, "fit_all", lambda: [outcome(0.905)])
    assert run_all.main() == 1
    assert "MNIST: softmax, SGD" in capsys.readouterr().out.split("targets missed:")[1]
    monkeypatch.setattr(classifiers, "fit_all", lambda: [outcome(0.95)])
    monkeypatch.setattr(run_all.linear_regression, "fit_all", lambda: [good_fit, bad_fit])
    assert run_all.main() == 1


@pytest.fixture(scope="module")
def mnist_data():
    return mnist()


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1], ids=["softmax", "mlp"])
def test_mnist_classifier_reaches_its_target(mnist_data, index):
    classifiers = load("mnist_classifiers")
    classifier = classifiers.CLASSIFIERS[index]
    outcome = classifiers.fit(classifier, mnist_data)
    assert outcome.stop_reason is StopReason.MAX_STEPS
    assert outcome.test >= classifier.target, f"{classifier.name}: test accuracy {outcome.test}"
    assert outcome.valid >= classifier.target - 0.005
    # Learning, not luck: validation accuracy after the first epoch is already far above chance.
    assert len(outcome.valid_by_epoch) == classifier.epochs and outcome.valid_by_epoch[0] > 0.85
