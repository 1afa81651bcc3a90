"""The main job: run every example and summarise their results against their targets.

``python3 dev.py run`` runs this file. It exits with status 1 if any target is missed:

* linear regression y = 2x: every optimizer reaches |w - 2| < 1e-3;
* MNIST: softmax regression reaches test accuracy >= 0.91, the MLP >= 0.97.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the examples import each other by file name

import linear_regression  # noqa: E402
import mnist_classifiers  # noqa: E402
from optimlab.lab import DataNotFoundError  # noqa: E402


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * (70 - len(title))}\n", flush=True)


def main() -> int:
    rows = []  # (example, what, result, target, ok, seconds)

    section("linear regression (examples/linear_regression.py)")
    start = time.perf_counter()
    fits = linear_regression.fit_all()
    linear_regression.report(fits)
    seconds = time.perf_counter() - start
    for f in fits:
        rows.append(("y = 2x", f.name, f"|w-2| = {f.error:.1e}", f"< {linear_regression.TOLERANCE:g}", f.ok, None))
    rows.append(("y = 2x", "(whole example)", "", "", True, seconds))

    section("MNIST classifiers (examples/mnist_classifiers.py)")
    start = time.perf_counter()
    try:
        outcomes = mnist_classifiers.fit_all()
    except DataNotFoundError as error:
        print(f"cannot run: {error}")
        return 1
    mnist_classifiers.report(outcomes)
    for o in outcomes:
        rows.append(("MNIST", f"{o.name}, {o.optimizer}", f"test acc {o.test:.4f} (valid {o.valid:.4f})",
                     f">= {o.target:.2f}", o.ok, o.seconds))
    rows.append(("MNIST", "(whole example, with reading the data)", "", "", True, time.perf_counter() - start))

    section("summary")
    for example, what, result, target, ok, secs in rows:
        verdict = "" if not target else ("ok" if ok else "MISSED")
        timing = "" if secs is None else f"{secs:6.1f} s"
        print(f"{example:<8}{what:<52}{result:<34}{target:<8}{verdict:<8}{timing}")
    missed = [f"{example}: {what}" for example, what, _, target, ok, _ in rows if target and not ok]
    if missed:
        print("\ntargets missed:\n  " + "\n  ".join(missed))
        return 1
    print(f"\nall {sum(1 for row in rows if row[3])} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
