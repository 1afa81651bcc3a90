"""Parameter groups by rule: which weights decay, and which learning rate each layer gets.

The groups are plain ``torch.optim`` param groups (dicts with ``params``, ``lr``,
``weight_decay``), so they work with any optimizer, optimlab's or torch's, and with anything
that takes an optimizer (a scheduler, Hugging Face's Trainer). Parameters are given as
``(name, tensor)`` pairs, torch's named form, so each group also carries ``param_names`` and
checkpoints can be matched by name.

Three rules, each optional:

* **No weight decay for biases and normalization parameters.** Decay pulls a weight towards
  zero; for a bias or a LayerNorm gain that is not regularization but a bias towards a wrong
  value (a LayerNorm gain of 0 switches the layer off). BERT's original recipe (Devlin et al.
  2019) and Hugging Face's Trainer exclude them; :func:`no_decay` decides (1-d tensors and every
  parameter of a normalization layer).
* **Head versus body.** A new head starts from random weights and needs a larger learning rate
  than a pretrained body, which must move little to keep what it knows: parameters whose name
  starts with one of ``head``'s prefixes get ``head_lr``.
* **Layer-wise learning-rate decay** (discriminative fine-tuning, Howard & Ruder 2018; the
  ELECTRA recipe, Clark et al. 2020; BEiT's convention): with the embeddings at depth 0 and
  ``L`` numbered layers above them (depths 1..L), a body parameter at depth ``d`` gets
  ``lr * decay ** (L + 1 - d)``: the top layer ``lr * decay``, the embeddings
  ``lr * decay ** (L + 1)``, and whatever sits above the numbered layers (a pooler, a final
  norm) ``lr``, as the head does. Lower layers hold more general features and change least. :func:`transformer_depth` numbers the layers of the usual
  transformer naming (``embeddings``, ``encoder.layer.3``, ``layers.3``, ``h.3``, ``blocks.3``);
  any other ``depth(name)`` function can be given.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import Tensor, nn

#: Module types whose parameters never decay (gains and shifts of a normalization).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm, their lazy forms
)

#: ``depth(name)`` -> the layer's depth (0 = embeddings, larger = closer to the output), or
#: None for a parameter outside the numbered layers (it is treated as the top: no decay).
Depth = Callable[[str], "int | None"]

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|blocks|block)\.(\d+)(?:\.|$)")
_EMBEDDINGS = re.compile(r"(?:^|\.)(?:embeddings?|embed_tokens|wte|wpe|tok_embeddings)(?:\.|$)")


def transformer_depth(name: str) -> int | None:
    """Depth of a parameter of a transformer in the usual naming: 0 for the embeddings,
    ``i + 1`` for layer ``i`` (``encoder.layer.i``, ``layers.i``, ``h.i``, ``blocks.i``), None
    for anything else (pooler, final norm, head)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if _EMBEDDINGS.search(name):
        return 0
    return None


