"""Which execution path the engine takes, and what each path has run.

Choose with :func:`set_path`, :func:`using`, or the environment variable ``OPTIMLAB_ENGINE``
(one of :data:`PATHS`; see :mod:`optimlab.engine` for what each path is).
"""

from __future__ import annotations

import collections
import contextlib
import os
import warnings
from collections.abc import Iterator

PATHS = ("auto", "eager", "fused", "compiled", "triton")

_path = os.environ.get("OPTIMLAB_ENGINE", "auto")
if _path not in PATHS:
    warnings.warn(f"OPTIMLAB_ENGINE={_path!r} is not one of {PATHS}; using 'auto'", stacklevel=1)
    _path = "auto"

#: How many parameter updates each path has run (``engine.path_counts["fused"]``): tests use it
#: to know that a path really ran; nothing in the engine reads it.
path_counts: collections.Counter = collections.Counter()


def set_path(name: str) -> None:
    """Choose the execution path for every optimizer: one of :data:`PATHS`."""
    global _path
    if name not in PATHS:
        raise ValueError(f"optimlab.engine.set_path: path must be one of {PATHS}, got {name!r}")
    _path = name


def get_path() -> str:
    return _path


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    """``with engine.using("eager"): ...`` runs the block on one path, then restores the previous one."""
    previous = _path
    set_path(name)
    try:
        yield
    finally:
        set_path(previous)


_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


