"""Parity of optimlab.schedules with torch.optim.lr_scheduler, for >= 1000 steps, in float64.

Each closed form is compared with torch's scheduler stepped one step at a time (what users get)
and, where torch has one, with torch's own closed form (``_get_closed_form_lr``). Where torch's
recursive update (each lr computed from the previous one) drifts from its closed form, the
closed form is the reference (<= 1e-12 relative) and the drift is measured and bounded.
Arguments are drawn by hypothesis with a fixed (derandomized) draw; the worst errors are
printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as L

from optimlab import schedules as S

#: Cases per comparison: a fixed, derandomized draw. SCHEDULE_CASES=200 runs a wider sweep.
CASES = settings(derandomize=True, database=None, deadline=None,
                 max_examples=int(os.environ.get("SCHEDULE_CASES", "10")), suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-12
#: torch's recursive forms gain about one rounding per step (measured: <= 5e-14 over 2000 steps).
RECURSIVE_TOL = 1e-11

WORST: dict[str, float] = {}


def rel_error(ours: list[float], theirs: list[float]) -> float:
    """max over the steps of ``|a - b| / |b|``.

    A reference value within 1e-12 of zero, relative to the schedule's largest value, is a zero
    that the reference formula left a rounding residue on (torch's LinearLR ending at 0 gives
    3.7e-17, not 0): there the error is taken relative to that largest value instead.
    """
    assert len(ours) == len(theirs)
    scale = max(abs(b) for b in theirs)
    worst = 0.0
    for a, b in zip(ours, theirs):
        if a != b:
            worst = max(worst, abs(a - b) / (abs(b) if abs(b) >= 1e-12 * scale else scale))
    return worst


def record(key: str, error: float) -> float:
    WORST[key] = max(WORST.get(key, 0.0), error)
    return error


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest):
    """Print the worst errors measured once the module's tests have run."""
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if not WORST or capture is None:
        return
    with capture.global_and_fixture_disabled():
        print("\noptimlab.schedules vs torch.optim.lr_scheduler: worst relative error (float64)")
        for key in sorted(WORST):
            print(f"  {key:<58} {WORST[key]:.2e}")


def run_torch(make: Callable[[torch.optim.Optimizer], object], steps: int, lr: float = 0.1, momentum: float = 0.9,
              keys: tuple[str, ...] = ("lr",)) -> dict[str, list[float]]:
    """Values of ``keys`` in the group at steps 0 .. steps - 1 of torch's scheduler, stepped as
    users step it (optimizer.step(), then scheduler.step())."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make(opt)
    out: dict[str, list[float]] = {k: [] for k in keys}
    for t in range(steps):
        for k in keys:
            out[k].append(float(opt.param_groups[0][k]))
        if t < steps - 1:
            opt.step()
            sched.step()
    return out


def closed_torch(make: Callable[[torch.optim.Optimizer], object], steps: int, lr: float = 0.1) -> list[float]:
    """torch's closed form (``_get_closed_form_lr``) at steps 0 .. steps - 1."""
    p = torch.zeros(1, requires_grad=True)
    sched = make(torch.optim.SGD([p], lr=lr))
    values = []
    for t in range(steps):
        sched.last_epoch = t
        values.append(float(sched._get_closed_form_lr()[0]))
    return values


def check(name: str, schedule: S.Schedule, make, steps: int, lr: float, closed: bool, recursive_drifts: bool) -> None:
    ours = S.trace(schedule, steps)
    stepped = run_torch(make, steps, lr)["lr"]
    if closed:
        assert record(f"{name} vs torch closed form", rel_error(ours, closed_torch(make, steps, lr))) <= TOL
    bound = RECURSIVE_TOL if recursive_drifts else TOL
    label = "torch stepped (recursive)" if recursive_drifts else "torch stepped"
    assert record(f"{name} vs {label}", rel_error(ours, stepped)) <= bound


lrs = st.floats(1e-4, 1.0)


@CASES
@given(lr=lrs, step_size=st.integers(1, 300), gamma=st.floats(0.8, 1.0), steps=st.integers(1000, 1500))
def test_step_decay_matches_StepLR(lr, step_size, gamma, steps):
    check("step_decay / StepLR", S.step_decay(lr, step_size, gamma),
          lambda o: L.StepLR(o, step_size, gamma), steps, lr, closed=True, recursive_drifts=True)


@CASES
@given(lr=lrs, milestones=st.lists(st.integers(0, 1300), min_size=1, max_size=6, unique=True).map(sorted),
       gamma=st.floats(0.1, 1.0))
def test_multistep_matches_MultiStepLR(lr, milestones, gamma):
    check("multistep / MultiStepLR", S.multistep(lr, milestones, gamma),
          lambda o: L.MultiStepLR(o, milestones, gamma), 1400, lr, closed=True, recursive_drifts=True)


