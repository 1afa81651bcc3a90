"""The suite's ``--json`` summary, for scripts: per track its scores and, per workload, steps and
seconds to the target with intervals; then the recommendation. Written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def finite(value: Any) -> Any:
    """JSON has no inf or nan: they become None (never reached / not measured)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def numbers(entry: dict[str, Any]) -> dict[str, Any]:
    keep = ("values", "seeds", "reached", "steps", "seconds", "cpu_seconds", "noisy", "wall_over_cpu",
            "step_time_spread")
    return {k: entry[k] for k in keep}


def json_summary(summary: dict[str, Any], verdicts: dict[str, Any]) -> dict[str, Any]:
    profiles = summary["profiles"]
    tracks = {}
    for name, track in summary["tracks"].items():
        tracks[name] = {
            **track,
            "score": profiles["tuned_steps"]["scores"][name],
            "score_seconds": profiles["tuned_seconds"]["scores"][name],
            "score_self_tuning": profiles["self_tuning_steps"]["scores"][name],
            "workloads": {w: {"tuned": numbers(data["tracks"][name]["tuned"]),
                              "default": numbers(data["tracks"][name]["default"]),
                              "trials": len(data["tracks"][name]["trials"])}
                          for w, data in summary["workloads"].items()}}
    return finite({"suite": summary["suite"], "n_trials": summary["n_trials"], "seeds": summary["seeds"],
                   "workloads": {w: {k: d[k] for k in ("budget", "metric", "higher_is_better", "target")}
                                 for w, d in summary["workloads"].items()},
                   "noisy_workloads": profiles["noisy_workloads"], "tracks": tracks,
                   "recommendation": verdicts})


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """``data`` as JSON at ``path``, through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
