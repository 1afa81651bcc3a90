#!/usr/bin/env python3
"""How fast is one optimizer step? optimlab against torch.optim, and against memory itself.

An optimizer step is a memory-bound loop: AdamW in fp32 reads param, grad, exp_avg, exp_avg_sq
and writes param, exp_avg, exp_avg_sq, 28 bytes per parameter; SGD with momentum, Adagrad and
RMSprop move 20. No implementation can beat the time memory needs to move those bytes, so
every row is also given as effective bandwidth (bytes / time) and as a fraction of the
bandwidth of an in-place axpy (``y += a * x``, 12 bytes per element) measured in the same run.
The bytes are counted from the state each optimizer keeps (read and written once per step,
beside the parameter read and written and the gradient read): exact for elementwise math, a
lower bound for the optimizers that do more per step (Muon's Newton-Schulz products, L-BFGS).

Every optimizer of :data:`optimlab.optimizers.registry.ENTRIES` that has a torch.optim twin is
benchmarked, with torch's defaults (SGD with momentum 0.9: plain SGD keeps no state), on the
parameters it takes (Muon: the matrices), with the gradients it takes (SparseAdam: sparse, every
row named). Parameter sets (148 tensors each, GPT-2 shapes: token
and position embeddings, 12 blocks of layernorms, qkv, projection and MLP weights and biases,
a final layernorm):

* ``1M``: d=64, vocab 6400, context 256 (1,025,920 parameters, many small tensors)
* ``10M``: d=256, vocab 2048, context 512 (10,132,992 parameters)
* ``124M``: GPT-2 small, d=768, vocab 50257, context 1024 (124,439,808 parameters)

Gradients are random tensors assigned to ``.grad``, as autograd leaves them (an optimizer that
needs a closure, L-BFGS, gets one that returns a constant loss and leaves them: one iteration per
step). For every optimizer, optimlab (its default path, no flags) is timed against torch.optim's
implementations of it, in the same process, interleaved round by round so that they share the
machine's noise: torch's for-loop (``foreach=False``, its default on a CPU) and ``foreach=True``
where the class has the option, else its one default implementation, and ``fused=True`` where
torch has it. The median is reported with the spread between the quartiles. First-step latency
(tracing and compiling included) is measured, for the optimizers whose math the engine fuses, in
fresh processes, once with an empty kernel cache (cold) and once with the cache that run filled
(warm). The goals are those of the fused path: they are checked for those optimizers.

    python benchmarks/step_speed.py --quick      # fewer repeats: checks the goals
    python benchmarks/step_speed.py              # more repeats, every torch variant at 124M
    python benchmarks/step_speed.py --quick --optimizers AdamW,NAdam --sizes 1M
    python benchmarks/step_speed.py --quick --device cuda   # on a GPU: against HBM bandwidth
"""

from __future__ import annotations

import argparse
import functools
import gc
import inspect
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from optimlab import engine  # noqa: E402
from optimlab.optimizers.registry import ENTRIES, Entry  # noqa: E402

SIZES = {"1M": (64, 6400, 256), "10M": (256, 2048, 512), "124M": (768, 50257, 1024)}

#: Options beyond torch's defaults, and the label the rows carry: SGD with momentum (plain SGD
#: keeps no state, and is not what a benchmark of optimizer steps is about).
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {"SGD": ("SGD(momentum)", {"momentum": 0.9})}


