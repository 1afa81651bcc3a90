"""The optimlab command: every subcommand end to end on small problems, help, errors and exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from optimlab import cli

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``optimlab argv...`` in this process: (exit status, stdout, stderr)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse: --help, usage errors
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_entry_point_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["optimlab"].partition(":")
    assert (module, function) == ("optimlab.cli", "main")


def test_python_dash_m_exits_2_on_a_usage_error():
    bad = subprocess.run([sys.executable, "-m", "optimlab", "trajectories", "--function", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "unknown 2-D function 'nope'; valid names: rosenbrock, beale, saddle, rastrigin" in bad.stderr


def test_help(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and out.startswith("usage: optimlab")
    for command in ("compare", "lr-find", "trajectories", "runs", "report"):
        assert command in out


@pytest.mark.parametrize("command", ["compare", "lr-find", "trajectories", "runs", "report"])
def test_help_everywhere(capsys, command):
    status, out, _ = run(capsys, command, "--help")
    assert status == 0 and out.startswith(f"usage: optimlab {command}")


@pytest.mark.parametrize("argv, message", [
    (["compare", "--problem", "mlp-cifar"], "unknown problem 'mlp-cifar'; valid names: linreg, "),
    (["compare", "--optimizers", "sgd,lion"], "unknown optimizer 'lion'; valid names: sgd, momentum, "),
    (["compare", "--schedule", "exp"], "unknown schedule 'exp'; valid names: constant, cosine"),
    (["lr-find", "--optimizer", "lion"], "unknown optimizer 'lion'; valid names: sgd"),
    (["lr-find", "--lr-min", "1", "--lr-max", "0.1"], "--lr-max (0.1) must be larger than --lr-min (1)"),
    (["trajectories", "--optimizers", "adam", "--lr", "sgd=0.1"], "'sgd' is not among the optimizers drawn"),
    (["trajectories", "--start", "1"], "--start must be two numbers 'x,y'"),
    (["compare", "--seeds", "0"], "expected a whole number >= 1"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_errors_exit_2_with_the_valid_choices(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2 and message in err and err.startswith("usage: optimlab")


def test_runs_on_a_missing_database_fails_with_1(capsys, tmp_path):
    status, _, err = run(capsys, "runs", "--db", str(tmp_path / "none.sqlite"))
    assert status == 1 and "no results database at" in err


def test_compare_runs_stores_resumes_and_reports(capsys, tmp_path):
    db, out = tmp_path / "r.sqlite", tmp_path / "out"
    argv = ["compare", "--problem", "linreg", "--optimizers", "sgd,adam", "--lrs", "0.01,0.03", "--extra-seeds", "1",
            "--workers", "1", "--quiet", "--db", str(db), "--out", str(out), "--sweep", "lin"]
    status, text, _ = run(capsys, *argv)
    assert status == 0, text
    assert "6 runs done now, 6 stored for this sweep" in text  # 2 optimizers x (2 lrs + 1 extra seed)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank  optimizer"))
    assert lines[header + 2].split()[0] == "1"
    index = out / "lin" / "index.html"
    assert f"report: {index}" in text and index.exists()
    # The same command again finds every run stored: nothing is rerun.
    status, text, _ = run(capsys, *argv)
    assert status == 0 and "0 runs done now, 6 stored for this sweep" in text

    status, text, _ = run(capsys, "runs", "--db", str(db))
    assert status == 0 and "1 sweeps in" in text and "lin" in text and "6 runs:" in text
    status, text, _ = run(capsys, "runs", "--db", str(db), "--sweep", "nope")
    assert status == 2
    status, text, _ = run(capsys, "runs", "--db", str(db), "--export", str(tmp_path / "runs.csv"))
    assert status == 0 and "exported 6 runs" in text
    with (tmp_path / "runs.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert {r["optimizer"] for r in rows} == {"sgd", "adam"} and len(rows) == 6
    status, text, _ = run(capsys, "runs", "--db", str(db), "--export", str(tmp_path / "runs.json"))
    document = json.loads((tmp_path / "runs.json").read_text())
    assert status == 0 and len(document["runs"]) == 6 and document["runs"][0]["curve"]
    status, text, _ = run(capsys, "report", "--db", str(db), "--out", str(tmp_path / "again"))
    assert status == 0 and (tmp_path / "again" / "lin" / "index.html").exists()


def test_lr_find_writes_the_plot_and_a_suggestion(capsys, tmp_path):
    status, text, _ = run(capsys, "lr-find", "--problem", "mlp-digits", "--optimizer", "adam", "--steps", "120",
                          "--lr-min", "1e-5", "--out", str(tmp_path))
    assert status == 0, text
    suggested = float(text.split("suggested lr: ")[1].split()[0])
    assert 1e-4 < suggested < 0.1  # Adam on a small MLP: the usual 1e-3 .. 1e-2, not the ends of the range
    assert (tmp_path / "lr_find-mlp-digits-adam.png").exists()


def test_trajectories_writes_png_and_gif(capsys, tmp_path):
    status, text, _ = run(capsys, "trajectories", "--function", "saddle", "--optimizers", "sgd,adam",
                          "--lr", "adam=0.1", "--steps", "40", "--gif", "--frames", "5", "--out", str(tmp_path))
    assert status == 0, text
    assert "sgd lr=0.05" in text and "adam lr=0.1" in text  # the default for sgd, the override for adam
    assert (tmp_path / "trajectories-saddle.png").exists() and (tmp_path / "trajectories-saddle.gif").exists()
