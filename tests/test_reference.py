"""optimlab against the independent float64 references of tests/reference, written from the papers.

Every case steps optimlab and the reference on the same objective for 60 steps and compares
*every* iterate (relative error as defined in tests/helpers.py, scaled by the largest iterate
so far) within 1e-10. Gradients come from three sources:

* ``random``: a fixed random sequence, independent of the iterate;
* ``quadratic``: ``f(x) = 0.5 x^T A x - b^T x`` with A symmetric positive definite;
* ``logcosh``: ``f(x) = sum log cosh(x - c)`` (not quadratic; gradient ``tanh(x - c)``).

With deterministic objectives each method computes gradients at its *own* iterates, so a
wrong update shows up in the gradients too. Hyperparameters are drawn by hypothesis over
every option (maximize and weight decay included); the options that change the algorithm are
pinned per case so each one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optimlab
from tests.helpers import record
from tests.reference import adagrad, adam, momentum, rmsprop
from tests.reference.common import Gradient
from tests.strategies import hyperparams, seeds

STEPS = 60
SIZE = 6
TOL = 1e-10


def gradient_source(kind: str, seed: int, x0: np.ndarray) -> Gradient:
    """``grad(t, x)`` for one of the three objectives, its data drawn from ``seed``.

    The deterministic objectives have their minimum 3 to 5 away from ``x0`` in every
    coordinate, further than the runs below travel: around a minimum, the sign-like steps of
    RMSprop and Adam (``g / sqrt(avg g^2)``) oscillate chaotically and amplify any rounding
    difference exponentially, so no two implementations could agree to 1e-10 there.
    """
    rng = np.random.default_rng(seed)
    minimum = x0 + rng.choice([-1.0, 1.0], SIZE) * rng.uniform(3.0, 5.0, SIZE)
    if kind == "random":
        sequence = rng.standard_normal((STEPS, SIZE))
        return lambda t, x: sequence[t - 1]
    if kind == "quadratic":
        q, _ = np.linalg.qr(rng.standard_normal((SIZE, SIZE)))
        a = q @ np.diag(rng.uniform(0.1, 2.0, SIZE)) @ q.T
        b = a @ minimum
        return lambda t, x: a @ x - b
    if kind == "logcosh":
        return lambda t, x: np.tanh(x - minimum)
    raise ValueError(f"unknown gradient source {kind!r}")


def optimlab_iterates(name: str, x0: np.ndarray, grad: Gradient, hp: dict[str, Any]) -> list[np.ndarray]:
    """Iterates of optimlab's ``name``, fed ``grad`` at its own iterates."""
    p = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    optimizer = getattr(optimlab, name)([p], **hp)
    xs = [x0.copy()]
    for t in range(1, STEPS + 1):
        p.grad = torch.from_numpy(np.array(grad(t, p.detach().numpy().copy()), dtype=np.float64))
        optimizer.step()
        xs.append(p.detach().numpy().copy())
    return xs


def common(hp: dict[str, Any]) -> dict[str, Any]:
    return {"lr": hp["lr"], "weight_decay": hp["weight_decay"], "maximize": hp["maximize"]}


def sgd_reference(x0: np.ndarray, grad: Gradient, hp: dict[str, Any]) -> list[np.ndarray]:
    """The SGD configuration's method from the papers (each case pins which one)."""
    if hp["momentum"] == 0:
        return momentum.gradient_descent(x0, grad, STEPS, **common(hp))
    if hp["nesterov"]:
        thetas, vs = momentum.nesterov_sutskever(x0, grad, STEPS, momentum=hp["momentum"], **common(hp))
        return [theta + hp["momentum"] * v for theta, v in zip(thetas, vs)]  # the look-ahead points
    if hp["dampening"] == 0:
        return momentum.heavy_ball(x0, grad, STEPS, momentum=hp["momentum"], **common(hp))
    return momentum.dampened_momentum(x0, grad, STEPS, momentum=hp["momentum"], dampening=hp["dampening"],
                                      **common(hp))


def adagrad_reference(x0: np.ndarray, grad: Gradient, hp: dict[str, Any]) -> list[np.ndarray]:
    return adagrad.adagrad(x0, grad, STEPS, lr_decay=hp["lr_decay"], eps=hp["eps"],
                           initial_accumulator_value=hp["initial_accumulator_value"], **common(hp))


def rmsprop_reference(x0: np.ndarray, grad: Gradient, hp: dict[str, Any]) -> list[np.ndarray]:
    return rmsprop.rmsprop(x0, grad, STEPS, alpha=hp["alpha"], eps=hp["eps"], momentum=hp["momentum"],
                           centered=hp["centered"], **common(hp))


