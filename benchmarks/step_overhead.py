#!/usr/bin/env python3
"""What a step costs besides its kernel: optimlab's per-step bookkeeping on many small tensors.

The 1M set of ``step_speed.py`` (148 tensors, GPT-2 shapes) is stepped with the fused kernel
replaced by a no-op, so only the work around it is timed: the facade, ``engine.collect``
(gradients and state dicts), ``engine_fused.prepare`` (the steady-state confirmation) and
``engine_fused.run_group`` (hyperparameters, the kernel call, version counters). One thread,
CPU time of the stepping thread, which other processes cannot inflate.

* *warm*: steps back to back, everything in cache;
* *cold*: each step after writing 64 MB elsewhere, so the step's objects come from DRAM, as
  after a backward pass.

Rounds alternate between the two kinds of steady-state check: the native helper
(``optimlab.engine_native``, if it can be loaded here) and the Python checks.

    python benchmarks/step_overhead.py
    python benchmarks/step_overhead.py --optimizers SGD(momentum) --rounds 4
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "src", ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from optimlab import engine, engine_fused, engine_native  # noqa: E402
from step_speed import OPTIMIZERS, make_params  # noqa: E402

PARTS = {"collect": (engine, "collect"), "prepare": (engine_fused, "prepare"),
         "run_group": (engine_fused, "run_group")}


def measure(name: str, native: object, steps: int) -> dict[str, dict[str, float]]:
    """Median µs per step, whole and per part, warm and cold, with the given helper (or None)."""
    times: dict[str, list[int]] = collections.defaultdict(list)
    originals = {part: getattr(module, attr) for part, (module, attr) in PARTS.items()}

    def timed(part: str, function: object) -> object:
        def wrapper(*args: object, **kwargs: object) -> object:
            start = time.thread_time_ns()
            result = function(*args, **kwargs)  # type: ignore[operator]
            times[part].append(time.thread_time_ns() - start)
            return result
        return wrapper

    ours, _, kwargs, _ = OPTIMIZERS[name]
    params = make_params("1M")
    opt = ours(params, **kwargs)
    for _ in range(4):
        opt.step()  # state made, kernel built, the group steady
    source, target = torch.randn(16 << 20), torch.empty(16 << 20)
    helper, run_batch = engine_native.helper, engine_fused.run_batch
    engine_native.helper = lambda: native
    engine_fused.run_batch = lambda *args: None
    for part, (module, attr) in PARTS.items():
        setattr(module, attr, timed(part, originals[part]))
    result = {}
    try:
        for kind in ("warm", "cold"):
            times.clear()
            for _ in range(steps):
                if kind == "cold":
                    target.copy_(source)
                start = time.thread_time_ns()
                opt.step()
                times["step"].append(time.thread_time_ns() - start)
            result[kind] = {part: statistics.median(ts) / 1e3 for part, ts in times.items()}
    finally:
        engine_native.helper, engine_fused.run_batch = helper, run_batch
        for part, (module, attr) in PARTS.items():
            setattr(module, attr, originals[part])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of native and Python checks")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per kind per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    native = engine_native.helper()
    if native is None:
        native = engine_native.load(engine_native.build()) if not engine_native.unavailable_reason() else None
    checks = {"python": None} | ({"native": native} if native is not None else {})
    print(f"torch {torch.__version__}, 1 thread, CPU time; native helper: "
          f"{'loaded' if native is not None else engine_native.unavailable_reason()}")
    print(f"{'optimizer':<14} {'checks':<7} {'kind':<5} {'step µs':>8} {'collect':>8} {'prepare':>8} {'run_group':>9}")
    for name in args.optimizers.split(","):
        if name not in OPTIMIZERS:
            parser.error(f"--optimizers: unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
        for _ in range(args.rounds):
            for label, helper in checks.items():
                for kind, parts in measure(name, helper, args.steps).items():
                    print(f"{name:<14} {label:<7} {kind:<5} {parts['step']:8.0f} {parts['collect']:8.0f} "
                          f"{parts['prepare']:8.0f} {parts['run_group']:9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
