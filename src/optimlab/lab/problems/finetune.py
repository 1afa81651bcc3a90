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
test suite's size); the sentiment budget is one epoch of the training snippets. So are the
recipe's choices, which then belong to the problem (its spec, its fingerprint, its stored runs):
``head_scale`` (head lr / body lr, 10), ``layer_decay`` (layer-wise lr decay, 1 = off),
``clip`` (gradient-norm cap, 0 = off), ``unfreeze`` (gradual unfreezing, steps per stage, 0 =
off), ``patience`` (early stopping, evaluations, 0 = off), ``accumulate`` (micro-batches of
``batch`` per step) and ``autocast`` ("off", "bf16", or "auto": bf16 where this CPU computes
it natively, else off; the problem's name says which was chosen); e.g.
``finetune-sentiment:layer_decay=0.8,autocast=bf16``. The warm-up is the schedule's:
``warmup-linear:warmup=0.06``. The data and models ship
in pip packages (:mod:`optimlab.lab.problems.pretrained`); a missing one raises
:class:`~optimlab.lab.training.data.DataNotFoundError` saying how to install it.

The sentiment problem's ``top_layers`` (1..6, default 6: the whole model) trains only MiniLM's
top ``top_layers`` transformer layers and the head: the embeddings and the layers below are
frozen and run once per process and data set, their token states becoming the problem's inputs
(:func:`~optimlab.lab.problems.pretrained.rotten_tomatoes_states`,
:class:`~optimlab.lab.problems.pretrained.TopLayersClassifier`). A step then costs a fraction of
the whole model's (``top_layers=1``: one layer's forward and backward, no embedding gradients),
for workloads that need many cheap runs (the benchmark suite). ``target`` (default 0.78) is the
validation accuracy to reach, in (0, 1), for variants that reach less. One torch thread, AdamW,
seed 0 (docs/finetune.md has the calibration):

======================================================================================================  =========  ==========
spec                                                                                                    CPU / run  best valid
======================================================================================================  =========  ==========
``finetune-sentiment`` (the whole model, 63 steps, float32)                                             ~200 s     0.783
``finetune-sentiment:top_layers=1,train=512,valid=256,test=128,max_length=32,batch=16,target=0.7``      5.4 s      0.715
======================================================================================================  =========  ==========
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optimlab.finetune import (
    EarlyStopping,
    GradientClipping,
    GradualUnfreezing,
    param_groups,
    top_down_stages,
)
from optimlab.finetune.precision import autocast_dtype
from optimlab.lab.problems import pretrained
from optimlab.lab.problems.problem import Problem, accuracy
from optimlab.lab.training import data as lab_data
from optimlab.lab.training.data import Dataset, Split
from optimlab.lab.training.specs import format_spec

#: The new head's name prefix in both models.
HEAD = ("classifier",)
SCHEDULE = "warmup-linear"
#: The recipe's parameters and their defaults (shared by both problems).
RECIPE_DEFAULTS: dict[str, Any] = {"head_scale": 10.0, "layer_decay": 1.0, "clip": 1.0, "unfreeze": 0,
                                   "patience": 0, "accumulate": 1, "autocast": "off"}
#: For the tests and documentation.
HEAD_SCALE = RECIPE_DEFAULTS["head_scale"]


def head_and_body(model: nn.Module, lr: float, head_scale: float = 10.0, layer_decay: float = 1.0) -> list:
    """Param groups: the head at ``head_scale * lr``, the body at ``lr`` (times ``layer_decay``
    per layer below the top, if < 1), no weight decay for biases and norms; the other groups
    keep the optimizer's own weight decay (:func:`optimlab.finetune.param_groups`)."""
    return param_groups(model, lr, head=HEAD, head_lr=head_scale * lr,
                        layer_decay=layer_decay if layer_decay < 1 else None)


def recipe_hooks(model: nn.Module, clip: float = 1.0, unfreeze: int = 0, patience: int = 0) -> list[Any]:
    """Gradient clipping (``clip`` > 0), gradual unfreezing from the head down (``unfreeze`` > 0
    steps per stage), early stopping on the validation accuracy (``patience`` > 0 evaluations)."""
    hooks: list[Any] = []
    if clip > 0:
        hooks.append(GradientClipping(clip))
    if unfreeze > 0:
        hooks.append(GradualUnfreezing(model, top_down_stages(model, HEAD), unfreeze))
    if patience > 0:
        hooks.append(EarlyStopping("accuracy", patience))
    return hooks


