"""Properties of the schedules (closed form, monotone, continuous at joins, periodic restarts,
ranges), their immutability and pickling, and clear errors for bad arguments."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimlab import schedules as S

CASES = settings(derandomize=True, database=None, deadline=None, max_examples=25,
                 suppress_health_check=[HealthCheck.too_slow])

values = st.floats(-10.0, 10.0)
positive = st.floats(1e-3, 10.0)
counts = st.integers(1, 500)


def examples() -> list[S.Schedule]:
    """One of each kind, with ordinary arguments."""
    return [
        S.constant(0.1), S.step_decay(0.1, 30, 0.5), S.multistep(0.1, [30, 80], 0.1), S.exponential(0.1, 0.99),
        S.cosine(0.1, 100, floor=0.01), S.warm_restarts(0.1, 10, 2, 0.001), S.linear(0.0, 0.1, 50),
        S.linear_warmup(0.1, 20), S.exponential_warmup(0.1, 20, 1e-4), S.polynomial(0.1, 100, 2.0),
        S.inverse_sqrt(0.1, 50), S.one_cycle(0.1, 100), S.one_cycle(0.1, 100, anneal="linear", three_phase=True),
        S.cyclic(0.01, 0.1, 10), S.cyclic(0.01, 0.1, 10, 5, "triangular2"), S.cyclic(0.01, 0.1, 10, mode="exp_range",
                                                                                  gamma=0.99),
        S.wsd(0.1, 200, 20, 40, shape="sqrt"), S.sequence(S.linear_warmup(0.1, 10), S.cosine(0.1, 90)),
        S.ramp(1.0, 0.0, 10, "sqrt"), 0.5 * S.cosine(0.1, 100), S.reduce_on_plateau(0.1, patience=2),
    ]


ALL = examples()


def ids(s: S.Schedule) -> str:
    return repr(s)[:40]


# -- closed form, purity, representation -----------------------------------------------------------
@pytest.mark.parametrize("schedule", ALL, ids=ids)
def test_values_do_not_depend_on_the_order_asked(schedule):
    steps = list(range(300))
    forward = [schedule(t) for t in steps]
    shuffled = steps[:]
    random.Random(0).shuffle(shuffled)
    assert {t: schedule(t) for t in shuffled} == dict(zip(steps, forward))
    assert all(isinstance(v, float) for v in forward)


@pytest.mark.parametrize("schedule", ALL, ids=ids)
def test_immutable_picklable_and_repr_rebuilds(schedule):
    field = dataclasses.fields(schedule)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(schedule, field, 1.0)
    clone = pickle.loads(pickle.dumps(schedule))
    assert [clone(t) for t in range(200)] == [schedule(t) for t in range(200)]
    rebuilt = eval(repr(schedule), vars(S))  # noqa: S307 - the repr reads as a call to the public function
    assert repr(rebuilt) == repr(schedule)
    assert [rebuilt(t) for t in range(200)] == [schedule(t) for t in range(200)]


@pytest.mark.parametrize("schedule", [s for s in ALL if not s.stateful], ids=ids)
def test_equal_arguments_make_equal_schedules(schedule):
    assert copy.deepcopy(schedule) == schedule
    assert hash(copy.deepcopy(schedule)) == hash(schedule)


@pytest.mark.parametrize("schedule", ALL, ids=ids)
def test_bounds_hold_every_value(schedule):
    b = schedule.bounds()
    if b is None:
        return
    trace = S.trace(schedule, 3 * schedule.span(), metrics=[1.0] * 3 * schedule.span())
    assert b[0] <= min(trace) + 1e-15 and max(trace) <= b[1] + 1e-15


@CASES
@given(kind=st.sampled_from(["step", "multi", "exp", "linear", "cos", "poly", "exp_warmup", "sqrt", "inverse_sqrt"]),
       a=values, b=values, n=counts, gamma=st.floats(0.0, 1.0), power=st.floats(0.1, 5.0), window=counts)
def test_monotone_schedules_are_monotone_with_exact_bounds(kind, a, b, n, gamma, power, window):
    schedule = {
        "step": lambda: S.step_decay(a, max(1, n // 7), gamma),
        "multi": lambda: S.multistep(a, sorted({n, n // 2 + 1, 2 * n}), gamma),
        "exp": lambda: S.exponential(a, gamma),
        "linear": lambda: S.linear(a, b, n),
        "cos": lambda: S.cosine(a, n, b),
        "poly": lambda: S.polynomial(a, n, power, b),
        "exp_warmup": lambda: S.exponential_warmup(abs(a) + 1e-3, n, abs(b) + 1e-3),
        "sqrt": lambda: S.ramp(a, b, n, "sqrt"),
        "inverse_sqrt": lambda: S.inverse_sqrt(a, n),
    }[kind]()
    trace = S.trace(schedule, 2 * n + 10)
    steps = list(zip(trace, trace[1:]))
    assert all(x >= y for x, y in steps) or all(x <= y for x, y in steps)
    low, high = schedule.bounds(window)
    assert (low, high) == (min(trace[:window]), max(trace[:window])) or window > len(trace)


@CASES
@given(peak=positive, warmup=counts, decay=counts, stable=st.integers(0, 500), floor=st.floats(0.0, 1.0),
       shape=st.sampled_from(["linear", "cos", "sqrt"]))
def test_wsd_is_continuous_at_its_joins(peak, warmup, decay, stable, floor, shape):
    floor *= peak
    steps = warmup + stable + decay
    s = S.wsd(peak, steps, warmup, decay, floor, shape)
    assert s(0) == 0.0 and s(warmup) == peak and s(warmup + stable) == peak and s(steps) == floor
    assert s(steps + 1000) == floor
    trace = S.trace(s, steps + 1)
    # no jump at a join is larger than the largest change between two steps inside a piece
    slope_up, slope_down = peak / warmup, (peak - floor) * {"linear": 1 / decay, "cos": math.pi / (2 * decay),
                                                            "sqrt": 1 / math.sqrt(decay)}[shape]
    jumps = [abs(y - x) for x, y in zip(trace, trace[1:])]
    assert max(jumps) <= max(slope_up, slope_down) * (1 + 1e-12) + 1e-15


@CASES
@given(peak=positive, warmup=counts)
def test_warmup_then_inverse_sqrt_is_vaswani_and_continuous(peak, warmup):
    s = S.sequence(S.linear_warmup(peak, warmup), (S.inverse_sqrt(peak, warmup)))
    assert s(warmup) == peak
    for t in (warmup, warmup + 1, 3 * warmup, 10 * warmup + 7):
        assert s(t) == pytest.approx(peak * math.sqrt(warmup / t), rel=1e-14)
    assert s(warmup - 1) == pytest.approx(peak * (warmup - 1) / warmup, rel=1e-14)


@CASES
@given(peak=positive, floor=st.floats(0.0, 1.0), period=st.integers(1, 50), mult=st.integers(1, 3))
def test_warm_restarts_restart_and_repeat(peak, floor, period, mult):
    floor *= peak
    s = S.warm_restarts(peak, period, mult, floor)
    for i in range(4):
        begin, length = s.period_start(i), period * mult**i
        assert s(begin) == pytest.approx(peak, rel=1e-15)  # a restart
        for j in range(length):
            # each period is the first one stretched by mult**i
            assert s(begin + j) == pytest.approx(S.cosine(peak, length, floor)(j), rel=1e-14, abs=1e-300)
        if length > 1:
            assert s(begin + length - 1) < s(begin + length)  # the drop before the restart
    if mult == 1:
        assert [s(t) for t in range(3 * period)] == [s(t + 5 * period) for t in range(3 * period)]


@CASES
@given(base=st.floats(0.0, 1.0), height=positive, up=st.integers(1, 50), down=st.integers(1, 50))
def test_cyclic_modes_share_the_triangle(base, height, up, down):
    tri = S.cyclic(base, base + height, up, down)
    tri2 = S.cyclic(base, base + height, up, down, "triangular2")
    total = up + down
    for t in range(4 * total):
        assert tri(t + total) == pytest.approx(tri(t), rel=1e-12)  # periodic
        cycle = t // total
        assert tri2(t) - base == pytest.approx((tri(t) - base) / 2**cycle, rel=1e-12, abs=1e-15)
    assert tri(up) == pytest.approx(base + height, rel=1e-15) and tri(0) == base and tri(total) == base


@CASES
@given(peak=positive, steps=st.integers(20, 2000), pct=st.floats(0.1, 0.45), three=st.booleans(),
       anneal=st.sampled_from(["cos", "linear"]))
def test_one_cycle_shape(peak, steps, pct, three, anneal):
    s = S.one_cycle(peak, steps, pct, anneal, three_phase=three)
    trace = S.trace(s, steps + 50)
    top = max(range(steps), key=trace.__getitem__)
    assert trace[0] == pytest.approx(peak / 25) and trace[steps - 1] == pytest.approx(peak / 25 / 1e4)
    assert trace[top] <= peak and abs(top - (pct * steps - 1)) <= 1
    assert all(x <= y for x, y in zip(trace[:top], trace[1 : top + 1]))
    assert trace[steps - 1 :] == [trace[steps - 1]] * 51  # holds its end value


@CASES
@given(start=positive, end=positive, n=counts)
def test_exponential_warmup_multiplies_by_a_constant_ratio(start, end, n):
    s = S.exponential_warmup(end, n, start)
    ratios = [s(t + 1) / s(t) for t in range(n)]
    assert ratios == pytest.approx([(end / start) ** (1 / n)] * n, rel=1e-12)
    assert s(n) == pytest.approx(end, rel=1e-14) and s(0) == start


def test_products_multiply_pointwise():
    a, b = S.linear_warmup(1.0, 10), S.cosine(0.1, 100)
    for t in range(150):
        assert (a * b)(t) == a(t) * b(t) and (2.0 * b)(t) == 2.0 * b(t) and (b * 2)(t) == b(t) * 2
    assert repr(2.0 * b) == "2.0 * cosine(peak=0.1, steps=100)"
    assert (a * b).bounds() == (0.0, 0.1)


def test_join_pieces_see_their_own_step():
    a, b, c = S.linear(0.0, 1.0, 10), S.constant(1.0), S.exponential(1.0, 0.5)
    s = S.join([a, b, c], [10, 25])
    assert [s(t) for t in range(10)] == [a(t) for t in range(10)]
    assert [s(t) for t in range(10, 25)] == [1.0] * 15
    assert [s(t) for t in range(25, 40)] == [c(t) for t in range(15)]
    assert S.sequence((a, 10), (b, 15), c) == s and S.sequence(a, (b, 15), c) == s
    assert s.bounds() == (0.0, 1.0) and s.bounds(5) == (0.0, a(4)) and S.join([c, a], [3]).bounds() == (0.0, 1.0)


def test_fractional_steps_interpolate():
    assert S.cosine(1.0, 10)(5.0) == S.cosine(1.0, 10)(5) == pytest.approx(0.5)
    assert S.linear(0.0, 1.0, 10)(2.5) == 0.25
    assert S.step_decay(1.0, 2, 0.5)(3.9) == 0.5


def test_reduce_on_plateau_is_stateful_and_checkpointable():
    s = S.reduce_on_plateau(1.0, factor=0.5, patience=1, cooldown=1, min_value=0.2)
    assert s.stateful and s(0) == s(1000) == 1.0
    metrics = [5, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3]
    seen = [s.step(m) for m in metrics[:6]]
    saved = s.state_dict()
    rest = [s.step(m) for m in metrics[6:]]
    assert seen == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5] and rest[-1] == 0.2 and s(0) == 0.2
    fresh = S.reduce_on_plateau(1.0, factor=0.5, patience=1, cooldown=1, min_value=0.2)
    fresh.load_state_dict(pickle.loads(pickle.dumps(saved)))
    assert [fresh.step(m) for m in metrics[6:]] == rest
    fresh.reset()
    assert fresh(0) == 1.0 and fresh.state.count == 0


# -- bad input ------------------------------------------------------------------------------------
BAD = [
    (lambda: S.cosine(0.1, 0), ValueError, "steps"),
    (lambda: S.cosine(0.1, -5), ValueError, "steps"),
    (lambda: S.cosine(0.1, 10.5), TypeError, "steps"),
    (lambda: S.cosine(float("nan"), 10), ValueError, "peak"),
    (lambda: S.cosine(0.1, 10, floor="0"), TypeError, "floor"),
    (lambda: S.constant(float("inf")), ValueError, "value"),
    (lambda: S.step_decay(0.1, 0), ValueError, "step_size"),
    (lambda: S.step_decay(0.1, 10, gamma=-0.5), ValueError, "gamma"),
    (lambda: S.multistep(0.1, []), ValueError, "milestones"),
    (lambda: S.multistep(0.1, [30, 10]), ValueError, "milestones"),
    (lambda: S.multistep(0.1, [-1, 10]), ValueError, "milestones[0]"),
    (lambda: S.multistep(0.1, 30), TypeError, "milestones"),
    (lambda: S.exponential(0.1, -1.0), ValueError, "gamma"),
    (lambda: S.warm_restarts(0.1, 0), ValueError, "period"),
    (lambda: S.warm_restarts(0.1, 10, 0), ValueError, "period_mult"),
    (lambda: S.warm_restarts(0.1, 10, 1.5), TypeError, "period_mult"),
    (lambda: S.linear(0.1, 0.0, 0), ValueError, "steps"),
    (lambda: S.linear_warmup(0.1, -1), ValueError, "steps"),
    (lambda: S.exponential_warmup(0.1, 10, 0.0), ValueError, "start"),
    (lambda: S.ramp(0.1, 0.0, 10, "cubic"), ValueError, "shape"),
    (lambda: S.polynomial(0.1, 10, power=0), ValueError, "power"),
    (lambda: S.polynomial(0.1, 0), ValueError, "steps"),
    (lambda: S.inverse_sqrt(0.1, 0), ValueError, "timescale"),
    (lambda: S.one_cycle(0.1, 100, pct_start=1.5), ValueError, "pct_start"),
    (lambda: S.one_cycle(0.1, 100, pct_start=0.005), ValueError, "pct_start"),
    (lambda: S.one_cycle(0.1, 100, pct_start=0.6, three_phase=True), ValueError, "pct_start"),
    (lambda: S.one_cycle(0.1, 100, anneal="cosine"), ValueError, "anneal"),
    (lambda: S.one_cycle(0.1, 1), ValueError, "steps"),
    (lambda: S.one_cycle(0.1, 100, div_factor=0), ValueError, "div_factor"),
    (lambda: S.cyclic(0.1, 1.0, 0), ValueError, "step_size_up"),
    (lambda: S.cyclic(0.1, 1.0, 10, -1), ValueError, "step_size_down"),
    (lambda: S.cyclic(0.1, 1.0, 10, mode="tri"), ValueError, "mode"),
    (lambda: S.cyclic(0.1, 1.0, 10, gamma=0.9), ValueError, "gamma"),
    (lambda: S.reduce_on_plateau(0.1, factor=1.0), ValueError, "factor"),
    (lambda: S.reduce_on_plateau(0.1, factor=1.5), ValueError, "factor"),
    (lambda: S.reduce_on_plateau(0.1, factor=-0.1), ValueError, "factor"),
    (lambda: S.reduce_on_plateau(0.1, mode="avg"), ValueError, "mode"),
    (lambda: S.reduce_on_plateau(0.1, patience=-1), ValueError, "patience"),
    (lambda: S.reduce_on_plateau(0.1, threshold=-0.1), ValueError, "threshold"),
    (lambda: S.reduce_on_plateau(0.1, threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda: S.reduce_on_plateau(0.1, cooldown=-1), ValueError, "cooldown"),
    (lambda: S.reduce_on_plateau(0.1, eps=-1e-8), ValueError, "eps"),
    (lambda: S.join([], []), ValueError, "schedules"),
    (lambda: S.join([S.constant(1), S.constant(2)], []), ValueError, "boundaries"),
    (lambda: S.join([S.constant(1), S.constant(2)], [0]), ValueError, "boundaries[0]"),
    (lambda: S.join([S.constant(1), S.constant(2), S.constant(3)], [10, 5]), ValueError, "boundaries"),
    (lambda: S.join([S.constant(1), 0.5], [10]), TypeError, "schedules[1]"),
    (lambda: S.join([S.constant(1), S.reduce_on_plateau(0.1)], [10]), ValueError, "schedules[1]"),
    (lambda: S.sequence(S.constant(1), S.cosine(1, 10)), ValueError, "pieces[0]"),
    (lambda: S.sequence((S.constant(1), 0), S.cosine(1, 10)), ValueError, "pieces[0]"),
    (lambda: S.sequence(), ValueError, "piece"),
    (lambda: S.wsd(1.0, 100, 60, 50), ValueError, "warmup + decay"),
    (lambda: S.wsd(1.0, 100, 10, 0), ValueError, "decay"),
    (lambda: S.wsd(1.0, 100, 10, 10, shape="exp"), ValueError, "shape"),
    (lambda: S.cosine(0.1, 10)(-1), ValueError, "step"),
    (lambda: S.cosine(0.1, 10)(float("nan")), ValueError, "step"),
    (lambda: S.cosine(0.1, 10)(True), TypeError, "step"),
    (lambda: S.cosine(0.1, 10)("3"), TypeError, "step"),
    (lambda: S.cosine(0.1, 10) * "2", TypeError, ""),
    (lambda: S.trace(S.reduce_on_plateau(0.1), 10), ValueError, "metrics"),
]


@pytest.mark.parametrize("make, error, argument", BAD, ids=[f"{i}-{a}" for i, (_, _, a) in enumerate(BAD)])
def test_bad_arguments_raise_naming_the_argument(make, error, argument):
    with pytest.raises(error) as info:
        make()
    assert argument in str(info.value)
