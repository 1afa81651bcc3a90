"""Every problem by name: the registry behind ``--problem`` and :func:`get_problem`.

The problems themselves live in :mod:`optimlab.lab.problems.problem` (the :class:`Problem` type and the
classic problems) and :mod:`optimlab.lab.problems.finetune` (the fine-tuning problems, built on
that type). This module sits above both, so data flows one way: problems <- finetune_problems
<- catalog.
"""

from __future__ import annotations

from collections.abc import Callable

from optimlab.lab.problems.finetune import finetune_fashion, finetune_sentiment
from optimlab.lab.problems.problem import (
    Problem,
    cnn_fashion,
    linreg,
    linreg_diabetes,
    logreg_cancer,
    mlp_digits,
    mlp_mnist,
    quadratic,
    rosenbrock,
    softmax_mnist,
)
from optimlab.lab.training.specs import bind, format_spec, parse_spec, unknown

#: Every problem's factory; keyword arguments are the problem's parameters.
FACTORIES: dict[str, Callable[..., Problem]] = {
    "linreg": linreg,
    "linreg-diabetes": linreg_diabetes,
    "logreg-cancer": logreg_cancer,
    "mlp-digits": mlp_digits,
    "softmax-mnist": softmax_mnist,
    "mlp-mnist": mlp_mnist,
    "cnn-fashion": cnn_fashion,
    "quadratic": quadratic,
    "rosenbrock": rosenbrock,
    "finetune-sentiment": finetune_sentiment,
    "finetune-fashion": finetune_fashion,
}

#: Every problem with its default parameters (cheap: no data is read until ``load()``).
PROBLEMS: dict[str, Problem] = {name: factory() for name, factory in FACTORIES.items()}


#: Problems with non-default parameters, by canonical spec: one object per spec.
_VARIANTS: dict[str, Problem] = {}


def get_problem(spec: str) -> Problem:
    """The problem ``spec`` names: ``"mlp-mnist"`` or with parameters ``"quadratic:cond=1000"``.

    Unknown names raise :class:`~optimlab.lab.training.specs.UnknownNameError` (a ``KeyError`` and a
    ``ValueError``) listing the valid ones; unknown or ill-typed parameters raise
    ``ValueError`` naming the valid parameters. ``Problem.name`` is the canonical spec, and
    specs with the same canonical form give the same object.
    """
    name, params = parse_spec(spec, "problem")
    if name not in FACTORIES:
        raise unknown("problem", name, FACTORIES)
    bound = bind(f"problem {name!r}", FACTORIES[name], params)
    if not bound:
        return PROBLEMS[name]
    canonical = format_spec(name, bound)
    if canonical not in _VARIANTS:
        _VARIANTS[canonical] = FACTORIES[name](**bound)
    return _VARIANTS[canonical]


def problem_names() -> list[str]:
    return list(FACTORIES)