def recipe(what: str, head_scale: float, layer_decay: float, clip: float, unfreeze: int, patience: int,
           accumulate: int, autocast: str) -> dict[str, Any]:
    """The Problem fields that carry the recipe's choices (checked)."""
    values = {"head_scale": head_scale, "layer_decay": layer_decay, "clip": clip, "unfreeze": unfreeze,
              "patience": patience, "accumulate": accumulate, "autocast": autocast}
    checks = (("head_scale", head_scale > 0, "> 0"), ("layer_decay", 0 < layer_decay <= 1, "in (0, 1]"),
              ("clip", clip >= 0, ">= 0 (0: off)"), ("unfreeze", unfreeze >= 0, ">= 0 (0: off)"),
              ("patience", patience >= 0, ">= 0 (0: off)"), ("accumulate", accumulate >= 1, ">= 1"),
              ("autocast", autocast in ("off", "bf16"), "off, bf16 or auto"))
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"{what}: {name} must be {expected}, got {values[name]!r}")
    return {"param_groups": functools.partial(head_and_body, head_scale=head_scale, layer_decay=layer_decay),
            "hooks": functools.partial(recipe_hooks, clip=clip, unfreeze=unfreeze, patience=patience),
            "schedule": SCHEDULE, "accumulate": accumulate,
            "autocast": torch.bfloat16 if autocast == "bf16" else None}


def resolve_autocast(autocast: str) -> str:
    """``"auto"`` -> ``"bf16"`` where this CPU computes bfloat16 natively, else ``"off"``; other
    values as given (checked by :func:`recipe`)."""
    if autocast == "auto":
        return "bf16" if autocast_dtype("auto") is not None else "off"
    return autocast


def recipe_text(head_scale: float, layer_decay: float, clip: float, unfreeze: int, patience: int, accumulate: int,
                autocast: str) -> str:
    parts = [f"head at {head_scale:g}x lr", "warm-up + linear decay"]
    if layer_decay < 1:
        parts.append(f"layer-wise lr decay {layer_decay:g}")
    if clip > 0:
        parts.append(f"clipping at norm {clip:g}")
    if unfreeze > 0:
        parts.append(f"gradual unfreezing every {unfreeze} steps")
    if patience > 0:
        parts.append(f"early stopping after {patience} evaluations")
    if accumulate > 1:
        parts.append(f"{accumulate} micro-batches per step")
    if autocast != "off":
        parts.append(f"{autocast} autocast")
    return ", ".join(parts)


def subset(dataset: Dataset, train: int | None, valid: int | None, test: int | None = None) -> Dataset:
    """The first ``train`` / ``valid`` / ``test`` rows of the splits (None: all)."""
    def head(split: Split, n: int | None) -> Split:
        return split if n is None else Split(split.x[:n], split.y[:n])

    return Dataset(dataset.name, head(dataset.train, train), head(dataset.valid, valid), head(dataset.test, test))


def changed(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v != defaults[k]}


#: Measured (seed 0, the default sizes and recipe with bf16 autocast, 63 steps; best validation /
#: test accuracy), the best validation accuracy of the rates tried:
#: adamw 0.0002 (0.785 / 0.785; 0.0001: 0.765 / 0.780, 0.000316: 0.777 / 0.786, 0.0005: 0.756 / 0.743),
#: momentum 0.0316 (0.757 / 0.758; 0.01: 0.755 / 0.760, 0.00316: 0.752 / 0.741; the largest tried),
#: adagrad 0.000316 (0.770 / 0.779; 0.001: 0.763 / 0.799, 0.00316: 0.570 / 0.565).
#: (`optimlab compare --problem finetune-sentiment:autocast=auto` with `--optimizers adamw --lrs
#: 0.0001,0.0002,0.0005` and `--optimizers momentum,adagrad --points 3`, 1 seed, no extra seeds.)
SENTIMENT_LRS: dict[str, float] = {"adamw": 0.0002, "momentum": 0.0316, "adagrad": 0.000316}
SENTIMENT_SIZES = {"train": 2000, "valid": 1000, "test": 1000, "max_length": 64, "batch": 32, "top_layers": 6,
                   "target": 0.78}


