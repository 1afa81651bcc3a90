"""A line search for the strong Wolfe conditions (Nocedal & Wright, 2006, "Numerical Optimization",
2nd ed., Sec. 3.5, Algorithms 3.5 and 3.6), with cubic interpolation (eq. (3.59)).

Along a descent direction ``d`` from ``x`` (slope ``g^T d < 0``), a step length ``t`` is accepted when

    f(x + t d) <= f(x) + c1 t g^T d              (sufficient decrease, the Armijo condition)
    |g(x + t d)^T d| <= c2 |g^T d|               (curvature: the slope has flattened enough)

``c1 = 1e-4``, ``c2 = 0.9``: Nocedal & Wright's values for quasi-Newton methods. The search
first brackets an interval that must hold such a ``t`` (:func:`bracket`), then shrinks it by
cubic interpolation (:func:`zoom`). It behaves as torch.optim.LBFGS's search (from Torch7's
``lswolfe.lua``): the same trials, safeguards and float operations, so L-BFGS agrees with torch
to the bit; among them ``bracket``'s test ``new.f >= previous.f`` only from the third trial on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import Tensor

#: ``evaluate(t)``: the loss (a float) and the flat gradient at ``x + t d``, ``x`` left as it was.
Evaluate = Callable[[Any], tuple[float, Tensor]]


class Point(NamedTuple):
    """A trial step: its length ``t``, loss ``f``, gradient ``g`` and slope ``gtd = g^T d``."""

    t: Any
    f: float
    g: Tensor
    gtd: Tensor


def cubic_minimizer(x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any, bounds: tuple[Any, Any] | None = None
                    ) -> Any:
    """The minimizer of the cubic through ``(x1, f1)`` and ``(x2, f2)`` with slopes ``g1`` and
    ``g2`` (Nocedal & Wright, eq. (3.59)), clamped to ``bounds`` (default: between the points);
    the middle of ``bounds`` when the cubic has no minimizer (``d1^2 < g1 g2``)::

        d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2),   d2 = sqrt(d1^2 - g1 g2)
        x  = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)        (x2 the larger point)
    """
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if not d2_square >= 0:
        return (low + high) / 2.0
    d2 = d2_square.sqrt()
    if x1 > x2:  # the formula reads from the larger point; d1 and d2 are symmetric in the two
        x1, g1, x2, g2 = x2, g2, x1, g1
    minimizer = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    return min(max(minimizer, low), high)


def probe(evaluate: Evaluate, d: Tensor, t: Any) -> Point:
    f, g = evaluate(t)
    return Point(t, f, g, g.dot(d))


def bracket(evaluate: Evaluate, d: Tensor, start: Point, t: Any, c1: float, c2: float, max_trials: int
            ) -> tuple[list[Point], bool, int]:
    """Algorithm 3.5: longer trial steps (extrapolated by :func:`cubic_minimizer` into
    ``[t + 0.01 (t - t_prev), 10 t]``) until one satisfies the strong Wolfe conditions (returned
    alone, done) or two bracket a point that does: the last one failed sufficient decrease, rose
    above the previous, or sloped upwards. Returns the bracket, whether done, and the trials
    made after the first; with none left, the bracket ``[0, t]``."""
    previous, new = start._replace(t=0), probe(evaluate, d, t)
    trials = 0
    while trials < max_trials:
        if new.f > start.f + c1 * new.t * start.gtd or (trials > 1 and new.f >= previous.f):
            return [previous, new], False, trials
        if abs(new.gtd) <= -c2 * start.gtd:
            return [new], True, trials
        if new.gtd >= 0:
            return [previous, new], False, trials
        t = cubic_minimizer(previous.t, previous.f, previous.gtd, new.t, new.f, new.gtd,
                            bounds=(new.t + 0.01 * (new.t - previous.t), new.t * 10))
        previous, new = new, probe(evaluate, d, t)
        trials += 1
    return [start._replace(t=0), new], False, trials


def keep_off_the_ends(t: Any, a: Any, b: Any, slow: bool) -> tuple[Any, bool]:
    """A trial ``t`` within 10% of the bracket ``[a, b]``'s length from an end is moved to 10%
    inside if it is outside, on an end, or was already close last time (``slow``): the bracket
    must shrink by a fair share each trial. Returns ``t`` and whether it is close (the next ``slow``)."""
    top, bottom = max(a, b), min(a, b)
    margin = 0.1 * (top - bottom)
    if not min(top - t, t - bottom) < margin:
        return t, False
    if slow or t >= top or t <= bottom:
        return (top - margin if abs(t - top) < abs(t - bottom) else bottom + margin), False
    return t, True


def zoom(evaluate: Evaluate, d: Tensor, start: Point, points: list[Point], done: bool, c1: float, c2: float,
         tolerance_change: float, trials: int, max_trials: int) -> tuple[Point, int]:
    """Algorithm 3.6: shrink the bracket around its lower end ``points[low]``, a trial by cubic
    interpolation each time, until a trial satisfies the strong Wolfe conditions, the bracket is
    shorter than ``tolerance_change`` along ``d`` or the trials run out. Returns the lowest point."""
    d_norm = d.abs().max()
    slow = False
    low, high = (0, 1) if points[0].f <= points[-1].f else (1, 0)
    while not done and trials < max_trials:
        if abs(points[1].t - points[0].t) * d_norm < tolerance_change:
            break
        t = cubic_minimizer(points[0].t, points[0].f, points[0].gtd, points[1].t, points[1].f, points[1].gtd)
        t, slow = keep_off_the_ends(t, points[0].t, points[1].t, slow)
        new = probe(evaluate, d, t)
        trials += 1
        if new.f > start.f + c1 * t * start.gtd or new.f >= points[low].f:
            points[high] = new  # no sufficient decrease: a new upper end
            low, high = (0, 1) if points[0].f <= points[1].f else (1, 0)
            continue
        if abs(new.gtd) <= -c2 * start.gtd:
            done = True
        elif new.gtd * (points[high].t - points[low].t) >= 0:
            points[high] = points[low]  # the minimum lies between the new point and the old low end
        points[low] = new
    return points[low], trials


def strong_wolfe(evaluate: Evaluate, d: Tensor, t: Any, f: float, g: Tensor, gtd: Tensor, c1: float = 1e-4,
                 c2: float = 0.9, tolerance_change: float = 1e-9, max_trials: int = 25
                 ) -> tuple[float, Tensor, Any, int]:
    """A step length along ``d`` satisfying the strong Wolfe conditions, from the first trial ``t``.

    ``f``, ``g``, ``gtd``: the loss, gradient and slope ``g^T d`` at ``t = 0``. At most
    ``max_trials`` evaluations after the first. Returns the loss, gradient and length of the
    step found, and the number of evaluations made.
    """
    start = Point(0, f, g, gtd)
    points, done, trials = bracket(evaluate, d, start, t, c1, c2, max_trials)
    best, trials = zoom(evaluate, d, start, points, done, c1, c2, tolerance_change, trials, max_trials)
    return best.f, best.g, best.t, trials + 1
