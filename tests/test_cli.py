"""The optimlab command: every subcommand end to end on small problems, help, errors and exit codes."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
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
    (["compare", "--lrs", "0.001,0.01,1e-3"], "got '0.001' and '1e-3', which are the same number"),
    (["compare", "--lrs", "0.01,nan"], "argument --lrs: expected a positive finite number, got 'nan'"),
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


# -- damaged and unusable files ----------------------------------------------------------------

LINREG = ["--problem", "linreg", "--optimizers", "sgd", "--lrs", "0.01", "--extra-seeds", "0", "--workers", "1",
          "--quiet", "--no-report"]


@pytest.mark.parametrize("argv", [["compare", *LINREG], ["report"], ["runs"]])
def test_a_damaged_database_is_one_line_and_left_as_it_was(capsys, tmp_path, argv):
    from tests.test_lab_store import stored_then_damaged

    db = tmp_path / "r.sqlite"
    before = stored_then_damaged(db)
    out_dir = [] if argv[0] == "runs" else ["--out", str(tmp_path / "out")]
    status, _, err = run(capsys, *argv, "--db", str(db), *out_dir)
    assert status == 1 and "Traceback" not in err
    line, = err.splitlines()
    assert line.startswith(f"optimlab {argv[0]}: error: {db} is damaged (") and "PRAGMA integrity_check" in line
    assert db.read_bytes() == before and not (tmp_path / "out").exists()


def test_damage_met_while_reading_is_told_the_same_way(capsys, tmp_path, monkeypatch):
    # Damage the check on opening cannot see (an index out of step with its table) shows when a
    # page is read: the command still ends with the one line.
    from optimlab.lab.running.store import Store

    db = tmp_path / "r.sqlite"
    assert run(capsys, "compare", *LINREG, "--db", str(db), "--sweep", "lin")[0] == 0

    def malformed(*args, **kwargs):
        error = sqlite3.DatabaseError("database disk image is malformed")
        error.sqlite_errorname = "SQLITE_CORRUPT"
        raise error

    monkeypatch.setattr(Store, "runs", malformed)
    status, _, err = run(capsys, "report", "--db", str(db), "--out", str(tmp_path / "out"))
    assert status == 1 and err.splitlines() == [
        f"optimlab report: error: {db} is damaged (database disk image is malformed). Check it with "
        f"`sqlite3 {db} 'PRAGMA integrity_check'`, move it aside (`mv {db} {db}.damaged`) and run again: a new "
        f"database is started, and the results can be recomputed"]



def test_learning_rates_are_kept_exactly_as_typed(capsys, tmp_path):
    # Not rounded to 3 digits: 0.0012345 stays 0.0012345, and 0.001 and 0.0010004 are two rates.
    db = tmp_path / "r.sqlite"
    status, out, err = run(capsys, "compare", "--problem", "linreg", "--optimizers", "sgd", "--lrs",
                           "0.0012345,0.001,0.0010004", "--extra-seeds", "0", "--workers", "1", "--quiet",
                           "--no-report", "--db", str(db), "--sweep", "exact")
    assert status == 0, err
    assert "3 runs done now, 3 stored for this sweep" in out
    with sqlite3.connect(db) as conn:
        assert sorted(lr for lr, in conn.execute("SELECT lr FROM runs")) == [0.001, 0.0010004, 0.0012345]
    status, out, _ = run(capsys, "runs", "--db", str(db), "--sweep", "exact")
    shown = [line.split()[4] for line in out.splitlines() if " exact " in line and "linreg" in line]
    assert status == 0 and shown == ["0.001", "0.0010004", "0.0012345"]


def test_fmt_lr_shows_every_digit_a_rate_has():
    from optimlab.lab.training.zoo import fmt_lr

    assert [fmt_lr(v) for v in (0.001, 1e-05, 1.0, 0.0012345, 0.00123456789, 3.16e-05)] == [
        "0.001", "1e-05", "1", "0.0012345", "0.00123456789", "3.16e-05"]


@pytest.mark.parametrize("name", ["..", "../x", "/tmp/x", "", "a/../b", ".", "..@"])
@pytest.mark.parametrize("command", ["compare", "report"])
def test_sweep_names_that_are_paths_are_refused(capsys, tmp_path, command, name):
    # The sweep name is also the report's folder under --out: a path there would write elsewhere.
    out, db = tmp_path / "work" / "out", tmp_path / "work" / "r.sqlite"
    extra = LINREG if command == "compare" else []
    status, _, err = run(capsys, command, *extra, "--sweep", name, "--db", str(db), "--out", str(out))
    assert status == 2 and err.startswith(f"usage: optimlab {command}")
    assert "argument --sweep: expected a sweep name, not a path (it names the report folder under --out)" in err
    assert list(tmp_path.rglob("*")) == []  # nothing written, anywhere


def test_a_sweep_name_with_separators_gets_a_folder_under_out(capsys, tmp_path):
    out, db = tmp_path / "out", tmp_path / "r.sqlite"
    status, text, err = run(capsys, "compare", *[a for a in LINREG if a != "--no-report"], "--sweep",
                            "mine/first:try", "--db", str(db), "--out", str(out))
    assert status == 0, err
    assert [p.name for p in out.iterdir()] == ["mine_first_try"] and (out / "mine_first_try" / "index.html").exists()
    status, text, _ = run(capsys, "report", "--sweep", "mine/first:try", "--db", str(db), "--out", str(out))
    assert status == 0 and f"report: {out / 'mine_first_try' / 'index.html'}" in text


def test_a_tampered_data_file_is_one_line_and_runs_nothing(capsys, tmp_path, monkeypatch):
    from optimlab.lab.training import data
    from tests.test_lab_problems import RunsCode, gzipped_pickle

    marker = tmp_path / "ran"
    tampered = gzipped_pickle(tmp_path / "mnist.pkl.gz", (RunsCode(marker), None, None))
    monkeypatch.setattr(data, "mnist_path", lambda: tampered)
    status, _, err = run(capsys, "lr-find", "--problem", "softmax-mnist", "--out", str(tmp_path / "out"))
    line, = err.splitlines()
    assert status == 1 and line.startswith(f"optimlab lr-find: error: {tampered} asks to run "
                                           f"{os.system.__module__}.system")
    assert not marker.exists()


def test_every_problem_name_gives_a_file_name_of_its_own():
    # lr-find names its plot after the problem, compare its default sweep (and report folder).
    from optimlab.lab.problems.catalog import PROBLEMS, get_problem
    from optimlab.lab.running.arguments import folder_name

    names = [*PROBLEMS, get_problem("quadratic:cond=1e3,dim=4").name, get_problem("mlp-mnist:dropout=0.2").name,
             get_problem("finetune-fashion:steps=12,autocast=bf16").name]
    for name in names:
        for text in (name, cli.default_sweep_name(name, {"lrs": [0.1]}), f"finetune/{name}"):
            folder = folder_name(text)
            assert "/" not in folder and "\\" not in folder and folder not in (".", "..") and folder.strip("._-")
    assert folder_name("finetune/finetune-fashion:steps=24") == "finetune_finetune-fashion_steps_24"
    for bad in ("", "..", "@@", "..@"):
        with pytest.raises(ValueError, match="names no folder of its own"):
            folder_name(bad)