def finetune_sentiment(train: int = 2000, valid: int = 1000, test: int = 1000, max_length: int = 64, batch: int = 32,
                       head_scale: float = 10.0, layer_decay: float = 1.0, clip: float = 1.0, unfreeze: int = 0,
                       patience: int = 0, accumulate: int = 1, autocast: str = "off", top_layers: int = 6,
                       target: float = 0.78) -> Problem:
    for name, value in (("train", train), ("valid", valid), ("test", test), ("batch", batch)):
        if value < 1:
            raise ValueError(f"finetune-sentiment: {name} must be >= 1, got {value!r}")
    try:
        pretrained.check_top_layers(top_layers)
    except ValueError as error:
        raise ValueError(f"finetune-sentiment: {error}") from None
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ValueError(f"finetune-sentiment: target must be a number in (0, 1), got {target!r}")
    sizes = {"train": train, "valid": valid, "test": test, "max_length": max_length, "batch": batch,
             "top_layers": top_layers, "target": target}
    choices = {"head_scale": head_scale, "layer_decay": layer_decay, "clip": clip, "unfreeze": unfreeze,
               "patience": patience, "accumulate": accumulate, "autocast": resolve_autocast(autocast)}
    fields = recipe("finetune-sentiment", **choices)
    steps = math.ceil(math.ceil(train / batch) / accumulate)
    data, model, what = sentiment_model(train, valid, test, max_length, top_layers)
    return Problem(format_spec("finetune-sentiment", {**changed(sizes, SENTIMENT_SIZES),
                                                      **changed(choices, RECIPE_DEFAULTS)}),
                   f"fine-tune {what} with a new linear head on Rotten "
                   f"Tomatoes snippets, fresh vs rotten: 1 epoch of {train:,} snippets, batch {batch * accumulate}, "
                   f"up to {max_length} tokens; {recipe_text(**choices)}",
                   data, model, F.cross_entropy, "accuracy", True, target,
                   max_steps=steps, batch_size=batch, eval_every=max(1, steps // 3), metric_fn=accuracy,
                   lrs=SENTIMENT_LRS, **fields)


def sentiment_model(train: int, valid: int, test: int, max_length: int, top_layers: int) -> tuple[Any, Any, str]:
    """The data loader, the model and the words for what trains: the whole MiniLM on token ids
    (``top_layers`` = 6), or its top layers on the cached states of the frozen ones below."""
    if top_layers == pretrained.MINILM_LAYERS:
        return (functools.partial(pretrained.rotten_tomatoes, train, valid, test, max_length),
                pretrained.SentenceClassifier, "all-MiniLM-L6-v2 (22.7 M parameters, pretrained)")
    frozen = pretrained.MINILM_LAYERS - top_layers
    layers = f"layer {frozen + 1}" if top_layers == 1 else f"layers {frozen + 1}-{pretrained.MINILM_LAYERS}"
    lower = "layer 1" if frozen == 1 else f"layers 1-{frozen}"
    trained = top_layers * pretrained.MINILM_LAYER_PARAMETERS / 1e6
    return (functools.partial(pretrained.rotten_tomatoes_states, train, valid, test, max_length, top_layers),
            functools.partial(pretrained.TopLayersClassifier, top_layers),
            (f"the top {top_layers} of all-MiniLM-L6-v2's 6 layers ({layers}, {trained:.1f} M parameters, "
             f"pretrained; the embeddings and {lower} frozen, their states computed once)"))


#: Measured (seed 0, the default sizes and recipe, 300 steps; best validation accuracy in brackets):
#: adamw 0.00316 (0.900; 0.001: 0.883, 0.000316: 0.845), momentum 0.1 (0.887; 0.0316: 0.869, 0.01: 0.828),
#: adagrad 0.01 (0.893; 0.00316: 0.859, 0.001: 0.802). Each is the largest rate tried: a larger one may
#: do better still.
FASHION_LRS: dict[str, float] = {"adamw": 0.00316, "momentum": 0.1, "adagrad": 0.01}
FASHION_SIZES = {"train": 50_000, "valid": 2000, "test": 10_000, "steps": 300}


def fashion(train: int | None, valid: int | None, test: int | None = None) -> Dataset:
    return subset(lab_data.fashion_mnist(), train, valid, test)


def finetune_fashion(train: int = 50_000, valid: int = 2000, test: int = 10_000, steps: int = 300,
                     head_scale: float = 10.0,
                     layer_decay: float = 1.0, clip: float = 1.0, unfreeze: int = 0, patience: int = 0,
                     accumulate: int = 1, autocast: str = "off") -> Problem:
    for name, value in (("train", train), ("valid", valid), ("test", test), ("steps", steps)):
        if value < 1:
            raise ValueError(f"finetune-fashion: {name} must be >= 1, got {value!r}")
    sizes = {"train": train, "valid": valid, "test": test, "steps": steps}
    choices = {"head_scale": head_scale, "layer_decay": layer_decay, "clip": clip, "unfreeze": unfreeze,
               "patience": patience, "accumulate": accumulate, "autocast": resolve_autocast(autocast)}
    fields = recipe("finetune-fashion", **choices)
    return Problem(format_spec("finetune-fashion", {**changed(sizes, FASHION_SIZES),
                                                    **changed(choices, RECIPE_DEFAULTS)}),
                   f"fine-tune a CNN pretrained on MNIST digits (390 k parameters) with a new head on Fashion-MNIST: "
                   f"{steps} steps of batch {128 * accumulate} from {train:,} images, validated on {valid:,}; "
                   f"{recipe_text(**choices)}",
                   functools.partial(fashion, train if train < 50_000 else None, valid if valid < 10_000 else None,
                                     test if test < 10_000 else None),
                   pretrained.PretrainedCNN, F.cross_entropy, "accuracy", True, 0.87,
                   max_steps=steps, batch_size=128, eval_every=max(1, steps // 6), metric_fn=accuracy,
                   lrs=FASHION_LRS, **fields)