def adam_reference(x0: np.ndarray, grad: Gradient, hp: dict[str, Any]) -> list[np.ndarray]:
    beta1, beta2 = hp["betas"]
    algorithm = adam.adamw if hp.get("decoupled_weight_decay", True) else adam.adam
    return algorithm(x0, grad, STEPS, beta1=beta1, beta2=beta2, eps=hp["eps"], amsgrad=hp["amsgrad"], **common(hp))


Reference = Callable[[np.ndarray, Gradient, dict[str, Any]], list[np.ndarray]]

#: (optimlab class, pinned options, reference): every algorithm and form the options select.
CASES: dict[str, tuple[str, dict[str, Any], Reference]] = {
    "gradient-descent": ("SGD", {"momentum": False}, sgd_reference),
    "heavy-ball": ("SGD", {"momentum": True, "nesterov": False, "dampening": 0.0}, sgd_reference),
    "dampened-momentum": ("SGD", {"momentum": True, "nesterov": False, "dampening": st.floats(0.01, 1.0)},
                          sgd_reference),
    "nesterov-sutskever": ("SGD", {"nesterov": True}, sgd_reference),
    "adagrad": ("Adagrad", {}, adagrad_reference),
    "rmsprop": ("RMSprop", {"centered": False, "momentum": False}, rmsprop_reference),
    "rmsprop-momentum": ("RMSprop", {"centered": False, "momentum": True}, rmsprop_reference),
    "rmsprop-centered": ("RMSprop", {"centered": True, "momentum": False}, rmsprop_reference),
    "rmsprop-centered-momentum": ("RMSprop", {"centered": True, "momentum": True}, rmsprop_reference),
    "adam": ("Adam", {"amsgrad": False, "decoupled_weight_decay": False}, adam_reference),
    "adam-amsgrad": ("Adam", {"amsgrad": True, "decoupled_weight_decay": False}, adam_reference),
    "adam-decoupled": ("Adam", {"amsgrad": False, "decoupled_weight_decay": True}, adam_reference),
    "adamw": ("AdamW", {"amsgrad": False}, adam_reference),
    "adamw-amsgrad": ("AdamW", {"amsgrad": True}, adam_reference),
}


def trajectory_error(actual: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """The worst, over steps t, of ``max|a_t - b_t| / max_{s <= t} max|b_s|``."""
    worst, scale = 0.0, 0.0
    for a, b in zip(actual, expected, strict=True):
        scale = max(scale, float(np.abs(b).max()))
        worst = max(worst, float(np.abs(a - b).max()) / max(scale, np.finfo(np.float64).tiny))
    return worst if np.isfinite(worst) else np.inf


@pytest.mark.parametrize("source", ["random", "quadratic", "logcosh"])
@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=5)
@given(data=st.data(), seed=seeds)
def test_matches_reference(case, source, data, seed):
    name, pinned, reference = CASES[case]
    if pinned.get("centered") and source != "random":
        # With a slowly changing gradient, n_t - m_t^2 ~ alpha^t (1 - alpha^t) g^2 decays like
        # alpha^t: for alpha = 0.25 it is below float64 roundoff of g^2 after ~27 steps, and the
        # step divides by the square root of rounding noise (in any implementation).
        # alpha >= 0.9 keeps it above 1e-3 g^2 for the whole run.
        pinned = {**pinned, "alpha": st.floats(0.9, 0.999)}
    if source != "random":
        pinned = {**pinned, "lr": st.floats(1e-4, 0.02)}  # stay away from the minimum (gradient_source)
    hp = data.draw(hyperparams(name, **pinned), label="hyperparameters")
    x0 = np.random.default_rng(seed + 1).standard_normal(SIZE)
    grad = gradient_source(source, seed, x0)
    expected = reference(x0, grad, hp)
    actual = optimlab_iterates(name, x0, grad, hp)
    assert not np.allclose(expected[-1], x0)  # the run moves
    error = record(f"reference {case}", trajectory_error(actual, expected))
    assert error <= TOL, f"{case} on {source}: optimlab is {error:.3e} from the reference"


def test_nesterov_iterates_are_sutskever_lookahead_points():
    """The look-ahead comparison is not vacuous: optimlab's Nesterov iterates are Sutskever's
    ``theta_t + mu v_t`` and *not* his ``theta_t`` (nor the heavy ball's iterates)."""
    x0, mu = np.random.default_rng(4).standard_normal(SIZE), 0.9
    grad = gradient_source("quadratic", 3, x0)
    actual = optimlab_iterates("SGD", x0, grad, {"lr": 0.05, "momentum": mu, "nesterov": True})
    thetas, vs = momentum.nesterov_sutskever(x0, grad, STEPS, lr=0.05, momentum=mu)
    assert trajectory_error(actual, [th + mu * v for th, v in zip(thetas, vs)]) <= TOL
    assert trajectory_error(actual, thetas) > 1e-3
    assert trajectory_error(actual, momentum.heavy_ball(x0, grad, STEPS, lr=0.05, momentum=mu)) > 1e-3