@CASES
@given(lr=lrs, gamma=st.floats(0.98, 1.002), steps=st.integers(1000, 1500))
def test_exponential_matches_ExponentialLR(lr, gamma, steps):
    check("exponential / ExponentialLR", S.exponential(lr, gamma),
          lambda o: L.ExponentialLR(o, gamma), steps, lr, closed=True, recursive_drifts=True)


@CASES
@given(lr=lrs, t_max=st.integers(1000, 2000), floor=st.one_of(st.just(0.0), st.floats(0.0, 0.5)))
def test_cosine_matches_CosineAnnealingLR(lr, t_max, floor):
    # up to T_max: after it torch's cosine climbs back up, optimlab's holds the floor
    check("cosine / CosineAnnealingLR", S.cosine(lr, t_max, floor * lr),
          lambda o: L.CosineAnnealingLR(o, t_max, floor * lr), t_max + 1, lr, closed=True, recursive_drifts=True)


@CASES
@given(lr=lrs, t0=st.integers(1, 300), mult=st.integers(1, 3), floor=st.floats(0.0, 0.5),
       steps=st.integers(1000, 1500))
def test_warm_restarts_match_CosineAnnealingWarmRestarts(lr, t0, mult, floor, steps):
    check("warm_restarts / CosineAnnealingWarmRestarts", S.warm_restarts(lr, t0, mult, floor * lr),
          lambda o: L.CosineAnnealingWarmRestarts(o, t0, mult, floor * lr), steps, lr, closed=False,
          recursive_drifts=False)


@CASES
@given(lr=lrs, start=st.floats(0.01, 1.0), end=st.one_of(st.just(0.0), st.floats(0.01, 1.0)),
       total=st.integers(1, 1500))
def test_linear_matches_LinearLR(lr, start, end, total):
    # optimlab's ramp ends at exactly lr * end; torch's lr * (start + (end - start) * 1) is off by
    # up to an ulp of lr * start, a large relative error when end << start: end is 0 or >= 0.01
    check("linear / LinearLR", S.linear(lr * start, lr * end, total),
          lambda o: L.LinearLR(o, start, end, total), 1500, lr, closed=True, recursive_drifts=True)


@CASES
@given(lr=lrs, total=st.integers(1, 1500), power=st.floats(0.3, 4.0))
def test_polynomial_matches_PolynomialLR(lr, total, power):
    check("polynomial / PolynomialLR", S.polynomial(lr, total, power),
          lambda o: L.PolynomialLR(o, total, power), 1500, lr, closed=True, recursive_drifts=True)


@CASES
@given(lr=lrs, factor=st.floats(0.05, 1.0), total=st.integers(1, 1200))
def test_join_of_constants_matches_ConstantLR(lr, factor, total):
    check("join(constants) / ConstantLR", S.join([S.constant(lr * factor), S.constant(lr)], [total]),
          lambda o: L.ConstantLR(o, factor, total), 1300, lr, closed=True, recursive_drifts=True)


@CASES
@given(lr=lrs, warmup=st.integers(1, 300), start=st.floats(0.01, 1.0), gamma=st.floats(0.99, 1.0))
def test_join_matches_SequentialLR(lr, warmup, start, gamma):
    def make(o):
        return L.SequentialLR(o, [L.LinearLR(o, start, 1.0, warmup), L.ExponentialLR(o, gamma)], [warmup])

    check("join / SequentialLR(LinearLR, ExponentialLR)",
          S.join([S.linear(lr * start, lr, warmup), S.exponential(lr, gamma)], [warmup]),
          make, 1200, lr, closed=False, recursive_drifts=True)


@CASES
@given(lr=lrs, total=st.integers(1000, 2000), pct=st.floats(0.05, 0.45), anneal=st.sampled_from(["cos", "linear"]),
       div=st.floats(2.0, 100.0), final_div=st.floats(10.0, 1e5), three_phase=st.booleans(),
       base_m=st.floats(0.5, 0.85), max_m=st.floats(0.86, 0.99))
def test_one_cycle_matches_OneCycleLR(lr, total, pct, anneal, div, final_div, three_phase, base_m, max_m):
    def make(o):
        return L.OneCycleLR(o, lr, total_steps=total, pct_start=pct, anneal_strategy=anneal, div_factor=div,
                            final_div_factor=final_div, three_phase=three_phase, base_momentum=base_m,
                            max_momentum=max_m)

    got = run_torch(make, total, lr, keys=("lr", "momentum"))
    lr_schedule = S.one_cycle(lr, total, pct, anneal, div, final_div, three_phase)
    momentum = S.one_cycle(base_m, total, pct, anneal, three_phase=three_phase, start=max_m, end=max_m)
    assert record("one_cycle / OneCycleLR (lr)", rel_error(S.trace(lr_schedule, total), got["lr"])) <= TOL
    assert record("one_cycle / OneCycleLR (momentum)", rel_error(S.trace(momentum, total), got["momentum"])) <= TOL


