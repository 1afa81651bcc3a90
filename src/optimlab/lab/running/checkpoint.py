"""Checkpoints of a run in progress: written atomically, resumed exactly.

A checkpoint holds everything a run needs to go on as if it had never stopped: the model's
weights, the optimizer's and the scheduler's state, the state of the loop's hooks (gradual
unfreezing, early stopping, clipping counts) and the loop's own position
(:meth:`optimlab.lab.training.loop.Loop.state_dict`: step, shuffling and dropout RNG, records,
evaluations, seconds). It is tagged with the run's key, so a checkpoint of another run is
never taken for this one.

Atomic: the file is written to a temporary file in the same folder, flushed to disk, then moved
over the old one with ``os.replace`` (atomic on POSIX and Windows). A run killed at any moment,
even while saving, leaves either the previous checkpoint or the new one, never half of one; the
temporary file a kill mid-save leaves (``.<name>.<random>.tmp``, never read as a checkpoint) is
deleted when the run starts again. A file that is not a whole checkpoint of the run (empty,
truncated, random bytes, another run's) is a :class:`CheckpointError` naming it, never a
half-restored run.
"""

from __future__ import annotations

import glob
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


def save_atomic(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save(state)`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(dict(state), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def stateful(hooks: Sequence[Any]) -> list[Any]:
    return [h for h in hooks if callable(getattr(h, "state_dict", None)) and callable(getattr(h, "load_state_dict", None))]


def snapshot(key: str, loop: Any, hooks: Sequence[Any], finished: bool = False) -> dict[str, Any]:
    """The checkpoint of ``loop`` (a :class:`~optimlab.lab.training.loop.Loop`) for the run ``key``."""
    return {"format": FORMAT, "key": key, "finished": finished, "model": loop.model.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "scheduler": None if loop.scheduler is None else loop.scheduler.state_dict(),
            "hooks": [h.state_dict() for h in stateful(hooks)], "loop": loop.state_dict()}


class CheckpointError(ValueError):
    """A file where a run's checkpoint should be is not one (empty, damaged, not a checkpoint,
    another run's): the message names the file, says what is wrong and what to do."""


#: What every checkpoint holds (:func:`snapshot`).
KEYS = ("format", "key", "finished", "model", "optimizer", "scheduler", "hooks", "loop")
#: The first bytes of a torch.save file: a zip archive.
ZIP_MAGIC = b"PK\x03\x04"


def unusable(path: Path, key: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path} {problem}; expected the checkpoint of run {key} that optimlab writes there: "
                           f"delete it to start the run over")


def read(path: Path, key: str) -> Any:
    """``torch.load`` of the file (tensors and plain values only: ``weights_only``), its failures
    told as what is wrong with the file rather than as the unpickler's internals."""
    with open(path, "rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if not head:
        raise unusable(path, key, "is empty")
    if head != ZIP_MAGIC:
        raise unusable(path, key, "is not a checkpoint (not a torch.save archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused what it would have had to run
        raise unusable(path, key, "holds objects other than tensors and plain values (refused unread)") from None
    except Exception:  # the archive's reader fails in many ways (RuntimeError, EOFError, KeyError, ...)
        raise unusable(path, key, "is damaged or truncated") from None


def load(path: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it belongs to the run ``key`` (None if there is none);
    :class:`CheckpointError` if the file is not a whole checkpoint of this run."""
    path = Path(path)
    if not path.exists():
        return None
    state = read(path, key)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise unusable(path, key, "is not a checkpoint of this version of optimlab")
    missing = [name for name in KEYS if name not in state]
    if missing:
        raise unusable(path, key, f"lacks {', '.join(missing)}")
    if state["key"] != key:
        raise CheckpointError(f"{path} is the checkpoint of run {state['key']}, not of run {key}; delete it or "
                              f"choose another file")
    return state


def temporaries(path: Path) -> list[Path]:
    """The temporary files :func:`save_atomic` writes before it moves one over ``path``."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def remove_temporaries(path: Path) -> None:
    """Delete the temporary files a writer of ``path`` killed mid-save left behind (a save that
    finishes moves its own over ``path``). One process runs a given run at a time, so none of
    them is being written now."""
    for temporary in temporaries(path):
        temporary.unlink(missing_ok=True)


def restore(state: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            hooks: Sequence[Any]) -> dict[str, Any]:
    """Load a checkpoint into fresh objects built as for the original run; returns the loop's
    state for ``train(..., resume=...)``."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    keeping = stateful(hooks)
    if len(keeping) != len(state["hooks"]):
        raise ValueError(f"the checkpoint holds the state of {len(state['hooks'])} hooks, this run has "
                         f"{len(keeping)}")
    for hook, saved in zip(keeping, state["hooks"]):
        hook.load_state_dict(saved)
    return state["loop"]


class Checkpointer:
    """A loop hook that saves a checkpoint every ``every`` steps (atomically, to ``path``)."""

    def __init__(self, path: Path, key: str, every: int, hooks: Sequence[Any]) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Checkpointer: every must be an int >= 1 (steps), got {every!r}")
        self.path, self.key, self.every, self.hooks = Path(path), key, every, list(hooks)
        remove_temporaries(self.path)
        self.saved = 0
        self.loop: Any = None  # the loop last seen, for a final save after training

    def after_step(self, loop: Any) -> None:
        self.loop = loop
        if loop.step % self.every == 0:
            self.save(loop)

    def save(self, loop: Any, finished: bool = False) -> None:
        save_atomic(snapshot(self.key, loop, self.hooks, finished), self.path)
        self.saved += 1
