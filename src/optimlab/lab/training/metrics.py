"""Metrics of a model on a whole split, computed in chunks with gradients off."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from optimlab.lab.training.data import Split


def chunks(split: Split, size: int | None) -> Iterator[tuple[Tensor, Tensor]]:
    size = len(split) if size is None else size
    for start in range(0, len(split), size):
        yield split.x[start:start + size], split.y[start:start + size]


@torch.no_grad()
def mean_loss(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], split: Split,
              chunk: int | None = None) -> float:
    """The loss over the whole split, for a ``loss_fn`` that averages over its batch:
    the chunk means weighted by chunk size, so any ``chunk`` gives the same value up to rounding."""
    total = sum(loss_fn(model(x), y).double() * len(x) for x, y in chunks(split, chunk))
    return float(total) / len(split)


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, chunk: int | None = 10_000) -> float:
    """Fraction of examples whose highest-scoring class (argmax of the model's outputs) is ``y``."""
    correct = sum(int((model(x).argmax(dim=1) == y).sum()) for x, y in chunks(split, chunk))
    return correct / len(split)
