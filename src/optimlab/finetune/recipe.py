"""The fine-tuning recipe: every choice in one place, each built from the pieces of this package.

A :class:`Recipe` says how to fine-tune (learning rates for body and head, weight decay and
who is exempt, layer-wise decay, warm-up and decay, clipping, accumulation, autocast, gradual
unfreezing, early stopping); it does not pick the optimizer. Given any optimizer class::

    recipe = Recipe(lr=1e-4, head_lr=1e-3, weight_decay=0.01, warmup=0.1, clip_norm=1.0)
    optimizer = optimlab.AdamW(recipe.param_groups(model, head=["classifier"]))
    scheduler = recipe.scheduler(optimizer, total_steps)
    hooks = recipe.hooks(model, head=["classifier"], metric="accuracy")

and the lab's training loop takes ``scheduler``, ``hooks``, ``accumulate=recipe.accumulate`` and
``autocast=recipe.autocast_dtype()``. The defaults are the recommended setup for a pretrained
transformer with a new classification head (BERT's recipe with a 10x head learning rate).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from optimlab.finetune.freeze import GradualUnfreezing, top_down_stages
from optimlab.finetune.groups import Depth, param_groups, transformer_depth
from optimlab.finetune.hooks import EarlyStopping, GradientClipping
from optimlab.finetune.precision import MODES, autocast_dtype
from optimlab.finetune.schedule import DECAYS, warmup_decay, warmup_steps


@dataclass(frozen=True)
class Recipe:
    """How to fine-tune (see the module docstring).

    lr: the body's learning rate. head_lr: the head's (None: ``lr``). weight_decay: for all but
    biases and normalization parameters (None: the optimizer's own). layer_decay: layer-wise learning-rate decay factor
    (None: off). warmup: fraction of the steps (< 1) or number of steps. decay: "linear",
    "cosine" or "none" after the warm-up. clip_norm: global gradient-norm cap (None: off).
    accumulate: micro-batches per optimizer step. autocast: "off", "bf16" or "auto".
    unfreeze_every: gradual unfreezing, steps between stages (None: everything trains from the
    start). patience: early stopping after this many evaluations without improvement (None: off).
    """

    lr: float = 1e-4
    head_lr: float | None = 1e-3
    weight_decay: float | None = 0.01
    layer_decay: float | None = None
    warmup: float = 0.1
    decay: str = "linear"
    clip_norm: float | None = 1.0
    accumulate: int = 1
    autocast: str = "off"
    unfreeze_every: int | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        for name in ("lr", "head_lr", "clip_norm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                      or not 0 < value < math.inf):
                raise ValueError(f"Recipe: {name} must be a positive number{' or None' if name != 'lr' else ''}, "
                                 f"got {value!r}")
        if self.weight_decay is not None and (isinstance(self.weight_decay, bool)
                                              or not isinstance(self.weight_decay, numbers.Real)
                                              or not 0 <= self.weight_decay < math.inf):
            raise ValueError(f"Recipe: weight_decay must be a finite number >= 0 or None, got {self.weight_decay!r}")
        if self.layer_decay is not None and (isinstance(self.layer_decay, bool)
                                             or not isinstance(self.layer_decay, numbers.Real)
                                             or not 0 < self.layer_decay <= 1):
            raise ValueError(f"Recipe: layer_decay must be in (0, 1] or None, got {self.layer_decay!r}")
        warmup_steps(1000, self.warmup)  # checks the value
        if self.decay not in DECAYS:
            raise ValueError(f"Recipe: decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        for name in ("accumulate", "unfreeze_every", "patience"):
            value = getattr(self, name)
            if (value is not None or name == "accumulate") and (
                    isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"Recipe: {name} must be an int >= 1{'' if name == 'accumulate' else ' or None'}, "
                                 f"got {value!r}")
        if self.autocast not in MODES:
            raise ValueError(f"Recipe: autocast must be one of {', '.join(MODES)}, got {self.autocast!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def param_groups(self, model: nn.Module, head: Sequence[str] = (), depth: Depth = transformer_depth) -> list[dict]:
        """Param groups by the recipe's rules (:func:`optimlab.finetune.param_groups`)."""
        return param_groups(model, self.lr, weight_decay=self.weight_decay, head=head,
                            head_lr=self.head_lr if head else None, layer_decay=self.layer_decay, depth=depth)

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """Warm-up then decay over ``total_steps`` optimizer steps (:func:`warmup_decay`)."""
        return warmup_decay(optimizer, total_steps, self.warmup, self.decay)

    def hooks(self, model: nn.Module, head: Sequence[str] = (), metric: str = "accuracy",
              higher_is_better: bool = True, depth: Depth = transformer_depth) -> list[Any]:
        """The training-loop hooks the recipe asks for: gradient clipping, gradual unfreezing
        (top down from ``head``), early stopping on ``metric``. Building them freezes the model
        when gradual unfreezing is on."""
        hooks: list[Any] = []
        if self.clip_norm is not None:
            hooks.append(GradientClipping(self.clip_norm))
        if self.unfreeze_every is not None:
            if not head:
                raise ValueError("Recipe: gradual unfreezing (unfreeze_every) needs the head's name prefixes")
            hooks.append(GradualUnfreezing(model, top_down_stages(model, head, depth), self.unfreeze_every))
        if self.patience is not None:
            hooks.append(EarlyStopping(metric, self.patience, higher_is_better=higher_is_better))
        return hooks

    def autocast_dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.autocast)
