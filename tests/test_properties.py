"""Properties every run must have, for every configuration of every optimizer of the registry,
on hypothesis-drawn parameters (shapes, layouts, seeds, and dtypes: complex ones too where the
optimizer takes them, ``complex_params``):

* ``lr = 0`` changes no parameter (decoupled weight decay is scaled by ``lr`` too), for the
  optimizers whose steps scale with the lr (``lr_scales_steps``); for the others (Rprop: lr is
  where the step sizes start, and they are kept within ``step_sizes``) it still moves them;
  where torch refuses ``lr = 0`` (SparseAdam), optimlab refuses it too;
* maximizing f is minimizing -f: ``maximize=True`` fed ``grad f`` steps bit for bit like
  ``maximize=False`` fed ``-grad f`` (every optimizer that has the option);
* parameter groups with equal hyperparameters are one group: splitting or reordering the
  groups changes nothing (every optimizer that takes several groups; tests/test_contract.py
  checks that the single-group ones refuse a second);
* plain SGD with ``lr < 1/L`` decreases a convex quadratic at every step (and any SGD
  configuration does on its first step): a guarantee of gradient descent, not of the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optimlab
from optimlab.optimizers.registry import REGISTRY
from tests.helpers import (
    Run,
    clone_params,
    config_cases,
    dtypes_for,
    fit_shape,
    fit_specs,
    grad_sequence,
    make_params,
    names,
    same,
    split_of,
    states_in_order,
    takes,
    twins,
    values,
)
from tests.strategies import hyperparams, param_specs, seeds

#: Small tensors step fastest on one torch thread (see tests/test_contract.py).
pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 12


def dtypes(name: str) -> st.SearchStrategy:
    """float64 and float32, and complex128 and complex64 where the optimizer takes them."""
    return st.sampled_from(dtypes_for(name, torch.float64, torch.float32))


def cases(where: Any = lambda entry, config: True) -> list[Any]:
    """:func:`tests.helpers.config_cases` for which ``where(entry, config)`` holds."""
    return [case for case in config_cases() if where(REGISTRY[case.values[0]], REGISTRY[case.values[0]].configs[
        case.values[1]])]


def run_at_zero_lr(name: str, index: int, specs: list, seed: int, dtype: torch.dtype) -> tuple[Run, list]:
    """Configuration ``index`` of ``name`` at ``lr=0`` in every group for ``STEPS`` steps (counted
    by a post-step hook, so that a run that never stepped cannot pass)."""
    params = make_params(fit_specs(name, specs), dtype, seed)
    config = {**REGISTRY[name].configs[index], "lr": 0.0}
    run = Run.build(getattr(optimlab, name), params, config, {} if REGISTRY[name].single_group else {"lr": 0.0},
                    split_of(name, params, 1))
    steps: list[int] = []
    run.optimizer.register_step_post_hook(lambda *args: steps.append(1))
    run.steps(grad_sequence(params, STEPS, seed + 1))
    assert len(steps) == STEPS
    return run, params


def searches(config: Any) -> bool:
    return config.get("line_search_fn") is not None


def refuses_zero_lr(name: str) -> bool:
    """Whether ``lr=0`` is refused at construction (SparseAdam, as torch's: ``lr > 0``)."""
    try:
        getattr(optimlab, name)([torch.zeros(fit_shape(name, (2,)), requires_grad=True)], lr=0.0)
    except ValueError:
        return True
    return False


def zero_lr_runs(entry: Any, config: Any) -> bool:
    return entry.lr_scales_steps and not refuses_zero_lr(entry.name)


@pytest.mark.parametrize("name", names(lambda entry: refuses_zero_lr(entry.name)))
def test_zero_learning_rate_is_refused_where_torch_refuses_it(name):
    """The other side: an optimizer that refuses ``lr=0`` does so as its torch twin does."""
    for cls in twins(name):
        with pytest.raises(ValueError):
            cls([torch.zeros(fit_shape(name, (2,)), requires_grad=True)], lr=0.0)


@pytest.mark.parametrize(("name", "index"), cases(lambda entry, config: zero_lr_runs(entry, config) and not searches(config)))
@settings(max_examples=4)
@given(data=st.data(), specs=param_specs(), seed=seeds)
def test_zero_learning_rate_changes_nothing(name, index, data, specs, seed):
    dtype = data.draw(dtypes(name), label="dtype")
    run, params = run_at_zero_lr(name, index, specs, seed, dtype)
    assert same(values(run.params), values(params))


@pytest.mark.parametrize(("name", "index"), cases(lambda entry, config: zero_lr_runs(entry, config) and searches(config)))
@pytest.mark.xfail(raises=ZeroDivisionError, strict=True,
                   reason="lr=0 with a line search: 0/0 in the cubic interpolation, as in torch.optim.LBFGS")
def test_zero_learning_rate_changes_nothing_with_a_line_search(name, index):
    """The same property for the configurations with a line search (L-BFGS's strong Wolfe): with a
    float ``lr=0`` the first trial step is 0, and the cubic interpolation between two trials at
    the same point divides 0 by 0 (ZeroDivisionError), as torch.optim.LBFGS does (a 0-d tensor
    lr of 0 stands still in both). Expected to fail until that is fixed; strict, so a fix shows."""
    run, params = run_at_zero_lr(name, index, [((), "contiguous"), ((3, 2), "transposed")], 0, torch.float64)
    assert same(values(run.params), values(params))


@pytest.mark.parametrize(("name", "index"), cases(lambda entry, config: not entry.lr_scales_steps))
@settings(max_examples=2)
@given(data=st.data(), specs=param_specs(), seed=seeds)
def test_zero_learning_rate_is_only_a_start_where_the_steps_do_not_scale_with_it(name, index, data, specs, seed):
    """The other side of ``lr_scales_steps`` (Rprop): lr=0 is the first step size, and the steps
    grow from there (at least to the lower bound of ``step_sizes``)."""
    dtype = data.draw(dtypes(name), label="dtype")
    run, params = run_at_zero_lr(name, index, specs, seed, dtype)
    assert not same(values(run.params), values(params))


@pytest.mark.parametrize(("name", "index"), cases(lambda entry, config: takes(entry.name, "maximize")))
@settings(max_examples=4)
@given(data=st.data(), specs=param_specs(), seed=seeds)
def test_maximize_f_is_minimize_minus_f(name, index, data, specs, seed):
    dtype = data.draw(dtypes(name), label="dtype")
    config = REGISTRY[name].configs[index]
    params = make_params(fit_specs(name, specs), dtype, seed)
    sequence = grad_sequence(params, STEPS, seed + 1, skip=0.1)
    negated = [[None if g is None else -g for g in grads] for grads in sequence]
    cls, split = getattr(optimlab, name), split_of(name, params, 1)
    ascent = Run.build(cls, params, {**config, "maximize": True}, {}, split).steps(sequence)
    descent = Run.build(cls, params, {**config, "maximize": False}, {}, split).steps(negated)
    assert same(values(ascent.params), values(descent.params))
    assert same(states_in_order(ascent.optimizer), states_in_order(descent.optimizer))
    assert not same(values(ascent.params), values(params))


@pytest.mark.parametrize(("name", "index"), cases(lambda entry, config: not entry.single_group))
@settings(max_examples=4)
@given(data=st.data(), specs=param_specs(min_size=3), seed=seeds, cut=st.integers(1, 3))
def test_equal_groups_are_one_group(name, index, data, specs, seed, cut):
    dtype = data.draw(dtypes(name), label="dtype")
    config = REGISTRY[name].configs[index]
    params = make_params(fit_specs(name, specs), dtype, seed)
    cut = min(cut, len(params) - 1)
    sequence = grad_sequence(params, STEPS, seed + 1, skip=0.1)
    cls = getattr(optimlab, name)
    results = []
    for groups in ([params], [params[:cut], params[cut:]], [params[cut:], params[:cut]]):
        copies = {id(p): q for p, q in zip(params, clone_params(params))}
        optimizer = cls([{"params": [copies[id(p)] for p in g]} for g in groups], **config)
        mine = [copies[id(p)] for p in params]
        Run(optimizer, mine).steps(sequence)
        results.append((values(mine), [optimizer.state.get(p, {}) for p in mine]))
    for other in results[1:]:
        assert same(other[0], results[0][0]) and same(other[1], results[0][1])


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
    """Specific to SGD: descent at every step for lr below 2/L is gradient descent's guarantee
    (adaptive methods rescale the gradient and have none such)."""
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
