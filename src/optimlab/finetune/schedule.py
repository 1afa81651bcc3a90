"""Warm-up then decay, the fine-tuning schedule, as factors of each group's own learning rate.

Fine-tuning starts from weights that already work; Adam's first steps, taken on second-moment
estimates from a handful of batches, can be large enough to damage them. A linear warm-up over
the first few percent of the steps avoids that, and a decay to zero at the end of the budget
settles the weights (BERT, Devlin et al. 2019: warm-up over 10% of the steps then linear decay;
Hugging Face's ``get_linear_schedule_with_warmup`` is the same factor)::

    factor(t) = t / w                       for t < w
              = (T - t) / (T - w)           for w <= t <= T   (linear; or the cosine from 1 to 0)

The factor multiplies each param group's learning rate as it was when the scheduler was built,
so head and body, and every layer under layer-wise decay, keep their ratios. It is built from
:mod:`optimlab.schedules` and attached with its :class:`~optimlab.schedules.Scheduler`, a
``torch.optim.lr_scheduler.LRScheduler``: it drives optimlab's optimizers and torch's, and
Hugging Face's Trainer takes it as its scheduler.
"""

from __future__ import annotations

import math
import numbers

import torch

from optimlab.schedules import Schedule, Scheduler, constant, cosine, linear, linear_warmup, sequence

DECAYS = ("linear", "cosine", "none")


def warmup_steps(total_steps: int, warmup: float) -> int:
    """``warmup`` as a number of steps: a fraction of ``total_steps`` if < 1 (rounded up), else
    the number itself."""
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Real) or not 0 <= warmup < math.inf:
        raise ValueError(f"warmup must be a fraction of the steps in [0, 1) or a number of steps >= 1, got {warmup!r}")
    steps = math.ceil(warmup * total_steps) if warmup < 1 else int(warmup)
    if steps >= total_steps and total_steps > 0 and warmup > 0:
        raise ValueError(f"warmup of {steps} steps leaves no step to decay in a budget of {total_steps} steps")
    return steps


def warmup_decay_factor(total_steps: int, warmup: float = 0.1, decay: str = "linear") -> Schedule:
    """The factor of the module docstring over ``total_steps`` steps (``warmup``: a fraction of
    them or a number of steps; ``decay``: "linear", "cosine" or "none")."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {', '.join(DECAYS)}, got {decay!r}")
    w = warmup_steps(total_steps, warmup)
    rest = total_steps - w
    tail: Schedule | tuple
    if decay == "linear":
        tail = linear(1.0, 0.0, rest)
    elif decay == "cosine":
        tail = cosine(1.0, rest)
    else:
        tail = constant(1.0)
    return sequence(linear_warmup(1.0, w), tail) if w > 0 else tail


def warmup_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.1,
                 decay: str = "linear") -> Scheduler:
    """A scheduler that multiplies every group's learning rate by :func:`warmup_decay_factor`;
    call ``step()`` after each optimizer step."""
    return Scheduler(optimizer, {"lr": warmup_decay_factor(total_steps, warmup, decay)}, relative=True)
