"""Checks of an optimlab class against its torch.optim twin that the registry test does not make.

* :func:`optimizer_info`: torch's own description of its optimizer, the ``OptimizerInfo`` of
  ``torch.testing._internal.common_optimizers.optim_db``; :func:`configurations`: the
  constructor arguments torch's tests run on the CPU, from it.
* :func:`mismatches`: torch's own error cases, replayed. For every optimizer, torch keeps the
  inputs that must fail (``optim_error_inputs_func`` of its entry in
  ``torch.testing._internal.common_optimizers.optim_db``): bad hyperparameters that must raise
  at construction, parameters that must raise at the first step (Adafactor's complex ones),
  and a few that must warn. Each is replayed on the optimlab class, and every case whose
  exception (or warning) type or moment differs from torch's is reported. The messages are
  optimlab's own (they name the argument, the value and what was expected), so only types are
  compared. Importing optim_db costs several seconds (it pulls in torch's test framework), so
  it happens on first use, not when the tests are collected.
* :func:`scheduled_run`: a run whose learning rate is written into the groups between steps,
  as a scheduler does (the registry test keeps it constant).
"""

from __future__ import annotations

import functools
import sys
import types
import unittest
import warnings
from typing import Any

import torch
from torch import Tensor

from tests.helpers import Grads, Run, clone_params, run_steps


@functools.cache
def common_optimizers() -> types.ModuleType:
    """torch.testing._internal.common_optimizers (optim_db and its enums), imported once."""
    # torch's test utilities import ``expecttest`` for a TestCase base class and a flag that
    # reading optim_db never uses; that test-only dependency of torch is not installed here.
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            sys.modules["expecttest"] = types.SimpleNamespace(TestCase=unittest.TestCase, ACCEPT=False)
    # The import freezes torch.backends' flags (torch's test harness calls disable_global_flags):
    # they are unfrozen again, for the rest of the suite.
    backends = torch.backends.flags_frozen.__globals__  # the module's own namespace (it is wrapped)
    allowed = backends["__allow_nonbracketed_mutation_flag"]
    from torch.testing._internal import common_optimizers as module

    backends["__allow_nonbracketed_mutation_flag"] = allowed
    return module


def optimizer_info(torch_cls: type) -> Any:
    """optim_db's OptimizerInfo for ``torch_cls``."""
    return next(info for info in common_optimizers().optim_db if info.optim_cls is torch_cls)


def error_cases(torch_cls: type) -> list[Any]:
    """torch's ErrorOptimizerInputs for ``torch_cls`` on the CPU (float32)."""
    return optimizer_info(torch_cls).optim_error_inputs_func(device="cpu", dtype=torch.float32)


#: The flags that choose torch's implementation (torch's "global cliquey" flags).
IMPLEMENTATION_FLAGS = ("foreach", "differentiable", "fused")


def configurations(torch_cls: type, dtype: torch.dtype) -> list[tuple[str, dict[str, Any]]]:
    """(description, constructor keywords) of every configuration torch's tests run on the CPU:
    each of ``optim_inputs_func``'s, alone and with each implementation flag torch supports
    for this optimizer on the CPU set to True (one at a time: they exclude each other)."""
    info = optimizer_info(torch_cls)
    flags = [flag for flag in IMPLEMENTATION_FLAGS
             if flag in info.supported_impls and (flag != "fused" or "cpu" in info.supports_fused_on)]
    found = []
    for config in info.optim_inputs_func(device="cpu", dtype=dtype):
        if config.kwargs.get("capturable"):
            continue  # CUDA graphs: torch's CPU list has none, and raises for CPU tensors
        found.append((config.desc, dict(config.kwargs)))
        found += [(f"{config.desc} & {flag}", {**config.kwargs, flag: True}) for flag in flags]
    return found


def forloop(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The configuration on torch's for-loop implementation: torch's own tests hold its foreach,
    fused and differentiable variants to the for-loop one (within their tolerances; its foreach
    ASGD, for one, rounds its step sizes differently)."""
    return {key: value for key, value in kwargs.items() if key not in IMPLEMENTATION_FLAGS}


def at_step(case: Any) -> bool:
    """Whether torch expects the case's error from the first ``step()`` (else from construction)."""
    return case.error_on == common_optimizers().OptimizerErrorEnum.STEP_ERROR


def outcome(cls: type, case: Any) -> tuple[str, type | None]:
    """(where, type): what constructing ``cls`` as ``case`` says (and, for a step error, then
    stepping it) raised first, or the warning of the case's kind it gave; (where, None) if nothing."""
    given = case.optimizer_error_input
    where = "construction"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            optimizer = cls(given.params, **given.kwargs)
            if at_step(case):
                where = "step"
                optimizer.step()
        except Exception as error:  # noqa: BLE001 - the type is the answer
            return where, type(error)
    if issubclass(case.error_type, Warning):
        return where, next((w.category for w in caught if issubclass(w.category, case.error_type)), None)
    return where, None


def mismatches(cls: type, torch_cls: type) -> dict[str, str]:
    """Every error case of ``torch_cls`` that ``cls`` does not answer with torch's error type,
    at torch's moment (construction or step): the case's description -> what differs. Empty
    when all agree."""
    found = {}
    cases = error_cases(torch_cls)
    assert cases, f"optim_db has no error cases for {torch_cls.__name__}"
    for case in cases:
        expected_where = "step" if at_step(case) else "construction"
        where, got = outcome(cls, case)
        if got is None or not issubclass(got, case.error_type) or where != expected_where:
            desc = case.optimizer_error_input.desc
            found[desc] = (f"torch raises {case.error_type.__name__} at {expected_where}, {cls.__name__} gave "
                           f"{getattr(got, '__name__', 'nothing')} at {where}")
    return found


def scheduled_run(cls: type, start: list[Tensor], hp: dict[str, Any], lrs: list[float], sequence: Grads) -> Run:
    """``cls(copies of start, lr=lrs[0], **hp)`` stepped through ``sequence``, with ``lrs[t]``
    written into every group's ``"lr"`` after step ``t``."""
    params = clone_params(start)
    run = Run(cls(params, lr=lrs[0], **hp), params)
    track = run._after_step

    def after_step(t: int) -> None:
        track(t)
        for group in run.optimizer.param_groups:
            group["lr"] = lrs[t % len(lrs)]

    run_steps(run.optimizer, params, sequence, after_step=after_step)
    return run
