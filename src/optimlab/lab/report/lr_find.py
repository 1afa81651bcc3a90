"""The learning-rate range test (Smith 2017; popularised by fast.ai's ``lr_find``).

Train a fresh model for ``steps`` mini-batch steps while the learning rate grows exponentially
from ``lr_min`` to ``lr_max``: step ``i`` (from 0) uses

    lr_i = lr_min * (lr_max / lr_min) ** (i / (steps - 1)).

Plotting the training loss against ``lr_i`` (log axis) shows three regions: too small (the loss
barely moves), useful (the loss falls), too large (the loss turns up and blows up). The batch
losses are noisy, so the curve is smoothed by an exponential moving average with bias
correction:

    a_i = beta * a_{i-1} + (1 - beta) * loss_i,   smooth_i = a_i / (1 - beta ** (i + 1)).

``beta`` = 0.9 averages over ~10 steps, a third of a decade of lr at the default 200 steps
over 7 decades (fast.ai's 0.98 averages over ~50 steps: with 100 steps that lags the raw curve
by several decades and moves the minimum to the right).

The test ends at the first step whose smoothed loss exceeds ``stop_factor`` (4) times the best
smoothed loss so far. The training itself runs through the lab's one loop
(:func:`optimlab.lab.training.loop.train`), with a ``torch.optim.lr_scheduler.LambdaLR`` raising the lr
after every step; the loop has no hook to stop on a condition of ours, so it runs until the
step budget is spent or it stops on its own (a non-finite loss, or a batch loss over
``4 * stop_factor`` times the first one), and the curve is cut at the stop point afterwards.

Suggestion (documented choice): ``lr_min_loss / 10``, the learning rate at the minimum of the
smoothed loss divided by ten. At the minimum the lr is already at the edge of stability; one
order of magnitude below it trains fast and safely. This is robust to noise, unlike the point
of steepest descent (the most negative slope of the smoothed loss against log lr), which is
also reported and drawn for comparison.

References: L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017
(the "LR range test"); S. Gugger, "How Do You Find A Good Learning Rate" (2017), fast.ai.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optimlab.lab.report.style import save_figure
from optimlab.lab.training.data import Split
from optimlab.lab.training.loop import LossFn, Penalty, StopReason, train

#: Builds an optimizer for the parameters with the given learning rate.
MakeOptimizer = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]


@dataclass(frozen=True)
class RangeTest:
    """The result of a range test, cut at its stop point.

    ``lrs[i]`` is the learning rate of step ``i``, ``losses[i]`` the batch loss that step
    descended (measured before it), ``smoothed[i]`` its moving average.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    lr_min_loss: float  # lr at the minimum of the smoothed loss
    lr_steepest: float  # lr at the most negative slope d smoothed / d log10(lr), before the minimum
    suggested: float  # lr_min_loss / 10
    stopped: str  # why the test ended: "loss > 4x best", "diverged", "max lr reached"

    @property
    def steps(self) -> int:
        return len(self.lrs)


