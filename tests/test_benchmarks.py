"""The benchmark scripts run (tiny settings) and judge their goals as the issue states them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import step_speed  # noqa: E402


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_step_speed_runs_and_writes_its_table(tmp_path: Path) -> None:
    """Two fused-path optimizers (with their goals) and L-BFGS (a closure, torch's one implementation)."""
    out = tmp_path / "speed.json"
    done = run("step_speed.py", "--sizes", "1M", "--optimizers", "SGD(momentum),AdamW,LBFGS", "--reps", "2",
               "--no-first-step", "--threads", "1", "--json", str(out), "--markdown", str(tmp_path / "speed.md"))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    impls = {(r["optimizer"], r["impl"]) for r in result["rows"]}
    assert {("SGD(momentum)", "optimlab"), ("SGD(momentum)", "torch fused"), ("AdamW", "torch foreach"),
            ("LBFGS", "optimlab"), ("LBFGS", "torch default")} <= impls
    assert all(r["ms"] > 0 and r["gbs"] > 0 for r in result["rows"])
    assert {g["goal"] for g in result["goals"]} == {"1M SGD(momentum): >= 2x faster than torch fused",
                                                    "1M AdamW: >= 2x faster than torch fused"}
    assert "| 1M | AdamW | **optimlab** |" in (tmp_path / "speed.md").read_text()


def test_every_registry_optimizer_with_a_torch_twin_is_benchmarked() -> None:
    from optimlab.optimizers.registry import ENTRIES

    assert [bench.entry for bench in step_speed.OPTIMIZERS.values()] == [e for e in ENTRIES if e.twin() is not None]
    for bench in step_speed.OPTIMIZERS.values():
        assert set(step_speed.torch_variants(bench)) & {"torch for-loop", "torch default"}


def test_bytes_per_parameter_come_from_the_state_kept() -> None:
    """float32: 4 bytes x (parameter read and written, gradient read, each state tensor read and
    written): SGD with momentum 20, AdamW 28 (as the module says); Muon's matrices only."""
    params = step_speed.make_params("1M")
    moved = {}
    for label in ("SGD(momentum)", "AdamW", "Muon"):
        bench = step_speed.OPTIMIZERS[label]
        taken = bench.takes(params)
        optimizer = bench.ours(taken, **bench.kwargs)
        assert step_speed.bytes_per_param(optimizer, taken) == 12  # no state before the first step
        bench.stepper(optimizer)()
        moved[label] = step_speed.bytes_per_param(optimizer, taken)
        assert all(p.dim() >= bench.entry.min_dim for p in taken) and taken
    assert moved == {"SGD(momentum)": 20, "AdamW": pytest.approx(28, rel=1e-3), "Muon": 20}
    assert len(step_speed.OPTIMIZERS["Muon"].takes(params)) < len(params)


def test_step_speed_refuses_what_it_cannot_measure() -> None:
    for args, message in ((["--device", "tpu"], "--device"), (["--optimizers", "Lion"], "unknown optimizer"),
                          (["--clock", "cpu"], "--threads 1"), (["--budget", "0"], "--budget")):
        done = run("step_speed.py", "--sizes", "1M", "--no-first-step", *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    if not torch.cuda.is_available():
        done = run("step_speed.py", "--device", "cuda")
        assert done.returncode == 2 and "no CUDA device" in done.stderr


def rows(vs_fused: float, of_axpy: float) -> list[dict[str, Any]]:
    return [dict(size=size, optimizer=name, impl="optimlab", of_axpy=of_axpy, vs_fused=vs_fused)
            for size in ("1M", "124M") for name in ("SGD(momentum)", "AdamW")]


def test_gpu_goals_are_memory_speed_and_adamw_against_torch_fused(monkeypatch: Any) -> None:
    monkeypatch.setattr(step_speed, "device", torch.device("cuda"))
    checks = step_speed.goals(rows(vs_fused=1.02, of_axpy=0.93), None)
    assert [(label, ok) for label, ok, _ in checks] == [
        ("124M AdamW: >= 90% of axpy (HBM) bandwidth", True),
        ("124M AdamW: <= 1.0x torch fused time", True),
        ("124M SGD(momentum): >= 90% of axpy (HBM) bandwidth", True)]
    assert [ok for _, ok, _ in step_speed.goals(rows(vs_fused=0.97, of_axpy=0.85), None)] == [False, False, False]


def test_cpu_goals(monkeypatch: Any) -> None:
    monkeypatch.setattr(step_speed, "device", torch.device("cpu"))
    checks = {label: ok for label, ok, _ in step_speed.goals(rows(vs_fused=2.1, of_axpy=0.91), None)}
    assert checks == {"1M AdamW: >= 2x faster than torch fused": True,
                      "1M SGD(momentum): >= 2x faster than torch fused": True,
                      "124M AdamW: >= 90% of axpy bandwidth": True, "124M AdamW: >= 0.95x torch fused": True,
                      "124M SGD(momentum): >= 90% of axpy bandwidth": True,
                      "124M SGD(momentum): >= 0.95x torch fused": True}


def test_step_overhead_runs() -> None:
    done = run("step_overhead.py", "--optimizers", "SGD(momentum)", "--rounds", "1", "--steps", "5")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("SGD(momentum)")]
    assert {tuple(line.split()[1:3]) for line in lines} >= {("python", "warm"), ("python", "cold")}


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")
def test_step_overhead_of_the_triton_path_runs() -> None:
    done = run("step_overhead.py", "--path", "triton", "--optimizers", "AdamW", "--rounds", "1", "--steps", "3")
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[1:3]): line.split()[3:] for line in done.stdout.splitlines()
            if line.startswith("AdamW")}
    assert set(rows) == {("full", "warm"), ("full", "cold"), ("steady", "warm"), ("steady", "cold")}
    planned = 3  # columns: µs per step, then collect, steady_step, run (the full plan), launch
    assert float(rows[("steady", "warm")][planned]) == 0  # a steady step never plans in full
    assert float(rows[("full", "warm")][planned]) > 0