@CASES
@given(base=st.floats(1e-4, 0.1), height=st.floats(1.01, 100.0), up=st.integers(1, 400),
       down=st.one_of(st.none(), st.integers(1, 400)), mode=st.sampled_from(S.cycles.CYCLIC_MODES),
       gamma=st.floats(0.995, 1.0), base_m=st.floats(0.5, 0.85), max_m=st.floats(0.86, 0.99))
def test_cyclic_matches_CyclicLR(base, height, up, down, mode, gamma, base_m, max_m):
    gamma = gamma if mode == "exp_range" else 1.0

    def make(o):
        return L.CyclicLR(o, base, base * height, up, down, mode, gamma, base_momentum=base_m, max_momentum=max_m)

    got = run_torch(make, 1500, keys=("lr", "momentum"))
    lr_schedule = S.cyclic(base, base * height, up, down, mode, gamma)
    momentum = S.cyclic(max_m, base_m, up, down, mode, gamma)
    assert record("cyclic / CyclicLR (lr)", rel_error(S.trace(lr_schedule, 1500), got["lr"])) <= TOL
    assert record("cyclic / CyclicLR (momentum)", rel_error(S.trace(momentum, 1500), got["momentum"])) <= TOL


# -- reduce on plateau ---------------------------------------------------------------------------
#: Reductions torch made in each generated plateau case.
REDUCTIONS: list[int] = []


def metric_sequence(seed: int, steps: int, quantum: float) -> list[float]:
    """A noisy falling loss that flattens out, with stretches of exact ties (rounded to ``quantum``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    loss = 1.0 + 5.0 * np.exp(-t / rng.uniform(50, 400)) + rng.normal(0, rng.uniform(0.001, 0.1), steps)
    if quantum:
        loss = np.round(loss / quantum) * quantum
    return [float(x) for x in loss]


@CASES
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["min", "max"]), factor=st.floats(0.05, 0.95),
       patience=st.integers(0, 12), threshold=st.floats(0.0, 0.05), threshold_mode=st.sampled_from(["rel", "abs"]),
       cooldown=st.integers(0, 6), min_lrs=st.tuples(st.floats(0.0, 1e-3), st.floats(0.0, 1e-2)),
       eps=st.sampled_from([1e-8, 0.0, 1e-4]), quantum=st.sampled_from([0.0, 0.01]))
def test_reduce_on_plateau_matches_ReduceLROnPlateau(seed, mode, factor, patience, threshold, threshold_mode,
                                                      cooldown, min_lrs, eps, quantum):
    metrics = metric_sequence(seed, 1000, quantum)
    if mode == "max":
        metrics = [-m for m in metrics]
    lrs = (0.1, 0.03)
    kwargs = dict(mode=mode, factor=factor, patience=patience, threshold=threshold, threshold_mode=threshold_mode,
                  cooldown=cooldown, eps=eps)
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    theirs = torch.optim.SGD([{"params": [a], "lr": lrs[0]}, {"params": [b], "lr": lrs[1]}])
    torch_sched = L.ReduceLROnPlateau(theirs, min_lr=list(min_lrs), **kwargs)
    c, d = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    ours = torch.optim.SGD([{"params": [c], "lr": 1.0}, {"params": [d], "lr": 1.0}])
    plateaus = [S.reduce_on_plateau(lr, min_value=m, **kwargs) for lr, m in zip(lrs, min_lrs)]
    sched = S.Scheduler(ours, {"lr": plateaus})
    got: list[list[float]] = [[], []]
    want: list[list[float]] = [[], []]
    for m in metrics:
        torch_sched.step(m)
        sched.step(m)
        for i in range(2):
            got[i].append(ours.param_groups[i]["lr"])
            want[i].append(theirs.param_groups[i]["lr"])
    reductions = sum(x != y for x, y in zip(want[0], want[0][1:]))
    for i in range(2):
        assert record("reduce_on_plateau / ReduceLROnPlateau", rel_error(got[i], want[i])) == 0.0
    assert sched.get_last_lr() == torch_sched.get_last_lr()
    assert plateaus[0].state.num_bad_epochs == torch_sched.num_bad_epochs
    assert plateaus[0].state.cooldown_counter == torch_sched.cooldown_counter
    assert plateaus[0].state.best == torch_sched.best
    REDUCTIONS.append(reductions)


def test_plateau_cases_reduce():
    """The generated metric sequences make torch reduce, several times in most cases (so the
    comparison above is not vacuous)."""
    REDUCTIONS.clear()
    test_reduce_on_plateau_matches_ReduceLROnPlateau()
    assert sum(r > 0 for r in REDUCTIONS) >= len(REDUCTIONS) // 2
    assert max(REDUCTIONS) >= 3
