"""Argument types of the ``optimlab`` commands: each turns an option's text into its value, or
says, argparse's way (usage message, exit status 2), what it expected.

Every command's options are checked here, at the edge, once: what gets past argparse is valid,
and a bad value never reaches the lab as a traceback. (The lab's own functions still check their
arguments, for callers that are not the command line.)
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any


def names_list(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def specs_list(text: str) -> list[str]:
    """Comma-separated specs whose parameters are comma-separated too: an item ``key=value``
    (no ``:``) continues the spec before it. ``'a,b:x=1,y=2,c'`` -> ``['a', 'b:x=1,y=2', 'c']``."""
    specs: list[str] = []
    for item in names_list(text):
        if specs and "=" in item and ":" not in item.split("=", 1)[0]:
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def parsed(text: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str,
           unparsable: str | None = None) -> Any:
    """``convert(text)`` if it parses and ``ok`` holds, else argparse's error: "expected ..."."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {unparsable or expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return parsed(text, int, lambda value: value >= 1, "a whole number >= 1")


def non_negative_int(text: str) -> int:
    return parsed(text, int, lambda value: value >= 0, "a whole number >= 0")


def positive_float(text: str) -> float:
    return parsed(text, float, lambda value: 0 < value < math.inf, "a positive finite number", "a positive number")


def non_negative_float(text: str) -> float:
    return parsed(text, float, lambda value: 0 <= value < math.inf, "a finite number >= 0", "a number >= 0")


def lr_list(text: str) -> list[float]:
    """'1e-3,1e-2' -> [0.001, 0.01], each rate exactly as typed; two that are the same number
    ('0.001,1e-3') are an error, not one rate run once."""
    items = names_list(text)
    values = [positive_float(item) for item in items]
    if not values:
        raise argparse.ArgumentTypeError(f"expected learning rates separated by commas, got {text!r}")
    for i, value in enumerate(values):
        if value in values[:i]:
            first = items[values.index(value)]
            raise argparse.ArgumentTypeError(f"expected different learning rates, got {first!r} and {items[i]!r}, "
                                             f"which are the same number")
    return values


def folder_name(name: str) -> str:
    """The file-name-safe form of a sweep, problem or spec name, for a folder or file it names:
    each run of characters other than letters, digits, '.', '_' and '-' becomes '_'
    ("finetune/finetune-fashion:steps=24" -> "finetune_finetune-fashion_steps_24"). ValueError
    if nothing of the name is left, or only '.' or '..', which name no folder of their own."""
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    if folder in ("", ".", ".."):
        raise ValueError(f"{name!r} names no folder of its own (it would be {folder!r})")
    return folder


def sweep_name(text: str) -> str:
    """A sweep name. It also names the sweep's report folder under ``--out`` (:func:`folder_name`),
    so it must be a name and not a path: not empty, not absolute, no '.' or '..' part. Separators
    inside a name are allowed: the fine-tuning sweeps are called ``finetune/<problem>`` (their
    folder: ``finetune_<problem>``)."""
    parts = re.split(r"[/\\]", text)
    try:
        if text.startswith(("/", "\\")) or any(part.strip() in ("", ".", "..") for part in parts):
            raise ValueError(text)
        folder_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a sweep name, not a path (it names the report folder under "
                                         f"--out): not empty, not absolute, no '.' or '..' part; got {text!r}") from None
    return text
