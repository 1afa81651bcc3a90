"""The suite's statistics: intervals over seeds, speed-up ratios, performance profiles, scores.

* :func:`mean_interval`: mean and 95% Student-t interval of the seeds' values.
* :func:`ratio_interval`: mean(a) / mean(b) with a 95% percentile-bootstrap interval, each
  group resampled on its own (seeded: the same numbers give the same interval).
* :func:`performance_profiles`: AlgoPerf's profiles (Dolan & Moré 2002): for each track, the
  fraction of workloads it solves within tau times the fastest track's time, tau in [1, 4].
* :func:`profile_score`: the area under a profile over [1, 4], divided by 3: 1 for a track that
  is fastest everywhere, 0 for one that solves nothing within 4x.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np

#: Two-sided 95% Student-t quantiles by degrees of freedom (1..30); beyond, the normal's 1.96.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
       2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
       2.045, 2.042)
#: tau from 1 to 4, where the profiles are drawn and scored.
TAUS = np.linspace(1.0, 4.0, 301)
TAU_MAX = 4.0


def t_quantile(df: int) -> float:
    return T95[df - 1] if df <= len(T95) else 1.96


def mean_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """``(mean, low, high)``: the 95% interval of the mean (None for fewer than 2 values)."""
    if not values:
        raise ValueError("mean_interval: values must hold at least one number")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def median_with_misses(values: Sequence[float | None]) -> float:
    """The median where a miss (None) counts as infinitely slow: inf when half or more missed."""
    if not values:
        raise ValueError("median_with_misses: values must hold at least one entry")
    ordered = sorted(math.inf if v is None else float(v) for v in values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float], *, resamples: int = 4000,
                   seed: int = 0) -> tuple[float, float, float]:
    """``mean(numerator) / mean(denominator)`` and its 95% bootstrap interval."""
    if not numerator or not denominator:
        raise ValueError("ratio_interval: both groups must hold at least one value")
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if (b <= 0).any() or (a <= 0).any():
        raise ValueError("ratio_interval: values must be positive")
    rng = np.random.default_rng(seed)
    ratios = (rng.choice(a, (resamples, a.size)).mean(axis=1) / rng.choice(b, (resamples, b.size)).mean(axis=1))
    return float(a.mean() / b.mean()), float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def geometric_ratio_interval(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], *, resamples: int = 4000,
                             seed: int = 0) -> tuple[float, float, float]:
    """The geometric mean over workloads of ``mean(a) / mean(b)``, with a bootstrap interval that
    resamples the seeds within every workload."""
    if not pairs:
        raise ValueError("geometric_ratio_interval: need at least one workload")
    rng = np.random.default_rng(seed)
    logs, point = np.zeros(resamples), 0.0
    for a, b in pairs:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        point += math.log(a.mean() / b.mean())
        logs += np.log(rng.choice(a, (resamples, a.size)).mean(axis=1) / rng.choice(b, (resamples, b.size)).mean(axis=1))
    n = len(pairs)
    return (math.exp(point / n), float(np.exp(np.quantile(logs / n, 0.025))),
            float(np.exp(np.quantile(logs / n, 0.975))))


def performance_profiles(times: Mapping[str, Mapping[str, float]],
                         taus: np.ndarray = TAUS) -> dict[str, np.ndarray]:
    """``times[track][workload]`` (inf: not solved) -> each track's profile at ``taus``.

    A workload no track solved says nothing about who is faster and is left out; with none
    left, every profile is zero. A workload missing from a track's times counts as unsolved.
    """
    workloads = sorted({w for per in times.values() for w in per})
    best = {w: min(per.get(w, math.inf) for per in times.values()) for w in workloads}
    solved = [w for w in workloads if math.isfinite(best[w]) and best[w] > 0]
    profiles = {}
    for track, per in times.items():
        if not solved:
            profiles[track] = np.zeros_like(taus)
            continue
        ratios = np.array([per.get(w, math.inf) / best[w] for w in solved])
        profiles[track] = (ratios[None, :] <= taus[:, None] * (1 + 1e-12)).mean(axis=1)
    return profiles


def profile_score(profile: np.ndarray, taus: np.ndarray = TAUS) -> float:
    """Area under ``profile`` over ``taus`` (trapezoids), divided by the span of ``taus``."""
    widths = np.diff(taus)
    area = float(((profile[1:] + profile[:-1]) / 2 * widths).sum())
    return area / float(taus[-1] - taus[0])


def spread(values: Sequence[float]) -> float | None:
    """max / min of positive values (1: all equal); None for none."""
    positive = [v for v in values if v and v > 0]
    return max(positive) / min(positive) if positive else None
