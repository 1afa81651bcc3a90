"""The lab's training loop: the one place where a model is trained.

Batch, stochastic and mini-batch gradient descent differ only in the batches fed to the same
optimizer step, so they are one argument here::

    batch_size=None   full batch: one step per epoch, on the exact gradient of the training loss
    batch_size=1      stochastic: one step per example, n steps per epoch
    batch_size=k      mini-batch: ceil(n / k) steps per epoch (the last batch may be smaller)

Each epoch visits every example once, in an order drawn from a ``torch.Generator`` seeded
with ``seed``, so a run is reproducible: the same model, optimizer, data and seed give the same
loss history. (Initialising the model is the caller's part: seed it before building the model.)

The data is held as tensors and indexed directly; for in-memory data a ``DataLoader`` would
only add per-batch overhead (worker machinery, collation of single examples).

The loop stops when the step budget is spent, when the loss stops changing (``tol``) or when
the loss becomes nan or inf. Divergence is a result, recorded, never an exception: a sweep over
learning rates expects some of them to blow up.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.data import Split

#: ``loss_fn(model(x), y)`` -> a scalar tensor (the mean over the batch).
LossFn = Callable[[Tensor, Tensor], Tensor]
#: ``evaluate(model)`` -> named metrics; run with gradients off and the model in eval mode.
Evaluate = Callable[[nn.Module], Mapping[str, float]]


class StopReason(enum.Enum):
    """Why :func:`train` stopped."""

    MAX_STEPS = "max_steps"  # the step (or epoch) budget is spent
    CONVERGED = "converged"  # |loss_t - loss_{t-1}| < tol
    DIVERGED = "diverged"  # the loss became nan or inf


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step: its number (from 1), the epoch it belongs to (from 0), and the batch
    loss at the parameters *before* the step (the loss whose gradient the step used)."""

    step: int
    epoch: int
    loss: float


@dataclass(frozen=True)
class Evaluation:
    """Metrics of the model after ``step`` optimizer steps (0: before training)."""

    step: int
    metrics: Mapping[str, float]


@dataclass
class TrainResult:
    """What :func:`train` did.

    ``records`` has one entry per step taken; when the run diverged it ends with one more
    entry, the non-finite loss that stopped it (no step was taken on it).
    """

    stop_reason: StopReason
    steps: int
    steps_per_epoch: int
    records: list[StepRecord] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        """The loss history, one value per record."""
        return [r.loss for r in self.records]

    @property
    def final_loss(self) -> float:
        """The last recorded batch loss (nan if no batch was seen)."""
        return self.records[-1].loss if self.records else math.nan

    @property
    def metrics(self) -> Mapping[str, float]:
        """The metrics of the last evaluation (the trained model), or {} without ``evaluate``."""
        return self.evaluations[-1].metrics if self.evaluations else {}

    @property
    def epochs(self) -> float:
        """Passes over the training data, counting a partial epoch as a fraction."""
        return self.steps / self.steps_per_epoch

    @property
    def diverged(self) -> bool:
        return self.stop_reason is StopReason.DIVERGED


def train(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer, data: Split, *,
          batch_size: int | None = None, epochs: int | None = None, steps: int | None = None,
          shuffle: bool = True, seed: int = 0, tol: float | None = None,
          evaluate: Evaluate | None = None, eval_every: int | None = None,
          scheduler: Any = None) -> TrainResult:
    """Train ``model`` on ``data`` with ``optimizer``; return the per-step loss history and metrics.

    Args:
        model, loss_fn, optimizer: a step minimises ``loss_fn(model(x), y)`` on one batch.
        data: the training split.
        batch_size: None (full batch), 1 (stochastic) or k (mini-batches of k).
        epochs, steps: the budget; give either or both (the run stops at the first reached).
        shuffle, seed: visit examples in a fresh order each epoch, drawn from a generator
            seeded with ``seed`` (full-batch steps do not depend on the order).
        tol: stop as CONVERGED when two consecutive batch losses differ by less than ``tol``.
            With mini-batches the batch loss is noisy: use it for full-batch runs or
            interpolating problems (where every batch loss goes to zero).
        evaluate, eval_every: ``evaluate(model)`` runs before training and every
            ``eval_every`` steps (if given), and always on the trained model.
        scheduler: anything with ``step()`` (a ``torch.optim.lr_scheduler``), stepped after
            every optimizer step.
    """
    n = len(data)
    check_args(n, batch_size, epochs, steps, tol, evaluate, eval_every)
    size = n if batch_size is None else min(batch_size, n)
    per_epoch = math.ceil(n / size)
    budget = min(b for b in (steps, None if epochs is None else epochs * per_epoch) if b is not None)
    generator = torch.Generator().manual_seed(seed)
    result = TrainResult(StopReason.MAX_STEPS, 0, per_epoch)

    def run_evaluation() -> None:
        model.eval()
        with torch.no_grad():
            metrics = dict(evaluate(model))
        model.train()
        result.evaluations.append(Evaluation(result.steps, metrics))

    model.train()
    if evaluate is not None and eval_every is not None:
        run_evaluation()
    previous = math.nan
    while result.steps < budget and result.stop_reason is StopReason.MAX_STEPS:
        epoch = result.steps // per_epoch
        for x, y in batches(data, size, shuffle and size < n, generator):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            value = loss.item()
            if not math.isfinite(value):
                result.records.append(StepRecord(result.steps + 1, epoch, value))
                result.stop_reason = StopReason.DIVERGED
                break
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            result.steps += 1
            result.records.append(StepRecord(result.steps, epoch, value))
            if evaluate is not None and eval_every is not None and result.steps % eval_every == 0:
                run_evaluation()
            if tol is not None and abs(value - previous) < tol:
                result.stop_reason = StopReason.CONVERGED
                break
            previous = value
            if result.steps >= budget:
                break
    if evaluate is not None and (not result.evaluations or result.evaluations[-1].step != result.steps):
        run_evaluation()
    return result


def batches(data: Split, size: int, shuffle: bool, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of (x, y) batches of ``size`` rows (the last may be smaller)."""
    n = len(data)
    if size >= n:
        yield data.x, data.y
        return
    if shuffle:
        order = torch.randperm(n, generator=generator).to(data.x.device)
        for start in range(0, n, size):
            index = order[start:start + size]
            yield data.x.index_select(0, index), data.y.index_select(0, index)
    else:
        for start in range(0, n, size):
            yield data.x[start:start + size], data.y[start:start + size]


def check_args(n: int, batch_size: Any, epochs: Any, steps: Any, tol: Any, evaluate: Any, eval_every: Any) -> None:
    if n == 0:
        raise ValueError("train: data has no examples")
    for name, value in (("batch_size", batch_size), ("epochs", epochs), ("steps", steps), ("eval_every", eval_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"train: {name} must be None or an int >= 1, got {value!r}")
    if epochs is None and steps is None:
        raise ValueError("train: give a budget, epochs or steps (or both), got neither")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < math.inf):
        raise ValueError(f"train: tol must be None or a finite number >= 0, got {tol!r}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"train: evaluate must be a function of the model, got {type(evaluate).__name__}")
    if eval_every is not None and evaluate is None:
        raise ValueError(f"train: eval_every={eval_every!r} needs an evaluate function")