def exponential_lrs(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """The range test's schedule: ``steps`` learning rates log-spaced from ``lr_min`` to ``lr_max``."""
    return lr_min * (lr_max / lr_min) ** (np.arange(steps) / (steps - 1))


def smooth(losses: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average of ``losses`` (see the module's docstring)."""
    out = np.empty(len(losses))
    average = 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out[i] = average / (1 - beta ** (i + 1))
    return out


def check_args(lr_min: float, lr_max: float, steps: int, beta: float, stop_factor: float) -> None:
    if not (isinstance(lr_min, (int, float)) and 0 < lr_min < math.inf):
        raise ValueError(f"lr_find: lr_min must be a finite number > 0, got {lr_min!r}")
    if not (isinstance(lr_max, (int, float)) and lr_min < lr_max < math.inf):
        raise ValueError(f"lr_find: lr_max must be a finite number > lr_min = {lr_min!r}, got {lr_max!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"lr_find: steps must be an int >= 2, got {steps!r}")
    if not 0 <= beta < 1:
        raise ValueError(f"lr_find: beta must be in [0, 1), got {beta!r}")
    if not stop_factor > 1:
        raise ValueError(f"lr_find: stop_factor must be > 1, got {stop_factor!r}")


def range_test(model: nn.Module, loss_fn: LossFn, make_optimizer: MakeOptimizer, data: Split, *,
               lr_min: float = 1e-6, lr_max: float = 10.0, steps: int = 200, batch_size: int | None = 128,
               seed: int = 0, beta: float = 0.9, stop_factor: float = 4.0, penalty: Penalty | None = None,
               progress: bool | None = False, params: Iterable[Any] | None = None, hooks: Sequence[Any] = (),
               accumulate: int = 1, autocast: torch.dtype | None = None) -> RangeTest:
    """Run the range test on ``model`` (trained in place) and return the curve and the suggestion.

    ``penalty`` is the problem's term added to every batch loss (see :func:`optimlab.lab.training.loop.train`).
    A fine-tuning problem's recipe comes along: ``params``, its param groups at ``lr_min`` (e.g.
    the head at 10x the body's lr; every group's lr is swept by the same factor, so the lrs
    reported are the body's, as in ``compare``; None: every parameter of ``model``), the loop
    ``hooks`` (clipping), ``accumulate`` and ``autocast``.
    """
    check_args(lr_min, lr_max, steps, beta, stop_factor)
    lrs = exponential_lrs(lr_min, lr_max, steps)
    optimizer = make_optimizer(list(model.parameters()) if params is None else params, lr_min)
    ratio = lr_max / lr_min
    # LambdaLR sets lr = lr_min * factor(k) after the k-th scheduler step, so step k (from 0) runs at lrs[k].
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: ratio ** (min(k, steps - 1) / (steps - 1)))
    # explode: a raw batch loss 4 x stop_factor times the first one is far past the cut; the loop
    # stops there instead of training on at ever larger learning rates.
    result = train(model, loss_fn, optimizer, data, batch_size=batch_size, steps=steps, seed=seed,
                   scheduler=scheduler, explode=4 * stop_factor, penalty=penalty, progress=progress,
                   hooks=hooks, accumulate=accumulate, autocast=autocast)
    losses = [r.loss for r in result.records]
    stopped = "max lr reached"
    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) < len(losses) or result.stop_reason is StopReason.DIVERGED:
        stopped = "diverged"
    losses = finite
    smoothed = smooth(losses, beta)
    best = math.inf
    for i, value in enumerate(smoothed):
        if value > stop_factor * best:
            losses, smoothed = losses[:i + 1], smoothed[:i + 1]
            stopped = f"loss > {stop_factor:g}x best"
            break
        best = min(best, value)
    if len(losses) < 2:
        raise RuntimeError(f"lr_find: the loss was non-finite from the first steps (lr_min = {lr_min:g}); "
                           "lower lr_min")
    lrs = lrs[:len(losses)]
    lowest = int(np.argmin(smoothed))
    slope = np.gradient(smoothed, np.log10(lrs))
    steepest = int(np.argmin(slope[:lowest + 1])) if lowest > 0 else 0
    return RangeTest(lrs, np.asarray(losses, dtype=np.float64), smoothed, float(lrs[lowest]),
                     float(lrs[steepest]), float(lrs[lowest]) / 10, stopped)


def plot_range_test(test: RangeTest, path: str | Path, title: str, loss_label: str = "training loss") -> Path:
    """Write the loss-vs-lr plot (log x) with the suggestion marked to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.0, 5.5), dpi=110)
    ax.plot(test.lrs, test.losses, color="0.7", linewidth=0.9, label="batch loss")
    ax.plot(test.lrs, test.smoothed, color="tab:blue", linewidth=2.2, label="smoothed (EMA, bias-corrected)")
    at = {lr: float(np.interp(np.log10(lr), np.log10(test.lrs), test.smoothed))
          for lr in (test.lr_min_loss, test.lr_steepest, test.suggested)}
    ax.plot(test.lr_min_loss, at[test.lr_min_loss], "v", color="tab:red", markersize=10,
            label=f"minimum of smoothed loss: lr = {test.lr_min_loss:.2g}")
    ax.plot(test.lr_steepest, at[test.lr_steepest], "o", color="tab:orange", markersize=9,
            label=f"steepest descent: lr = {test.lr_steepest:.2g}")
    ax.axvline(test.suggested, color="tab:green", linewidth=2, linestyle="--",
               label=f"suggested lr = minimum / 10 = {test.suggested:.2g}")
    ax.set_xscale("log")
    # Keep the y range on the informative part: the start, the descent and the turn up.
    top = max(test.smoothed[0], test.smoothed.max()) * 1.05
    bottom = min(test.losses.min(), test.smoothed.min())
    ax.set_ylim(bottom - 0.05 * (top - bottom), top)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(loss_label)
    ax.set_title(f"{title}\n{test.steps} steps, lr from {test.lrs[0]:.1g} to {test.lrs[-1]:.2g}; "
                 f"stopped: {test.stopped}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
