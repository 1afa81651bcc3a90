"""Dispatch: check every group of a step, sort its parameters by path, run them.

A step either happens whole or not at all: every group is checked (and planned) before any
group runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from optimlab.core import ELEMENTWISE
from optimlab.engine import compiled, fused, segments, shards, triton
from optimlab.engine.eager import initialize, run_eager
from optimlab.engine.paths import get_path, path_counts
from optimlab.engine.validate import check
from optimlab.engine.work import GroupStep, subset, transform_hyperparams


def run(works: Sequence[GroupStep]) -> None:
    """Check every group, then step every group on the chosen path.

    While ``torch.compile`` records the step (a compiled training step that calls
    ``opt.step()``), the math runs as torch operations that dynamo records into the caller's
    graph (:func:`~optimlab.engine.eager.run_eager` with ``traced=True``): inductor then fuses
    it as it fuses the model, and no kernel of optimlab's own (a ctypes call) breaks the graph.
    """
    if torch.compiler.is_compiling():
        for work in works:
            run_eager(work, traced=True)
        return
    if get_path() == "eager":
        for work in works:
            check(work)
        for work in works:
            run_eager(work)
        return
    plans = [plan(work) for work in works]
    for run_plan in plans:
        run_plan()


def plan(work: GroupStep) -> Callable[[], None]:
    """Check one group and sort its parameters by path; returns the function that steps them.

    Checks cost per parameter on every step, so the common case is checked by what the fused
    path needs anyway (:func:`optimlab.engine.fused.prepare`); only when something looks unusual
    does the full :func:`check` run, to raise its clear error or to confirm that the parameter
    merely belongs to another path.
    """
    path = get_path()
    # Norms, matrices, whole groups: torch ops on the true shapes, but the elementwise parts of a
    # chain that mixes kinds on the kernel (segments); a step recorded by autograd
    # (differentiable=True): torch ops, which autograd records.
    if work.transform.kind != ELEMENTWISE or work.hyperparams.get("differentiable"):
        check(work)
        in_segments = segments.plan(work) if path != "compiled" else None
        return in_segments or (lambda: run_eager(work))
    triton_chosen = triton.chosen(path)
    if triton_chosen:
        steady = triton.steady_step(work)  # a group whose last step was one Triton launch
        if steady is not None:
            return steady
    if path in ("auto", "fused"):
        batches, fresh, other = fused.prepare(work)
    else:
        batches, fresh, other = {}, [], list(range(len(work.params)))
    if other:
        if shards.has_shards(work):  # DTensor parameters are "other" to the checks above
            return plan_shards(work)
        check(work)
    on_triton: list[int] = []
    if other and triton_chosen and triton.available():
        on_triton, other = triton.split(work.params, work.grads, work.states, other, any_device=path == "triton")
    to_compile: list[int] = []
    if other and path in ("auto", "compiled"):
        to_compile, other = compiled.split(work.params, work.grads, work.states, other, any_device=path == "compiled")
    return lambda: step(work, path, batches, fresh, on_triton, to_compile, other)


def plan_shards(work: GroupStep) -> Callable[[], None]:
    """A group of DTensor parameters, stepped as the group of its local shards (the same
    elementwise math; :mod:`optimlab.engine.shards`), or on the eager path if it cannot be."""
    local = shards.local_work(work)
    if local is None:
        check(work)
        return lambda: run_eager(work)
    check(work)
    run_local = plan(local)

    def run_shards() -> None:
        run_local()
        shards.keep_new_state(local, work)

    return run_shards


def step(work: GroupStep, path: str, batches: dict, fresh: list[int], on_triton: list[int], to_compile: list[int],
         eager: list[int]) -> None:
    """Run a planned group: fresh parameters get state and join the kernel batches, then each
    path takes its parameters, and what a path gives back goes to the eager path."""
    hp = transform_hyperparams(work)
    eager = list(eager)
    if fresh:
        for i in fresh:
            initialize(work, i)
        eager += fused.add_fresh(work, batches, fresh)
    if batches:
        eager += fused.run_group(work, hp, batches)
    if on_triton:
        left = triton.run(work, on_triton, hp, initialize)
        path_counts["triton"] += len(on_triton) - len(left)
        if left and path == "auto":  # no kernel for this transform or signature: torch.compile
            more, left = compiled.split(work.params, work.grads, work.states, left, any_device=False)
            to_compile = sorted(to_compile + more)
        eager += left
    if to_compile:
        left = compiled.run(work, to_compile, hp, initialize)
        path_counts["compiled"] += len(to_compile) - len(left)
        eager += left
    if eager:
        run_eager(work if len(eager) == len(work.params) else subset(work, sorted(eager)))
