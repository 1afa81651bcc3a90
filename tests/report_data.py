"""A results store filled with a made-up sweep whose outcome is known in advance (for report tests).

No training: each run's validation accuracy follows ``1 - 0.9 exp(-step / tau)``, evaluated every
100 steps, with ``tau`` set per (optimizer, lr) below. The run stops at the first evaluation that
reaches the target (0.97 on mlp-mnist, so at ``ceil(tau ln 30 / 100) * 100`` steps), at the
budget, or diverges (no curve after step 100). Seeds shift ``tau`` by a few percent, so medians
and bands are real but the ranking is fixed:

* adam: fastest (best lr 0.001, tau 300: the target at step 1100 for seed 0);
* momentum: within 20% of adam (tau 340 at lr 0.03);
* sgd: slower (tau 500 at lr 0.1) and diverges at lr 1;
* adagrad: never reaches the target (accuracy saturates at 0.95).
"""

from __future__ import annotations

import math

from optimlab.lab.running.runs import CurvePoint, RunConfig, RunResult
from optimlab.lab.running.store import Store
from optimlab.lab.training.loop import StopReason

PROBLEM = "mlp-mnist"
TARGET = 0.97
BUDGET = 2000
EVERY = 100
SWEEP = "synthetic"

#: optimizer -> {lr: tau in steps (None: diverges)}; the middle lr is the best one.
TAUS = {
    "adam": {1e-4: 900, 1e-3: 300, 1e-2: 420},
    "momentum": {3e-3: 800, 3e-2: 340, 3e-1: 500},
    "sgd": {1e-2: 1500, 1e-1: 500, 1.0: None},
    "adagrad": {1e-3: 1200, 1e-2: 500, 1e-1: 700},
}
BEST = {"adam": 1e-3, "momentum": 3e-2, "sgd": 1e-1, "adagrad": 1e-2}
CEILING = {"adagrad": 0.95}  # adagrad's accuracy never passes 0.95
SECONDS_PER_STEP = {"adam": 0.0012, "momentum": 0.0010, "sgd": 0.0009, "adagrad": 0.0011}


def accuracy(optimizer: str, tau: float, step: int) -> float:
    return min(1 - 0.9 * math.exp(-step / tau), CEILING.get(optimizer, 1.0))


def result(optimizer: str, lr: float, seed: int) -> RunResult:
    base = TAUS[optimizer][lr]
    per_step = SECONDS_PER_STEP[optimizer]
    if base is None:  # diverged after the first evaluation
        curve = [CurvePoint(0, 0.0, None, 2.3, 0.1), CurvePoint(100, 100 * per_step, 5.0, 40.0, 0.1)]
        return RunResult(StopReason.DIVERGED, 117, 117 * per_step, None, None, 0.1, 0.1, None, None, True,
                         "accuracy", True, TARGET, "the loss exploded", curve)
    tau = base * (1 + 0.04 * seed)  # seeds 0, 1, 2: 0%, 4%, 8% slower
    curve, reached = [], None
    for step in range(0, BUDGET + 1, EVERY):
        acc = accuracy(optimizer, tau, step)
        loss = -math.log(max(acc, 1e-9))
        curve.append(CurvePoint(step, step * per_step, None if step == 0 else 1.2 * loss, loss, acc))
        if acc >= TARGET:
            reached = step
            break
    steps = curve[-1].step
    values = [p.valid_metric for p in curve]
    return RunResult(StopReason.TARGET if reached is not None else StopReason.MAX_STEPS, steps, steps * per_step,
                     reached, None if reached is None else reached * per_step, max(values), values[-1],
                     values[-1] - 0.002, curve[-1].valid_loss, False, "accuracy", True, TARGET, "", curve)


def expected_steps(optimizer: str) -> float | None:
    """The median over seeds 0, 1, 2 of the steps to the target at the best lr (seed 1's)."""
    tau = TAUS[optimizer][BEST[optimizer]] * 1.04
    if CEILING.get(optimizer, 1.0) < TARGET:
        return None
    return math.ceil(tau * math.log(0.9 / (1 - TARGET)) / EVERY) * EVERY


def fill(store: Store, sweep: str = SWEEP) -> Store:
    """Store the grid (seed 0 at every lr) and the best phase (seeds 1, 2 at the best lr)."""
    for optimizer, taus in TAUS.items():
        for lr in taus:
            config = RunConfig(PROBLEM, optimizer, lr, 0, 128, BUDGET)
            store.save(config, result(optimizer, lr, 0), sweep=sweep, phase="grid")
        for seed in (1, 2):
            config = RunConfig(PROBLEM, optimizer, BEST[optimizer], seed, 128, BUDGET)
            store.save(config, result(optimizer, BEST[optimizer], seed), sweep=sweep, phase="best")
    return store
