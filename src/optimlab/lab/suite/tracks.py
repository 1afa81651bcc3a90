"""What the suite compares: a *track* is an optimizer, a schedule and the hyperparameters it tunes.

Every optimizer of the registry (:data:`optimlab.optimizers.registry.ENTRIES`) is a track under the
lab's name for it (its class name in lower case), tuned over its entry's ``search_space`` at a
constant learning rate; the baseline is AdamW with linear warm-up and cosine decay, tuned the same
way. An optimizer the lab's loop cannot drive (``zoo.REFUSED``) is skipped with its reason, so one
added to the registry later joins every table without a change here.

Search-space names are the registry's: a name the optimizer takes (``lr``, ``momentum``,
``weight_decay``) is passed as is; ``beta1`` / ``beta2`` set one half of ``betas``, the other
half kept at the optimizer's default.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optimlab.lab.training.zoo import REFUSED, get_optimizer, registry_name
from optimlab.optimizers.registry import ENTRIES, Entry

#: The baseline's name and schedule: AdamW, linear warm-up over 5% of the budget, cosine to 0.
BASELINE = "adamw+warmup-cosine"
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class Track:
    """``optimizer`` (a lab name) at ``schedule`` ("constant" or "warmup-cosine"), tuned over
    ``search_space`` (name -> (low, high), log scale); ``defaults`` are the optimizer's own values
    of those names (the self-tuning track runs them untouched)."""

    name: str
    optimizer: str
    schedule: str
    search_space: Mapping[str, tuple[float, float]]
    defaults: Mapping[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The optimizer's class name, or the lab's description where the lab wraps it (Muon +
        AdamW, L-BFGS one iteration a step); the schedule when it is not constant."""
        spec = get_optimizer(self.optimizer)
        text = spec.label if spec.cls.__module__ == "optimlab.lab.training.zoo" else spec.cls.__name__
        return text + (" + warm-up cosine" if self.schedule != "constant" else "")

    def schedule_spec(self, budget: int) -> str | None:
        """The lab's schedule spec for a run of ``budget`` steps (None: constant lr)."""
        if self.schedule == "constant":
            return None
        return f"warmup-cosine:warmup={max(1, round(WARMUP_FRACTION * budget))}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "optimizer": self.optimizer, "schedule": self.schedule,
                "search_space": {k: list(v) for k, v in self.search_space.items()}, "defaults": dict(self.defaults)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Track:
        return cls(data["name"], data["optimizer"], data["schedule"],
                   {k: (float(v[0]), float(v[1])) for k, v in data["search_space"].items()}, dict(data["defaults"]))


def signature_defaults(entry: Entry) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(entry.cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def optimizer_kwargs(optimizer: str, values: Mapping[str, float]) -> tuple[float, dict[str, Any]]:
    """``(lr, kwargs)`` for the registry optimizer ``optimizer`` from search-space ``values``."""
    entry = next(e for e in ENTRIES if registry_name(e) == optimizer)
    defaults = signature_defaults(entry)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name == "lr":
            continue
        if name in ("beta1", "beta2") and "betas" in defaults:
            betas = list(kwargs.get("betas", defaults["betas"]))
            betas[0 if name == "beta1" else 1] = float(value)
            kwargs["betas"] = betas
        elif name in defaults:
            kwargs[name] = float(value)
        else:
            raise ValueError(f"{optimizer}: the search space names {name!r}, which {entry.name} does not take")
    return float(values["lr"]), kwargs


def default_values(entry: Entry) -> dict[str, float] | str:
    """The optimizer's own value of each search-space name, or why it has none."""
    defaults, values = signature_defaults(entry), {}
    for name in entry.search_space:
        if name in ("beta1", "beta2") and "betas" in defaults:
            values[name] = float(defaults["betas"][0 if name == "beta1" else 1])
        elif isinstance(defaults.get(name), (int, float)) and not isinstance(defaults.get(name), bool):
            values[name] = float(defaults[name])
        else:
            return f"{entry.name} has no default {name}"
    return values


def registry_tracks() -> tuple[list[Track], dict[str, str]]:
    """Every registry optimizer as a constant-lr track, then the baseline; and the skipped ones, with why."""
    tracks, skipped = [], {}
    for entry in ENTRIES:
        name = registry_name(entry)
        if name in REFUSED:
            skipped[name] = REFUSED[name]
            continue
        defaults = default_values(entry)
        if isinstance(defaults, str):
            skipped[name] = defaults
            continue
        space = {k: (float(lo), float(hi)) for k, (lo, hi) in entry.search_space.items()}
        tracks.append(Track(name, name, "constant", space, defaults))
    adamw = next(t for t in tracks if t.optimizer == "adamw")
    tracks.append(Track(BASELINE, "adamw", "warmup-cosine", adamw.search_space, adamw.defaults))
    return tracks, skipped


def clip_to(space: Mapping[str, tuple[float, float]], values: Mapping[str, float]) -> dict[str, float]:
    """``values`` moved into ``space`` (a default outside the searched range starts at its edge)."""
    return {k: min(max(values[k], lo), hi) for k, (lo, hi) in space.items()}


def log_uniform_mid(low: float, high: float) -> float:
    return math.sqrt(low * high)
