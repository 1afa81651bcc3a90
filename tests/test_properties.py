"""Properties every run must have, whatever the hyperparameters (hypothesis-drawn, every option).

* ``lr = 0`` changes no parameter (AdamW's decoupled decay is scaled by ``lr`` too);
* maximizing f is minimizing -f: ``maximize=True`` fed ``grad f`` steps bit for bit like
  ``maximize=False`` fed ``-grad f``;
* plain SGD with ``lr < 1/L`` decreases a convex quadratic at every step (and any SGD
  configuration does on its first step);
* parameter groups with equal hyperparameters are one group: splitting or reordering the
  groups changes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optimlab
from tests.helpers import NAMES, Run, clone_params, grad_sequence, make_params, same, states_in_order, values
from tests.strategies import hyperparams, param_specs, seeds

STEPS = 20
DTYPES = st.sampled_from([torch.float64, torch.float32])


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15)
@given(data=st.data(), specs=param_specs(), seed=seeds, dtype=DTYPES)
def test_zero_learning_rate_changes_nothing(name, data, specs, seed, dtype):
    hp = data.draw(hyperparams(name, lr=0.0), label="constructor")
    override = data.draw(hyperparams(name, lr=0.0), label="group 1")
    params = make_params(specs, dtype, seed)
    run = Run.build(getattr(optimlab, name), params, hp, override, 1).steps(grad_sequence(params, STEPS, seed + 1))
    assert same(values(run.params), values(params))
    assert any(states_in_order(run.optimizer)) or name == "SGD"  # the steps did run


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15)
@given(data=st.data(), specs=param_specs(), seed=seeds, dtype=DTYPES)
def test_maximize_f_is_minimize_minus_f(name, data, specs, seed, dtype):
    hp = data.draw(hyperparams(name, maximize=True), label="constructor")
    override = data.draw(hyperparams(name, maximize=True), label="group 1")
    params = make_params(specs, dtype, seed)
    sequence = grad_sequence(params, STEPS, seed + 1, skip=0.1)
    negated = [[None if g is None else -g for g in grads] for grads in sequence]
    cls = getattr(optimlab, name)
    ascent = Run.build(cls, params, hp, override, 1).steps(sequence)
    descent = Run.build(cls, params, {**hp, "maximize": False}, {**override, "maximize": False}, 1).steps(negated)
    assert same(values(ascent.params), values(descent.params))
    assert same(states_in_order(ascent.optimizer), states_in_order(descent.optimizer))
    assert not same(values(ascent.params), values(params))


@st.composite
def quadratics(draw, size: int = 5):
    """``(A, b)`` of ``f(x) = 0.5 x^T A x - b^T x`` with A symmetric, eigenvalues in [0.1, 2]."""
    rng = np.random.default_rng(draw(seeds))
    q, _ = np.linalg.qr(rng.standard_normal((size, size)))
    a = q @ np.diag(rng.uniform(0.1, 2.0, size)) @ q.T
    return torch.from_numpy((a + a.T) / 2), torch.from_numpy(rng.standard_normal(size))


def objective(a: torch.Tensor, b: torch.Tensor, weight_decay: float):
    """The minimized objective, with the L2 term that coupled weight decay adds."""
    return lambda x: 0.5 * x @ a @ x - b @ x + 0.5 * weight_decay * x @ x


@settings(max_examples=20)
@given(data=st.data(), quadratic=quadratics(), x0=seeds)
def test_sgd_steps_descend_on_a_convex_quadratic(data, quadratic, x0):
    a, b = quadratic
    hp = data.draw(hyperparams("SGD", maximize=False), label="hyperparameters")
    smoothness = torch.linalg.eigvalsh(a).max().item() + hp["weight_decay"]
    # Plain SGD descends at every step for lr < 2/L; the first step of any configuration moves
    # by lr * (1 + momentum) * g with Nesterov, lr * g otherwise: keep that below 1/L too.
    hp["lr"] = data.draw(st.floats(0.01, 0.99), label="lr * L * (1 + momentum)") / smoothness / (1 + hp["momentum"])
    f = objective(a, b, hp["weight_decay"])
    x = torch.from_numpy(np.random.default_rng(x0).standard_normal(5) * 3).requires_grad_()
    optimizer = optimlab.SGD([x], **hp)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * x @ a @ x - b @ x  # the weight decay term is the optimizer's part
        loss.backward()
        return loss

    losses = []
    for _ in range(STEPS if hp["momentum"] == 0 else 1):
        before = f(x).item()
        optimizer.step(closure)
        losses.append((before, f(x).item()))
    assert all(after < before for before, after in losses), losses


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=10)
@given(data=st.data(), specs=param_specs(min_size=3), seed=seeds, dtype=DTYPES, cut=st.integers(1, 3))
def test_equal_groups_are_one_group(name, data, specs, seed, dtype, cut):
    hp = data.draw(hyperparams(name), label="hyperparameters")
    params = make_params(specs, dtype, seed)
    cut = min(cut, len(params) - 1)
    sequence = grad_sequence(params, STEPS, seed + 1, skip=0.1)
    cls = getattr(optimlab, name)
    results = []
    for groups in ([params], [params[:cut], params[cut:]], [params[cut:], params[:cut]]):
        copies = {id(p): q for p, q in zip(params, clone_params(params))}
        optimizer = cls([{"params": [copies[id(p)] for p in g]} for g in groups], **hp)
        mine = [copies[id(p)] for p in params]
        Run(optimizer, mine).steps(sequence)
        results.append((values(mine), [optimizer.state.get(p, {}) for p in mine]))
    for other in results[1:]:
        assert same(other[0], results[0][0]) and same(other[1], results[0][1])
