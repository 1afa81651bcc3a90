"""Processes seen through Linux's /proc (no psutil): children, process groups, and waiting for events.

The tests that start, interrupt and kill ``optimlab`` commands use these to check that no process
outlives the command, and to wait for what the command writes rather than for a guessed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running or sleeping (not gone, not a zombie waiting for its parent to reap it)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def processes() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid``."""
    return [p for p in processes() if (f := stat_fields(p)) is not None and int(f[1]) == pid and alive(p)]


def group(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid`` (a command started with ``start_new_session``
    leads its own group, which its workers and helpers join)."""
    return [p for p in processes() if (f := stat_fields(p)) is not None and int(f[2]) == pgid and alive(p)]


def wait_until(check: Callable[[], T], what: str, limit: float = 120.0) -> T:
    """``check()`` once it is truthy, polled every 20 ms; the test fails after ``limit`` seconds.
    The limit only bounds a hang: the event waited for is one the code makes happen."""
    deadline = time.monotonic() + limit
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {limit:g} s for {what}")
        time.sleep(0.02)
    return value
