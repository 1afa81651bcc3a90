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

The loop stops (:class:`StopReason`) when the step budget is spent, when the loss stops changing
(``tol``), when the validation metric reaches a :class:`Target` (checked at every evaluation),
when the loss becomes nan or inf or explodes (``explode``), when a hook asks (early stopping),
or on Ctrl-C. Divergence and interruption are results, recorded, never exceptions: a sweep over
learning rates expects some of them to blow up, and an interrupted run returns what it has.

Fine-tuning options, each off by default: ``accumulate`` micro-batches per optimizer step
(gradient accumulation), ``autocast`` (e.g. bfloat16 on the CPU), ``hooks`` (objects with any of
``before_step(loop)``, ``after_step(loop)``, ``after_evaluation(loop, evaluation)``: gradient
clipping, gradual unfreezing, early stopping, checkpoints; see :mod:`optimlab.finetune`), and
``resume`` (continue a run from :meth:`Loop.state_dict`, exactly where it was).

Time: every step record and evaluation carries the wall-clock training time so far
(``time.perf_counter``), which counts the steps (batching, forward, backward, optimizer,
scheduler) and leaves out the time spent in ``evaluate``, so that "seconds to target" compares
optimizers and not how often, or on how much data, they were evaluated.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import math
import numbers
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.training.data import Split

#: ``loss_fn(model(x), y)`` -> a scalar tensor (the mean over the batch).
LossFn = Callable[[Tensor, Tensor], Tensor]
#: ``evaluate(model)`` -> named metrics; run with gradients off and the model in eval mode.
Evaluate = Callable[[nn.Module], Mapping[str, float]]
#: ``penalty(model)`` -> a scalar tensor added to the batch loss (e.g. L2 on the weights).
Penalty = Callable[[nn.Module], Tensor]


class StopReason(enum.Enum):
    """Why :func:`train` stopped."""

    MAX_STEPS = "max_steps"  # the step (or epoch) budget is spent
    CONVERGED = "converged"  # |loss_t - loss_{t-1}| < tol
    DIVERGED = "diverged"  # the loss became nan or inf, or exploded (> explode x the first loss)
    TARGET = "target"  # an evaluation reached the target
    EARLY_STOP = "early_stop"  # a hook asked to stop (early stopping: no improvement for a while)
    INTERRUPTED = "interrupted"  # Ctrl-C (KeyboardInterrupt): the result holds what was done


