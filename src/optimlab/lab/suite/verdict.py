"""The recommendation: which setup to use, per workload and overall, and how it compares with
tuned AdamW + warm-up cosine (the baseline) under the same tuning budget.

Per workload the recommended track is the one with the fewest median steps to the target at its
tuned setting (misses count as never), ties broken by the fewest robust seconds. Overall it is
the track with the highest score of the tuned steps profile. The comparison is the baseline's
steps divided by the recommended track's (so > 1 means fewer steps than the baseline), with a
95% bootstrap interval over the seeds; the goal is 1.25x, and every sentence says whether the
interval clears it, clears 1 but not 1.25, or does not even clear 1.
"""

from __future__ import annotations

import math
from typing import Any

from optimlab.lab.suite import stats
from optimlab.lab.suite.tracks import BASELINE

GOAL = 1.25


def reached_steps(entry: dict[str, Any]) -> list[float] | None:
    """The seeds' steps to the target if every seed reached it, else None."""
    steps = entry["steps_per_seed"]
    return [float(s) for s in steps] if steps and all(s is not None for s in steps) else None


def speedup_text(low: float, high: float, ratio: float) -> str:
    if low >= GOAL:
        verdict = f"it meets the {GOAL:g}x goal"
    elif low > 1:
        verdict = f"faster, but NOT the {GOAL:g}x goal: the interval reaches down to {low:.2f}x"
    elif high < 1:
        verdict = "it is SLOWER than the baseline"
    else:
        verdict = f"NOT the {GOAL:g}x goal: the interval includes 1x (no difference shown)"
    return f"{ratio:.2f}x fewer steps than tuned AdamW + cosine (95% interval {low:.2f}-{high:.2f}x): {verdict}"


def best_track(workload: dict[str, Any]) -> str | None:
    def key(name: str) -> tuple[float, float]:
        tuned = workload["tracks"][name]["tuned"]
        return tuned["steps"]["median"], tuned["seconds"]["median"]

    ranked = sorted(workload["tracks"], key=key)
    return ranked[0] if ranked and math.isfinite(key(ranked[0])[0]) else None


def setup_text(name: str, tracks: dict[str, Any], values: dict[str, float]) -> str:
    """``adam, constant lr (lr 0.012, beta2 0.981)``: optimizer, schedule, hyperparameters."""
    schedule = "constant lr" if tracks[name]["schedule"] == "constant" else "warm-up + cosine decay"
    return f"{name}, {schedule} ({values_text(values)})"


def workload_verdict(workload: dict[str, Any], tracks: dict[str, Any]) -> dict[str, Any]:
    best = best_track(workload)
    out: dict[str, Any] = {"problem": workload["problem"], "track": best}
    if best is None:
        out["text"] = f"{workload['problem']}: no track reached the target with half of its seeds."
        return out
    tuned = workload["tracks"][best]["tuned"]
    out.update(schedule=tracks[best]["schedule"], values=tuned["values"], steps=tuned["steps"],
               seconds=tuned["seconds"])
    text = f"{workload['problem']}: {setup_text(best, tracks, tuned['values'])}, {steps_text(tuned)}"
    base, mine = reached_steps(workload["tracks"].get(BASELINE, {}).get("tuned", {"steps_per_seed": []})), \
        reached_steps(tuned)
    if best == BASELINE:
        out["speedup"] = None
        text += "; the baseline itself is the fastest here"
    elif base and mine:
        ratio, low, high = stats.ratio_interval(base, mine)
        out["speedup"] = {"ratio": ratio, "low": low, "high": high, "meets_goal": low >= GOAL}
        text += "; " + speedup_text(low, high, ratio)
    else:
        out["speedup"] = None
        text += "; no ratio to the baseline (a seed of one of them missed the target)"
    out["text"] = text + "."
    return out


def overall_verdict(summary: dict[str, Any]) -> dict[str, Any]:
    scores = summary["profiles"]["tuned_steps"]["scores"]
    seconds = summary["profiles"]["tuned_seconds"]["scores"]
    best = max(scores, key=lambda t: (scores[t], seconds.get(t, 0.0)))
    per = {w: data["tracks"][best]["tuned"] for w, data in summary["workloads"].items()}
    out: dict[str, Any] = {"track": best, "label": summary["tracks"][best]["label"], "score": scores[best],
                           "schedule": summary["tracks"][best]["schedule"],
                           "values": {w: entry["values"] for w, entry in per.items()}}
    lrs = [entry["values"]["lr"] for entry in per.values() if "lr" in entry["values"]]
    schedule = "constant lr" if summary["tracks"][best]["schedule"] == "constant" else "warm-up + cosine decay"
    text = (f"Overall: {best} ({summary['tracks'][best]['label']}, {schedule}), tuned steps score {scores[best]:.2f}"
            + (f", lr from {min(lrs):.3g} to {max(lrs):.3g} across the workloads" if lrs else ""))
    pairs = []
    for data in summary["workloads"].values():
        if BASELINE not in data["tracks"]:
            continue
        base, mine = reached_steps(data["tracks"][BASELINE]["tuned"]), reached_steps(data["tracks"][best]["tuned"])
        if base and mine:
            pairs.append((base, mine))
    if best == BASELINE:
        out["speedup"] = None
        text += ". Tuned AdamW + cosine is itself the best setup: nothing here beats it by 1.25x."
    elif pairs:
        ratio, low, high = stats.geometric_ratio_interval(pairs)
        out["speedup"] = {"ratio": ratio, "low": low, "high": high, "meets_goal": low >= GOAL,
                          "workloads": len(pairs)}
        text += (f". Over the {len(pairs)} workloads both solved with every seed (geometric mean): "
                 + speedup_text(low, high, ratio) + ".")
    else:
        out["speedup"] = None
        text += ". No workload where both it and the baseline reached the target with every seed: no ratio."
    out["text"] = text
    return out


def values_text(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in values.items())


def steps_text(entry: dict[str, Any]) -> str:
    steps = entry["steps"]
    if steps["mean"] is None:
        return f"never reached ({entry['seeds']} seeds)"
    span = "" if steps["low"] is None else f" (95% interval {steps['low']:.0f}-{steps['high']:.0f})"
    return f"{steps['mean']:.0f} steps to the target{span}, {entry['reached']}/{entry['seeds']} seeds reached it"


def recommendations(summary: dict[str, Any]) -> dict[str, Any]:
    return {"workloads": [workload_verdict(w, summary["tracks"]) for w in summary["workloads"].values()],
            "overall": overall_verdict(summary)}