@dataclass(frozen=True)
class Bench:
    """A registry entry as the benchmark runs it: its label, its options, its classes."""

    label: str
    entry: Entry
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def ours(self) -> type[torch.optim.Optimizer]:
        return self.entry.cls

    @property
    def theirs(self) -> type[torch.optim.Optimizer]:
        twin = self.entry.twin()
        assert twin is not None, f"{self.entry.name} has no torch twin"
        return twin

    def takes(self, params: list[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
        """The parameters it steps, with the gradients it takes: all, or those of ``min_dim``
        dimensions or more (Muon: matrices); for an optimizer of sparse gradients (SparseAdam),
        the same tensors as parameters of their own whose gradients are sparse over the first
        dimension, every row named (an embedding's step touches no more)."""
        taken = [p for p in params if p.dim() >= self.entry.min_dim]
        if not self.entry.sparse_grads:
            return taken
        sparse = []
        for p in taken:
            q = torch.nn.Parameter(p.detach())  # the same storage
            q.grad = p.grad.to_sparse(1)
            sparse.append(q)
        return sparse

    @functools.cached_property
    def elementwise(self) -> bool:
        """Whether its math is elementwise, what the engine fuses into one kernel (and what the
        goals are about); not the optimizers on whole tensors (Muon, Adafactor) or with steps of
        their own (L-BFGS, which builds no transform)."""
        probe = torch.nn.Parameter(torch.zeros((4,) * max(1, self.entry.min_dim)))
        optimizer = self.ours([probe], **self.kwargs)
        try:
            return optimizer.transform_for(optimizer.param_groups[0]).kind == "elementwise"
        except NotImplementedError:
            return False

    def stepper(self, optimizer: torch.optim.Optimizer) -> Any:
        """``optimizer.step``, with a closure where one is needed: a constant loss, the
        gradients left as assigned."""
        if not self.entry.needs_closure:
            return optimizer.step
        loss = torch.zeros((), device=device)
        return lambda: optimizer.step(lambda: loss)


def bench_of(entry: Entry) -> Bench:
    label, kwargs = SETTINGS.get(entry.name, (entry.name, {}))
    return Bench(label, entry, dict(kwargs))


#: label -> what to run: every registry entry with a torch twin, in the registry's order.
OPTIMIZERS: dict[str, Bench] = {b.label: b for b in map(bench_of, ENTRIES) if b.entry.twin() is not None}

AXPY_BYTES = 12  # read x, read y, write y


def gpt_shapes(d: int, vocab: int, context: int, layers: int = 12) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(vocab, d), (context, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,),     # ln_1, attn qkv, attn proj
                   (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]  # ln_2, mlp fc, mlp proj
    return shapes + [(d,), (d,)]                                        # ln_f


#: Where the parameters live (``--device``); on CUDA every timed step ends with a synchronize.
device = torch.device("cpu")


def sync() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_params(size: str, seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    params = []
    for shape in gpt_shapes(*SIZES[size]):
        p = torch.nn.Parameter((torch.randn(shape, generator=generator) * 0.02).to(device))
        p.grad = (torch.randn(shape, generator=generator) * 1e-3).to(device)
        params.append(p)
    return params


def torch_variants(bench: Bench) -> dict[str, dict]:
    """torch.optim's implementations of this optimizer that exist here: its for-loop and foreach
    where the class has the option (else its one default implementation), and fused where it
    runs (fused is not everywhere)."""
    cls, kwargs = bench.theirs, bench.kwargs
    options = inspect.signature(cls).parameters
    if "foreach" in options:
        variants = {"torch for-loop": dict(kwargs, foreach=False), "torch foreach": dict(kwargs, foreach=True)}
    else:
        variants = {"torch default": dict(kwargs)}
    if "fused" in options:
        probe = torch.nn.Parameter(torch.zeros((4,) * max(1, bench.entry.min_dim), device=device))
        probe.grad = torch.zeros_like(probe)
        try:
            cls([probe], **kwargs, fused=True).step()
            variants["torch fused"] = dict(kwargs, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return variants


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every state tensor ``optimizer`` holds (in lists too: L-BFGS's history)."""
    def size(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, (list, tuple)):
            return sum(map(size, value))
        return 0

    return sum(size(value) for state in optimizer.state.values() for value in state.values())


def bytes_per_param(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> float:
    """Bytes a step moves per parameter element: the parameter read and written and its gradient
    read, and the state ``optimizer`` keeps (after a step: all of it made) read and written."""
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    return (3 * param_bytes + 2 * state_bytes(optimizer)) / sum(p.numel() for p in params)


def quartiles(times: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [min(times), statistics.median(times), max(times)]
    return q[0], statistics.median(times), q[2]


#: How a step is timed: wall clock, or (``--clock cpu``, meaningful with ``--threads 1``) the
#: CPU time of this thread, which other processes sharing the machine do not inflate.
clock = time.perf_counter


#: Steps each candidate runs in a row per round; "consecutive": all of its steps in one block
#: (every step but the first follows one of the same optimizer, its data in cache where they
#: fit: the condition of a step timed alone, in a loop).
ORDER_BLOCK = {"blocked": 5, "interleaved": 1, "consecutive": None}


def bench_size(size: str, names: list[str], reps: int, warmup: int, quick: bool, log: Any,
               order: str = "blocked", budget: float = math.inf) -> list[dict]:
    """Rows for each optimizer of ``names`` on the ``size`` set: optimlab and torch's variants,
    ``reps`` timed steps each after ``warmup`` (fewer where they would take over ``budget``
    seconds per optimizer)."""
    params = make_params(size)
    x, y = (torch.randn(sum(p.numel() for p in params), device=device) for _ in range(2))
    rows = []
    for name in names:
        bench = OPTIMIZERS[name]
        taken = bench.takes(params)
        n = sum(p.numel() for p in taken)
        candidates: dict[str, Any] = {"optimlab": bench.ours(taken, **bench.kwargs)}
        variants = torch_variants(bench)
        if quick and size == "124M":  # memory and time: only torch's fastest here
            fastest = next(label for label in ("torch fused", "torch foreach", "torch default") if label in variants)
            variants = {fastest: variants[fastest]}
        for label, options in variants.items():
            candidates[label] = bench.theirs(taken, **options)
        steps = {label: bench.stepper(opt) for label, opt in candidates.items()}
        steps["axpy"] = lambda: y.add_(x, alpha=1e-9)
        # Warm-up: state made, kernels built; a step slower than a quarter of the budget is
        # warmed up once. Its time sizes the rounds below.
        step_seconds = 0.0
        for step in steps.values():
            seconds = 0.0
            for _ in range(warmup):
                start = time.perf_counter()
                step()
                sync()
                seconds = time.perf_counter() - start
                if seconds > budget / 4:
                    break
            step_seconds += seconds
        nbytes = bytes_per_param(candidates["optimlab"], taken)
        times: dict[str, list[float]] = {label: [] for label in steps}
        # Rounds in which every candidate runs `block` steps in a row: all of them see the same
        # machine noise. block=1 interleaves single steps, so every step starts with caches
        # full of another candidate's data, as a step does after a backward pass; a larger block
        # times steps that follow steps of the same optimizer, the data still in cache where
        # they fit (the 1M set: 20-28 MB against a 32 MB L3). Rounds (and, for steps of seconds,
        # blocks) are cut to what fits in the budget, one round of one step each at least.
        most = budget / max(step_seconds, 1e-9)  # steps of every candidate that fit in the budget
        block = int(max(1, min(ORDER_BLOCK[order] or reps, most)))
        for _ in range(int(max(1, min(reps // block, most / block)))):
            for label, step in steps.items():
                for _ in range(block):
                    start = clock()
                    step()
                    sync()
                    times[label].append(clock() - start)
        axpy_low, axpy, axpy_high = quartiles(times["axpy"])
        axpy_gbs = AXPY_BYTES * x.numel() / axpy / 1e9
        medians = {label: quartiles(ts)[1] for label, ts in times.items() if label != "axpy"}
        torch_best = min(t for label, t in medians.items() if label.startswith("torch"))
        for label in candidates:
            low, median, high = quartiles(times[label])
            gbs = nbytes * n / median / 1e9
            rows.append(dict(size=size, params=n, tensors=len(taken), optimizer=name, impl=label, ms=median * 1e3,
                             bytes_per_param=nbytes,
                             spread_pct=100 * (high - low) / median, gbs=gbs, axpy_gbs=axpy_gbs,
                             axpy_ms=axpy * 1e3, axpy_spread_pct=100 * (axpy_high - axpy_low) / axpy,
                             vs_torch_best=torch_best / median, of_axpy=gbs / axpy_gbs,
                             vs_fused=(medians["torch fused"] / median) if "torch fused" in medians else None))
            log(format_row(rows[-1]))
        del candidates, steps
        gc.collect()
    return rows


HEADER = (f"{'size':>5} {'optimizer':<14} {'implementation':<15} {'ms':>9} {'±%':>5} {'GB/s':>6} "
          f"{'x torch best':>12} {'of axpy':>8} {'axpy GB/s':>9}")


def format_row(r: dict) -> str:
    return (f"{r['size']:>5} {r['optimizer']:<14} {r['impl']:<15} {r['ms']:9.3f} {r['spread_pct']:5.0f} "
            f"{r['gbs']:6.1f} {r['vs_torch_best']:12.2f} {r['of_axpy']:8.2f} {r['axpy_gbs']:9.1f}")


# -- first-step latency, in fresh processes ------------------------------------------------------
def first_steps_child(names: list[str], size: str) -> None:
    """Runs in a fresh process: time the first two steps of each optimizer (import excluded)."""
    results = {}
    for name in names:
        bench = OPTIMIZERS[name]
        params = bench.takes(make_params(size))
        step = bench.stepper(bench.ours(params, **bench.kwargs))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        results[name] = times
    print(json.dumps(results))


def first_steps(names: list[str], size: str, log: Any) -> dict:
    cache = tempfile.mkdtemp(prefix="optimlab-bench-cache-")
    # Cold: optimlab's kernels and, on CUDA, torch.compile's caches start empty. The native check
    # helper is built once per machine and torch (by set-up), so the children get the one this
    # process has, and never start a build.
    env = dict(os.environ, OPTIMLAB_CACHE_DIR=cache, TORCHINDUCTOR_CACHE_DIR=os.path.join(cache, "inductor"))
    helper = engine.native.library_path()
    if helper.exists():
        (Path(cache) / "kernels").mkdir(parents=True, exist_ok=True)
        shutil.copy(helper, Path(cache) / "kernels" / helper.name)
    else:
        env["OPTIMLAB_NATIVE"] = "0"
    out = {}
    for kind in ("cold", "warm"):
        command = [sys.executable, __file__, "--first-step-child", "--size", size, "--optimizers", ",".join(names),
                   "--device", str(device)]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        out[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        out[kind + "_process_s"] = wall
    for name in names:
        cold, warm = out["cold"][name], out["warm"][name]
        log(f"{name:<14} cold: step 1 {cold[0]:6.3f} s, step 2 {cold[1]:6.3f} s, step 3 {cold[2] * 1e3:7.2f} ms"
            f" | warm: step 1 {warm[0]:6.3f} s, step 2 {warm[1]:6.3f} s, step 3 {warm[2] * 1e3:7.2f} ms")
    return out


# -- goals -----------------------------------------------------------------------------------------
def goals(rows: list[dict], first: dict[str, dict] | None) -> list[tuple[str, bool, str]]:
    """The fused path's goals, for the optimizers whose math it fuses (:attr:`Bench.elementwise`)."""
    checks = []
    ours = {(r["size"], r["optimizer"]): r for r in rows
            if r["impl"] == "optimlab" and OPTIMIZERS[r["optimizer"]].elementwise}
    if device.type == "cuda":  # the GPU goals: memory speed at 124M, AdamW no slower than torch's fused
        for (size, name), r in sorted(ours.items()):
            if size == "124M":
                checks.append((f"124M {name}: >= 90% of axpy (HBM) bandwidth", r["of_axpy"] >= 0.90,
                               f"{r['of_axpy']:.0%}"))
                if name == "AdamW" and r["vs_fused"] is not None:
                    checks.append(("124M AdamW: <= 1.0x torch fused time", r["vs_fused"] >= 1.0,
                                   f"{1 / r['vs_fused']:.2f}x"))
        return checks
    for (size, name), r in sorted(ours.items()):
        if size == "124M":
            checks.append((f"124M {name}: >= 90% of axpy bandwidth", r["of_axpy"] >= 0.90, f"{r['of_axpy']:.0%}"))
            if r["vs_fused"] is not None:
                checks.append((f"124M {name}: >= 0.95x torch fused", r["vs_fused"] >= 0.95, f"{r['vs_fused']:.2f}x"))
        if size == "1M" and r["vs_fused"] is not None:
            checks.append((f"1M {name}: >= 2x faster than torch fused", r["vs_fused"] >= 2.0, f"{r['vs_fused']:.2f}x"))
    for size, measured in (first or {}).items():
        for kind in ("cold", "warm"):
            for name, times in measured[kind].items():
                worst = max(times[:2])
                checks.append((f"{size}: first steps of {name} <= 3 s, {kind} cache", worst <= 3.0, f"{worst:.2f} s"))
    return checks


def markdown(result: dict) -> str:
    """The run as markdown tables (what docs/performance.md shows)."""
    info = result["machine"]
    lines = [f"torch {info['torch']}, " + (f"{info['gpu']} (CUDA), host " if info.get("gpu") else "") +
             f"{info['threads']} threads, {info['cpu']} ({info['cores']} cores), "
             f"load average {tuple(round(x, 2) for x in info['load_average'] or ())} at the start and "
             f"{tuple(round(x, 2) for x in info['load_average_end'] or ())} at the end"
             f"{' (--quick)' if result['quick'] else ''}"
             f"{'; times are CPU time of the stepping thread' if result.get('clock') == 'cpu' else ''}"
             f"; order {result.get('order', 'blocked')}; native check helper "
             f"{'loaded' if str(info.get('native_helper', '')).startswith('loaded') else 'not loaded'}.", "",
             "| size | optimizer | implementation | ms (median) | ± (IQR) | GB/s | × torch best | of axpy |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        name = f"**{r['impl']}**" if r["impl"] == "optimlab" else r["impl"]
        lines.append(f"| {r['size']} | {r['optimizer']} | {name} | {r['ms']:.3f} | {r['spread_pct']:.0f}% | "
                     f"{r['gbs']:.1f} | {r['vs_torch_best']:.2f} | {r['of_axpy']:.2f} |")
    axpy = {}
    for r in result["rows"]:
        axpy.setdefault(r["size"], (r["axpy_ms"], r["axpy_gbs"]))
    lines += ["", "In-place axpy in the same rounds: " + ", ".join(
        f"{size} {ms:.3f} ms = {gbs:.1f} GB/s" for size, (ms, gbs) in axpy.items()) + "."]
    for size, first in (result.get("first_steps") or {}).items():
        lines += ["", f"| first steps ({size} set, fresh process) | cold cache: step 1 / step 2 (s) | "
                      "warm cache: step 1 / step 2 (s) |", "|---|---:|---:|"]
        for name, cold in first["cold"].items():
            warm = first["warm"][name]
            lines.append(f"| {name} | {cold[0]:.3f} / {cold[1]:.3f} | {warm[0]:.3f} / {warm[1]:.3f} |")
    lines += ["", "| goal | met | value |", "|---|---|---:|"]
    lines += [f"| {g['goal']} | {'yes' if g['met'] else '**no**'} | {g['value']} |" for g in result["goals"]]
    return "\n".join(lines) + "\n"


def machine() -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    return dict(torch=torch.__version__, python=platform.python_version(), cpu=model, cores=os.cpu_count(),
                threads=torch.get_num_threads(), load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
                device=str(device), gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, torch's fastest only at 124M (< 1 min)")
    parser.add_argument("--sizes", default="1M,10M,124M")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per size (default by size)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed steps per optimizer and size, beyond which fewer are timed "
                             "(default 60, 20 with --quick: only Muon's steps of seconds reach it)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--order", choices=list(ORDER_BLOCK), default="blocked",
                        help="blocked: 5 steps of a candidate in a row (warm caches); interleaved: one step "
                             "of each in turn (every step starts with cold caches); consecutive: all of a "
                             "candidate's steps in a row (a step timed alone in a loop)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this thread's CPU time (use with --threads 1 on a shared machine)")
    parser.add_argument("--json", default=str(ROOT / "out" / "step_speed.json"))
    parser.add_argument("--markdown", default=None, help="also write the tables as markdown to this path")
    parser.add_argument("--no-first-step", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: where parameters and state live")
    parser.add_argument("--first-step-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="1M", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = [n for n in args.optimizers.split(",") if n]
    for name in names:
        if name not in OPTIMIZERS:
            parser.error(f"--optimizers: unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    global device
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device: cpu or cuda, got {args.device!r}")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device: cpu or cuda, got {args.device!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device here")
        if args.clock == "cpu":
            parser.error("--clock cpu times the host thread; on CUDA use the wall clock")
    if args.budget is not None and not args.budget > 0:
        parser.error(f"--budget: a positive number of seconds, got {args.budget:g}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if torch.get_num_threads() != 1:
            parser.error("--clock cpu measures one thread: add --threads 1")
        global clock
        clock = time.thread_time
    if args.first_step_child:
        first_steps_child(names, args.size)
        return 0

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    info = machine()
    log(f"torch {info['torch']}, {info['threads']} threads, {info['cpu']}, load average {info['load_average']}, "
        f"order {args.order}, clock {args.clock}"
        + (f", device {info['device']} ({info['gpu']})" if info["gpu"] else ""))
    default_reps = {"1M": 200, "10M": 40, "124M": 10} if not args.quick else {"1M": 60, "10M": 12, "124M": 15}
    rows: list[dict] = []
    log(HEADER)
    for size in args.sizes.split(","):
        if size not in SIZES:
            parser.error(f"--sizes: unknown size {size!r}; known: {', '.join(SIZES)}")
        reps = args.reps or default_reps[size]
        rows += bench_size(size, names, reps, warmup=3 if size != "124M" else 2, quick=args.quick, log=log,
                           order=args.order, budget=args.budget or (20.0 if args.quick else 60.0))
    first: dict[str, dict] = {}
    fused = [name for name in names if OPTIMIZERS[name].elementwise]  # the others compile nothing
    if not args.no_first_step and fused:
        for size in (["1M"] if args.quick else ["1M", "124M"]):
            log(f"\nfirst steps in a fresh process ({size} set; seconds; import of torch and optimlab excluded):")
            first[size] = first_steps(fused, size, log)
    checks = goals(rows, first)
    log("\ngoals:")
    for label, ok, value in checks:
        log(f"  [{'x' if ok else ' '}] {label}: {value}")
    info["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["native_helper"] = engine.native.status()
    log(f"native check helper: {info['native_helper']}")
    result = dict(machine=info, quick=args.quick, clock=args.clock, order=args.order, rows=rows, first_steps=first,
                  goals=[dict(goal=g, met=ok, value=v) for g, ok, v in checks], seconds=time.perf_counter() - started)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown(result))
    log(f"\n{len(rows)} rows, {sum(ok for _, ok, _ in checks)}/{len(checks)} goals met, "
        f"{result['seconds']:.0f} s; load average now {info['load_average_end']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