def norm_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that belong to normalization layers."""
    return {f"{module_name}.{name}" if module_name else name
            for module_name, module in model.named_modules() if isinstance(module, NORM_TYPES)
            for name, _ in module.named_parameters(recurse=False)}


def no_decay(name: str, param: Tensor, norm_names: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
    """The default rule: no weight decay for biases, for 1-d tensors (gains, scales) and for
    parameters of normalization layers (``norm_names``)."""
    return name.endswith("bias") or param.ndim <= 1 or name in norm_names


def param_groups(model: nn.Module, lr: float, *, weight_decay: float | None = None, head: Sequence[str] = (),
                 head_lr: float | None = None, layer_decay: float | None = None, depth: Depth = transformer_depth,
                 decay_rule: Callable[..., bool] | None = no_decay, trainable_only: bool = False) -> list[dict[str, Any]]:
    """Param groups of ``model`` by rule (see the module docstring for the rules).

    Args:
        lr: the body's learning rate (before layer-wise decay).
        weight_decay: for the parameters that decay; None leaves their groups without a
            ``weight_decay`` key, so they take the optimizer's own (its default or the value
            given to it). Those ``decay_rule`` exempts always get 0.
        head: name prefixes of the new head's parameters (e.g. ``["classifier"]``).
        head_lr: the head's learning rate (default: ``lr``); the head gets no layer decay.
        layer_decay: factor in (0, 1] per layer below the top (None or 1: no decay).
        depth: ``depth(name)`` -> layer depth or None (see :func:`transformer_depth`).
        decay_rule: ``decay_rule(name, param, norm_names)`` -> True for parameters that get no
            weight decay; None decays everything.
        trainable_only: leave out parameters with ``requires_grad=False``. By default they are
            kept, so parameters unfrozen later (:class:`~optimlab.finetune.GradualUnfreezing`)
            are already in the optimizer (a parameter without a gradient is skipped by a step).

    Returns groups (one per distinct learning rate and weight decay, in the order their first
    parameter appears) with ``params`` as ``(name, tensor)`` pairs and a ``group`` label such as
    ``"body/depth3/decay"``, which optimizers keep and ignore.
    """
    check_positive("lr", lr)
    if weight_decay is not None:
        check_nonnegative("weight_decay", weight_decay)
    if head_lr is not None:
        check_positive("head_lr", head_lr)
    if layer_decay is not None:
        check_real("layer_decay", layer_decay)
        if not 0 < layer_decay <= 1:
            raise ValueError(f"param_groups: layer_decay must be in (0, 1], got {layer_decay!r}")
    if isinstance(head, str):
        head = [head]
    head = tuple(head)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad or not trainable_only]
    if not named:
        raise ValueError("param_groups: the model has no parameters to train"
                         + (" (all have requires_grad=False)" if trainable_only else ""))
    unmatched = [prefix for prefix in head if not any(matches(n, prefix) for n, _ in named)]
    if unmatched:
        raise ValueError(f"param_groups: no parameter name starts with head prefix(es) {unmatched}; "
                         f"names start with: {sorted({n.split('.')[0] for n, _ in named})}")
    norm_names = norm_parameter_names(model)
    depths = {n: depth(n) for n, _ in named if not any(matches(n, prefix) for prefix in head)}
    top = max((d for d in depths.values() if d is not None), default=0)
    groups: dict[tuple[str, float, float | None], dict[str, Any]] = {}
    for name, param in named:
        if name in depths:
            d = depths[name]
            scale = 1.0 if layer_decay is None or d is None else layer_decay ** (top + 1 - d)
            part, group_lr = ("body" if d is None or layer_decay is None else f"body/depth{d}"), lr * scale
        else:
            part, group_lr = "head", lr if head_lr is None else head_lr
        decays = decay_rule is None or not decay_rule(name, param, norm_names)
        wd = weight_decay if decays else 0.0
        label = f"{part}/{'decay' if decays else 'no_decay'}"
        group = groups.get((label, group_lr, wd))
        if group is None:
            group = groups[label, group_lr, wd] = {"params": [], "lr": group_lr, "group": label}
            if wd is not None:
                group["weight_decay"] = wd
        group["params"].append((name, param))
    return list(groups.values())


def matches(name: str, prefix: str) -> bool:
    """Whether ``name`` is ``prefix`` or lies under it (``head`` matches ``head.weight``, not ``header``)."""
    return name == prefix or name.startswith(prefix.rstrip(".") + ".")


def describe_groups(groups: Iterable[dict[str, Any]]) -> list[str]:
    """One line per group: label, learning rate, weight decay, parameter count."""
    lines = []
    for group in groups:
        count = sum((p[1] if isinstance(p, tuple) else p).numel() for p in group["params"])
        wd = group.get("weight_decay")
        lines.append(f"{group.get('group', '?'):<24} lr {group['lr']:.3g}  "
                     f"weight decay {'default' if wd is None else format(wd, 'g'):<8} {count:,} params")
    return lines


def check_real(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"param_groups: {name} must be a finite number, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    check_real(name, value)
    if value <= 0:
        raise ValueError(f"param_groups: {name} must be > 0, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    check_real(name, value)
    if value < 0:
        raise ValueError(f"param_groups: {name} must be >= 0, got {value!r}")
