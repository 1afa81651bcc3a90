#!/usr/bin/env python3
"""What a step costs besides its kernel: optimlab's per-step bookkeeping on many small tensors.

The 1M set of ``step_speed.py`` (148 tensors, GPT-2 shapes) is stepped with the fused kernel
replaced by a no-op, so only the work around it is timed: the facade, ``engine.collect``
(gradients and state dicts), ``engine.fused.prepare`` (the steady-state confirmation) and
``engine.fused.run_group`` (hyperparameters, the kernel call, version counters). One thread,
CPU time of the stepping thread, which other processes cannot inflate.

* *warm*: steps back to back, everything in cache;
* *cold*: each step after writing 64 MB elsewhere, so the step's objects come from DRAM, as
  after a backward pass.

Rounds alternate between the two kinds of steady-state check: the native helper
(``optimlab.engine.native``, if it can be loaded here) and the Python checks. ``--path triton``
times the Triton path's host work instead (its kernels built for Triton's CPU interpreter, never
launched), a steady step against a step planned in full.

    python benchmarks/step_overhead.py
    python benchmarks/step_overhead.py --optimizers SGD(momentum) --rounds 4
    python benchmarks/step_overhead.py --path triton --optimizers AdamW
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "src", ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from step_speed import OPTIMIZERS, make_params  # noqa: E402

from optimlab import engine  # noqa: E402

#: What is timed inside a step, per path: (module or class, attribute).
PARTS = {
    "fused": {"collect": (engine, "collect"), "prepare": (engine.fused, "prepare"),
              "run_group": (engine.fused, "run_group")},
    "triton": {"collect": (engine, "collect"), "steady_step": (engine.triton, "steady_step"),
               "run": (engine.triton, "run"), "launch": (engine.triton.Batch, "launch")},
}


class NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` does nothing."""

    def __getitem__(self, grid: object) -> object:
        return lambda *args, **kwargs: None


def without_kernels(path: str) -> dict[tuple[object, str], object]:
    """Replacements that make the kernel itself a no-op, so that only the work around it is timed."""
    if path == "fused":
        return {(engine.fused, "run_batch"): lambda *args: None}
    kernel_for = engine.triton.kernel_for

    def stubbed(*args: object, **kwargs: object) -> object:
        found = kernel_for(*args, **kwargs)
        if isinstance(found, engine.triton.Kernel):
            found.function = NoLaunch()
        return found
    return {(engine.triton, "kernel_for"): stubbed}


def measure(name: str, path: str, variant: dict[tuple[object, str], object], steps: int) -> dict[str, dict[str, float]]:
    """Median µs per step, whole and per part, warm and cold, with ``variant``'s replacements."""
    times: dict[str, list[int]] = collections.defaultdict(list)
    parts = PARTS[path]

    def timed(part: str, function: object) -> object:
        def wrapper(*args: object, **kwargs: object) -> object:
            start = time.thread_time_ns()
            result = function(*args, **kwargs)  # type: ignore[operator]
            times[part].append(time.thread_time_ns() - start)
            return result
        return wrapper

    replacements = {**without_kernels(path), **variant}
    for part, key in parts.items():
        replacements[key] = timed(part, replacements.get(key) or getattr(*key))
    originals = {key: getattr(*key) for key in replacements}
    bench = OPTIMIZERS[name]
    params = bench.takes(make_params("1M"))
    opt = bench.ours(params, **bench.kwargs)
    source, target = torch.randn(16 << 20), torch.empty(16 << 20)
    result = {}
    try:
        for (owner, attr), replacement in replacements.items():
            setattr(owner, attr, replacement)
        with engine.using(path):
            for _ in range(4):
                opt.step()  # state made, kernel built, the group steady
            for kind in ("warm", "cold"):
                times.clear()
                for _ in range(steps):
                    if kind == "cold":
                        target.copy_(source)
                    start = time.thread_time_ns()
                    opt.step()
                    times["step"].append(time.thread_time_ns() - start)
                result[kind] = {part: statistics.median(ts) / 1e3 if ts else 0.0
                                for part, ts in {"step": [], **{p: [] for p in parts}, **times}.items()}
    finally:
        for (owner, attr), original in originals.items():
            setattr(owner, attr, original)
    return result


def variants(path: str) -> dict[str, dict[tuple[object, str], object]]:
    """The kinds of step compared, alternating round by round."""
    if path == "triton":  # every step planned in full, against the steady step
        return {"full": {(engine.triton, "steady_step"): lambda work: None}, "steady": {}}
    native = engine.native.helper()
    if native is None and not engine.native.unavailable_reason():
        native = engine.native.load(engine.native.build())
    found = {"python": {(engine.native, "helper"): lambda: None}}
    if native is not None:
        found["native"] = {(engine.native, "helper"): lambda: native}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The optimizers whose math the engine fuses: the others take neither path timed here.
    parser.add_argument("--optimizers", default=",".join(name for name, bench in OPTIMIZERS.items()
                                                          if bench.elementwise))
    parser.add_argument("--path", choices=list(PARTS), default="fused",
                        help="fused: the C kernel's step, native against Python checks; triton: the Triton "
                             "path's host work (through Triton's CPU interpreter), steady against full steps")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the kinds of step")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per kind per round")
    args = parser.parse_args()
    if args.path == "triton":
        if not engine.triton.available():
            parser.error("--path triton: Triton is not installed")
        os.environ.setdefault("TRITON_INTERPRET", "1")  # kernels for CPU tensors (never launched here)
    torch.set_num_threads(1)
    kinds = variants(args.path)
    print(f"torch {torch.__version__}, 1 thread, CPU time, path {args.path}; native helper: "
          f"{engine.native.status()}")
    parts = list(PARTS[args.path])
    print(f"{'optimizer':<14} {'step':<7} {'cache':<5} {'µs':>6} " + " ".join(f"{p:>11}" for p in parts))
    for name in args.optimizers.split(","):
        if name not in OPTIMIZERS:
            parser.error(f"--optimizers: unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
        for _ in range(args.rounds):
            for label, variant in kinds.items():
                for kind, times in measure(name, args.path, variant, args.steps).items():
                    print(f"{name:<14} {label:<7} {kind:<5} {times['step']:6.0f} "
                          + " ".join(f"{times[p]:11.0f}" for p in parts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
