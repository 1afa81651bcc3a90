"""The fine-tuning problems: a pretrained model, a new head, a new task.

=====================  ==============================================================  ================
name                   what                                                            target (valid)
=====================  ==============================================================  ================
finetune-sentiment     all-MiniLM-L6-v2 + linear head on Rotten Tomatoes snippets      accuracy >= 0.78
                       (fresh / rotten), 1 epoch of 2,000 snippets, batch 32
finetune-fashion       MNIST-pretrained CNN + new head on Fashion-MNIST, 300 steps of    accuracy >= 0.87
                       batch 128, validated on the first 2,000 validation images
=====================  ==============================================================  ================

Both use the fine-tuning recipe of :mod:`optimlab.finetune` in every run, whatever the
optimizer: the head learns at 10x the run's learning rate (the run's ``lr`` is the body's),
biases and normalization parameters get no weight decay (the others keep the optimizer's own),
the learning rate warms up over the first 10% of the steps and decays linearly to 0
(``warmup-linear``; a run that names another schedule gets that one), and gradients are clipped
to norm 1.

Sizes are parameters (``finetune-sentiment:train=256,valid=128,test=128,max_length=32`` is the
test suite's size); the budget is one epoch of the training snippets. The data and models ship
in pip packages (:mod:`optimlab.lab.pretrained`); a missing one raises
:class:`~optimlab.lab.data.DataNotFoundError` saying how to install it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch.nn.functional as F
from torch import nn

from optimlab.finetune import GradientClipping, param_groups
from optimlab.lab import data as lab_data
from optimlab.lab import pretrained
from optimlab.lab.data import Dataset, Split
from optimlab.lab.specs import format_spec

#: The new head's name prefix in both models, and its learning rate relative to the body's.
HEAD = ("classifier",)
HEAD_SCALE = 10.0
CLIP_NORM = 1.0
SCHEDULE = "warmup-linear"


def head_and_body(model: nn.Module, lr: float, head: tuple[str, ...] = HEAD, head_scale: float = HEAD_SCALE) -> list:
    """Param groups: the head at ``head_scale * lr``, the body at ``lr``, no weight decay for
    biases and norms (:func:`optimlab.finetune.param_groups`)."""
    return param_groups(model, lr, head=head, head_lr=head_scale * lr)


def clipping(model: nn.Module, max_norm: float = CLIP_NORM) -> list[Any]:
    return [GradientClipping(max_norm)]


def subset(dataset: Dataset, train: int | None, valid: int | None) -> Dataset:
    """The first ``train`` / ``valid`` rows of the splits (None: all)."""
    def head(split: Split, n: int | None) -> Split:
        return split if n is None else Split(split.x[:n], split.y[:n])

    return Dataset(dataset.name, head(dataset.train, train), head(dataset.valid, valid), dataset.test)


#: Measured (seed 0, the default sizes, half-decade grids): see the problem's comment.
SENTIMENT_LRS: dict[str, float] = {}


def finetune_sentiment(train: int = 2000, valid: int = 1000, test: int = 1000, max_length: int = 64,
                       batch: int = 32) -> Any:
    from optimlab.lab.problems import Problem, accuracy  # (problems imports this module to register it)

    for name, value in (("train", train), ("valid", valid), ("test", test), ("batch", batch)):
        if value < 1:
            raise ValueError(f"finetune-sentiment: {name} must be >= 1, got {value!r}")
    params = {k: v for k, v in (("train", train), ("valid", valid), ("test", test), ("max_length", max_length),
                                ("batch", batch))
              if v != {"train": 2000, "valid": 1000, "test": 1000, "max_length": 64, "batch": 32}[k]}
    steps = math.ceil(train / batch)
    return Problem(format_spec("finetune-sentiment", params),
                   f"fine-tune all-MiniLM-L6-v2 (22.7 M parameters, pretrained) with a new linear head on Rotten "
                   f"Tomatoes snippets, fresh vs rotten: 1 epoch of {train:,} snippets, batch {batch}, up to "
                   f"{max_length} tokens; head at 10x lr, warm-up + linear decay, clipping",
                   functools.partial(pretrained.rotten_tomatoes, train, valid, test, max_length),
                   pretrained.SentenceClassifier, F.cross_entropy, "accuracy", True, 0.78,
                   max_steps=steps, batch_size=batch, eval_every=max(1, steps // 4), metric_fn=accuracy,
                   lrs=SENTIMENT_LRS, param_groups=head_and_body, hooks=clipping, schedule=SCHEDULE)


#: Measured (seed 0, half-decade grids): see the problem's comment.
FASHION_LRS: dict[str, float] = {}


def fashion(train: int | None, valid: int | None) -> Dataset:
    return subset(lab_data.fashion_mnist(), train, valid)


def finetune_fashion(train: int = 50_000, valid: int = 2000, steps: int = 300) -> Any:
    from optimlab.lab.problems import Problem, accuracy

    for name, value in (("train", train), ("valid", valid), ("steps", steps)):
        if value < 1:
            raise ValueError(f"finetune-fashion: {name} must be >= 1, got {value!r}")
    params = {k: v for k, v in (("train", train), ("valid", valid), ("steps", steps))
              if v != {"train": 50_000, "valid": 2000, "steps": 300}[k]}
    return Problem(format_spec("finetune-fashion", params),
                   f"fine-tune a CNN pretrained on MNIST digits (390 k parameters) with a new head on Fashion-MNIST: "
                   f"{steps} steps of batch 128 from {train:,} images, validated on {valid:,}; head at 10x lr, "
                   f"warm-up + linear decay, clipping",
                   functools.partial(fashion, train if train < 50_000 else None, valid if valid < 10_000 else None),
                   pretrained.PretrainedCNN, F.cross_entropy, "accuracy", True, 0.87,
                   max_steps=steps, batch_size=128, eval_every=max(1, steps // 6), metric_fn=accuracy,
                   lrs=FASHION_LRS, param_groups=head_and_body, hooks=clipping, schedule=SCHEDULE)