@dataclass(frozen=True)
class Target:
    """Stop when ``metric`` reaches ``value``: ``>= value`` if higher is better, else ``<= value``.

    AlgoPerf's notion of a target: a validation metric value to reach within a step budget.
    """

    metric: str
    value: float
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise TypeError(f"Target: metric must be a metric name, got {self.metric!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real) or not math.isfinite(self.value):
            raise ValueError(f"Target: value must be a finite number, got {self.value!r}")

    def reached(self, metrics: Mapping[str, float]) -> bool:
        """Whether ``metrics[metric]`` meets the target (never for nan)."""
        if self.metric not in metrics:
            raise KeyError(f"Target: the evaluation has no metric {self.metric!r}; it has {sorted(metrics)}")
        value = metrics[self.metric]
        return value >= self.value if self.higher_is_better else value <= self.value


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step: its number (from 1), the epoch it belongs to (from 0), the batch
    loss at the parameters *before* the step (the loss whose gradient the step used), and the
    training time in seconds from the start of the run to the end of the step (evaluation
    time excluded)."""

    step: int
    epoch: int
    loss: float
    seconds: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """Metrics of the model after ``step`` optimizer steps (0: before training), and the
    training time spent until then (evaluation time excluded)."""

    step: int
    metrics: Mapping[str, float]
    seconds: float = 0.0


@dataclass
class TrainResult:
    """What :func:`train` did.

    ``records`` has one entry per step taken; when the run diverged it ends with one more
    entry, the non-finite or exploded loss that stopped it (no step was taken on it).
    ``seconds`` is the training time (evaluation excluded); ``message`` says why the run
    diverged or was interrupted ("" otherwise).
    """

    stop_reason: StopReason
    steps: int
    steps_per_epoch: int
    records: list[StepRecord] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

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

    @property
    def target_evaluation(self) -> Evaluation | None:
        """The evaluation that reached the target (the run stopped there), or None."""
        return self.evaluations[-1] if self.stop_reason is StopReason.TARGET else None


@dataclass
class Loop:
    """What hooks see of a running :func:`train`: the objects being trained, the result so far
    (``result.steps`` optimizer steps done), and :meth:`state_dict`, everything the loop needs to
    go on from here (``train(..., resume=state)``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    result: TrainResult
    epoch_rng: Tensor  # the shuffling generator's state at the start of the current epoch
    epoch_start: int  # result.steps when the current epoch started
    clock: Any = field(repr=False)

    @property
    def step(self) -> int:
        return self.result.steps

    def state_dict(self) -> dict[str, Any]:
        """The loop's position as plain values and tensors (``torch.save`` / ``weights_only`` load):
        steps, epoch start and shuffling state, the global torch RNG (dropout), the records,
        evaluations and training seconds so far. Model, optimizer, scheduler and hooks keep
        their own state dicts."""
        result = self.result
        return {"steps": result.steps, "epoch_start": self.epoch_start, "epoch_rng": self.epoch_rng.clone(),
                "torch_rng": torch.random.get_rng_state(), "seconds": self.clock.seconds,
                "records": [[r.step, r.epoch, r.loss, r.seconds] for r in result.records],
                "evaluations": [[e.step, dict(e.metrics), e.seconds] for e in result.evaluations]}


def train(model: nn.Module, loss_fn: LossFn, optimizer: torch.optim.Optimizer, data: Split, *,
          batch_size: int | None = None, epochs: int | None = None, steps: int | None = None,
          shuffle: bool = True, seed: int = 0, tol: float | None = None,
          evaluate: Evaluate | None = None, eval_every: int | None = None,
          scheduler: Any = None, target: Target | None = None, explode: float | None = None,
          penalty: Penalty | None = None, progress: bool | None = None, accumulate: int = 1,
          autocast: torch.dtype | None = None, hooks: Sequence[Any] = (),
          resume: Mapping[str, Any] | None = None) -> TrainResult:
    """Train ``model`` on ``data`` with ``optimizer``; return the per-step loss history and metrics.

    Args:
        model, loss_fn, optimizer: a step minimises ``loss_fn(model(x), y)`` on one batch
            (plus ``penalty(model)`` if given).
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
        target: stop as TARGET at the first evaluation that reaches it (needs ``evaluate``;
            give ``eval_every`` to check during training and not only at the end).
        explode: stop as DIVERGED when a batch loss exceeds ``explode`` times the first batch
            loss (in absolute value; never when the first loss is 0), e.g. 1e3: a run whose
            loss grew a thousandfold has diverged long before it overflows. None: only nan and
            inf count.
        penalty: ``penalty(model)`` -> a scalar tensor added to every batch loss (and so to
            the recorded loss), e.g. an L2 term that belongs to the objective rather than to
            the optimizer.
        progress: show a tqdm progress bar on stderr (with the loss and the last evaluation's
            metrics); None (default) shows it when stderr is a terminal.
        accumulate: micro-batches of ``batch_size`` per optimizer step (gradient accumulation):
            each micro-batch's loss is weighted by its share of the rows, so a step follows the
            gradient of the mean loss over all of them, as one batch of ``accumulate *
            batch_size`` rows would (up to rounding), in the memory of one micro-batch. An
            epoch's last step takes the micro-batches that are left. ``penalty`` is added once
            per step.
        autocast: run the forward pass and the loss under ``torch.autocast`` with this dtype
            (e.g. ``torch.bfloat16`` on the CPU; see :mod:`optimlab.finetune.precision`);
            weights, gradients and the optimizer stay in their own dtype.
        hooks: objects with any of the methods ``before_step(loop)`` (gradients ready, before
            ``optimizer.step()``: clipping), ``after_step(loop)`` (after the step and the
            scheduler: unfreezing, checkpoints) and ``after_evaluation(loop, evaluation)``
            (early stopping), called in order with the :class:`Loop`; any that returns True
            stops the run as EARLY_STOP.
        resume: a :meth:`Loop.state_dict` saved by an earlier call with the same arguments:
            go on from that step as if never stopped (same batches, same RNG), keeping its
            records, evaluations and seconds. Restoring the model, optimizer, scheduler and
            hooks is the caller's part.

    Ctrl-C during training stops the run as INTERRUPTED and returns the result so far (no
    final evaluation: the caller asked to stop now).
    """
    n = len(data)
    check_args(n, batch_size, epochs, steps, tol, evaluate, eval_every, target, explode, penalty)
    check_finetune_args(accumulate, autocast, hooks)
    size = n if batch_size is None else min(batch_size, n)
    per_epoch = math.ceil(math.ceil(n / size) / accumulate)
    budget = min(b for b in (steps, None if epochs is None else epochs * per_epoch) if b is not None)
    generator = torch.Generator().manual_seed(seed)
    result = TrainResult(StopReason.MAX_STEPS, 0, per_epoch)
    clock = Clock()
    loop = Loop(model, optimizer, scheduler, result, generator.get_state(), 0, clock)
    if resume is not None:
        restore(loop, generator, resume)
    bar = progress_bar(budget, progress, initial=result.steps)
    cast = (lambda: torch.autocast(data.x.device.type, dtype=autocast)) if autocast is not None \
        else contextlib.nullcontext
    methods = {name: [getattr(h, name) for h in hooks if callable(getattr(h, name, None))]
               for name in ("before_step", "after_step", "after_evaluation")}
    shown: dict[str, Any] = {"at": 0.0}  # the bar's latest numbers, and when they were last shown

    def show(force: bool = False, **values: Any) -> None:
        """Put the batch loss and the last evaluation's metrics on the bar (at most 5 times a second)."""
        if bar is None:
            return
        shown.update(values)
        if force or time.perf_counter() - shown["at"] > 0.2 or result.steps == budget:
            shown["at"] = time.perf_counter()
            last = result.evaluations[-1].metrics if result.evaluations else {}
            bar.set_postfix({**{k: v for k, v in shown.items() if k != "at"},
                             **{f"valid_{k}": f"{v:.4g}" for k, v in last.items()}}, refresh=False)

    def stop_by_hook(hook: Any) -> None:
        owner = getattr(hook, "__self__", hook)
        result.stop_reason = StopReason.EARLY_STOP
        result.message = f"{type(owner).__name__} stopped the run after {result.steps} steps"

    def run_evaluation() -> None:
        clock.pause()
        model.eval()
        with torch.no_grad():
            metrics = dict(evaluate(model))
        model.train()
        evaluation = Evaluation(result.steps, metrics, clock.seconds)
        result.evaluations.append(evaluation)
        stopped_by_budget = result.stop_reason in (StopReason.MAX_STEPS, StopReason.CONVERGED)
        if target is not None and stopped_by_budget and target.reached(metrics):
            result.stop_reason = StopReason.TARGET
        for hook in methods["after_evaluation"]:
            if hook(loop, evaluation) and result.stop_reason is StopReason.MAX_STEPS and result.steps < budget:
                stop_by_hook(hook)
        show(force=True)
        clock.resume()

    def stop_diverged(value: float, epoch: int, message: str) -> None:
        result.records.append(StepRecord(result.steps + 1, epoch, value, clock.seconds))
        result.stop_reason = StopReason.DIVERGED
        result.message = message

    model.train()
    try:
        clock.resume()
        resuming = resume is not None
        # before the first step; on resume, the evaluation due at this step if the saved state
        # (taken after the step, before its evaluation) does not have it
        due = evaluate is not None and eval_every is not None and result.steps % eval_every == 0
        if due and (not result.evaluations or result.evaluations[-1].step != result.steps):
            run_evaluation()
        previous = result.records[-1].loss if result.records else math.nan
        # the exploding-loss threshold, set by the first batch loss
        limit = explode * abs(result.records[0].loss) if explode is not None and result.records else None
        while result.steps < budget and result.stop_reason is StopReason.MAX_STEPS:
            epoch = result.steps // per_epoch
            if not resuming:  # a new epoch
                loop.epoch_start, loop.epoch_rng = result.steps, generator.get_state()
            micro = batches(data, size, shuffle and size < n, generator)
            if resuming:  # the generator is back at this epoch's start: skip the steps already taken
                for _ in itertools.islice(micro, (result.steps - loop.epoch_start) * accumulate):
                    pass
                resuming = False
            while group := list(itertools.islice(micro, accumulate)):
                optimizer.zero_grad(set_to_none=True)
                rows, value = sum(len(y) for _, y in group), 0.0
                for i, (x, y) in enumerate(group):
                    with cast():
                        loss = loss_fn(model(x), y)
                    if len(group) > 1:
                        loss = loss * (len(y) / rows)
                    if penalty is not None and i == 0:
                        loss = loss + penalty(model)
                    part = loss.item()
                    value += part
                    if not math.isfinite(part):
                        break
                    loss.backward()
                if not math.isfinite(value):
                    stop_diverged(value, epoch, f"the loss became {value} at step {result.steps + 1}")
                    break
                if limit is None and explode is not None and value != 0:
                    limit = explode * abs(value)
                if limit is not None and value > limit:
                    stop_diverged(value, epoch, f"the loss exploded to {value:.4g} at step {result.steps + 1}, "
                                                f"more than {explode:g} x the first loss {result.records[0].loss:.4g}")
                    break
                for hook in methods["before_step"]:
                    hook(loop)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                result.steps += 1
                result.records.append(StepRecord(result.steps, epoch, value, clock.seconds))
                for hook in methods["after_step"]:
                    if hook(loop) and result.stop_reason is StopReason.MAX_STEPS:
                        stop_by_hook(hook)
                if bar is not None:
                    bar.update(1)
                    show(loss=f"{value:.4g}")
                if result.stop_reason is StopReason.EARLY_STOP:
                    break
                if evaluate is not None and eval_every is not None and result.steps % eval_every == 0:
                    run_evaluation()
                    if result.stop_reason in (StopReason.TARGET, StopReason.EARLY_STOP):
                        break
                if tol is not None and abs(value - previous) < tol:
                    result.stop_reason = StopReason.CONVERGED
                    break
                previous = value
                if result.steps >= budget:
                    break
        if evaluate is not None and (not result.evaluations or result.evaluations[-1].step != result.steps):
            run_evaluation()
    except KeyboardInterrupt:
        result.stop_reason = StopReason.INTERRUPTED
        result.message = f"interrupted (Ctrl-C) after {result.steps} steps"
    finally:
        clock.pause()
        if bar is not None:
            bar.close()
    result.seconds = clock.seconds
    return result


class Clock:
    """Wall-clock seconds while running; paused for evaluations."""

    def __init__(self) -> None:
        self.total = 0.0
        self.started: float | None = None

    def resume(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def pause(self) -> None:
        if self.started is not None:
            self.total += time.perf_counter() - self.started
            self.started = None

    @property
    def seconds(self) -> float:
        running = 0.0 if self.started is None else time.perf_counter() - self.started
        return self.total + running


def progress_bar(total: int, progress: bool | None, initial: int = 0) -> Any:
    """A tqdm bar over ``total`` steps when ``progress`` (None: when stderr is a terminal)."""
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm  # imported only when a bar is wanted

    return tqdm(total=total, initial=initial, unit="step", leave=False, dynamic_ncols=True)


def restore(loop: Loop, generator: torch.Generator, state: Mapping[str, Any]) -> None:
    """Put ``loop`` (its result, clock and shuffling generator) where :meth:`Loop.state_dict` was taken."""
    keys = {"steps", "epoch_start", "epoch_rng", "torch_rng", "seconds", "records", "evaluations"}
    if not isinstance(state, Mapping) or not keys <= set(state):
        raise ValueError(f"train: resume must be a Loop.state_dict() with keys {sorted(keys)}, "
                         f"got {sorted(state) if isinstance(state, Mapping) else type(state).__name__}")
    result = loop.result
    result.steps = int(state["steps"])
    result.records = [StepRecord(int(s), int(e), float(v), float(t)) for s, e, v, t in state["records"]]
    result.evaluations = [Evaluation(int(s), dict(m), float(t)) for s, m, t in state["evaluations"]]
    loop.epoch_start, loop.epoch_rng = int(state["epoch_start"]), state["epoch_rng"]
    generator.set_state(state["epoch_rng"])
    torch.random.set_rng_state(state["torch_rng"])
    loop.clock.total = float(state["seconds"])


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


def check_args(n: int, batch_size: Any, epochs: Any, steps: Any, tol: Any, evaluate: Any, eval_every: Any,
               target: Any = None, explode: Any = None, penalty: Any = None) -> None:
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
    if target is not None and not isinstance(target, Target):
        raise TypeError(f"train: target must be None or a Target, got {type(target).__name__}")
    if target is not None and evaluate is None:
        raise ValueError(f"train: target={target!r} needs an evaluate function")
    if explode is not None and (isinstance(explode, bool) or not isinstance(explode, numbers.Real)
                                or not 1 < explode < math.inf):
        raise ValueError(f"train: explode must be None or a finite number > 1, got {explode!r}")
    if penalty is not None and not callable(penalty):
        raise TypeError(f"train: penalty must be a function of the model, got {type(penalty).__name__}")


HOOK_METHODS = ("before_step", "after_step", "after_evaluation")


def check_finetune_args(accumulate: Any, autocast: Any, hooks: Any) -> None:
    if isinstance(accumulate, bool) or not isinstance(accumulate, numbers.Integral) or accumulate < 1:
        raise ValueError(f"train: accumulate must be an int >= 1 (micro-batches per step), got {accumulate!r}")
    if autocast is not None and not isinstance(autocast, torch.dtype):
        raise TypeError(f"train: autocast must be None or a torch.dtype such as torch.bfloat16, got {autocast!r}")
    if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Sequence):
        raise TypeError(f"train: hooks must be a list of hook objects, got {type(hooks).__name__}")
    for hook in hooks:
        if not any(callable(getattr(hook, name, None)) for name in HOOK_METHODS):
            raise TypeError(f"train: hook {hook!r} has none of the methods {', '.join(HOOK_METHODS)}")
