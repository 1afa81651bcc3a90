"""``optimlab finetune``: atomic checkpoints, kill and resume, results in the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optimlab.finetune.precision import bf16_native
from optimlab.lab import Store, get_problem
from optimlab.lab.running import checkpoint
from optimlab.lab.running.checkpoint import CheckpointError, save_atomic
from optimlab.lab.running.finetune_run import problem_spec
from optimlab.lab.running.runs import RunConfig
from tests.test_lab_finetune_problems import needs_fashion

ROOT = Path(__file__).resolve().parents[1]
#: A small fine-tuning run: 24 steps of the pretrained CNN on Fashion-MNIST.
PROBLEM = "finetune-fashion:steps=24,valid=200,test=200"


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "optimlab", "finetune", "--problem", PROBLEM, "--lr", "0.003",
            "--threads", "1", "--autocast", "off", "--checkpoint-every", "4", "--quiet", "--out", str(out), "--db", str(out / "runs.sqlite"),
            *extra]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def stored_run(out: Path) -> dict:
    with Store(out / "runs.sqlite") as store:
        rows = store.runs(sweep=f"finetune/{get_problem(PROBLEM).name}")
        assert len(rows) == 1
        return {**rows[0], "curve": store.curve(rows[0]["key"])}


def test_save_atomic_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    save_atomic({"step": 1}, path)

    def broken(obj, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"step": 2}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind


def test_recipe_options_become_problem_parameters():
    assert problem_spec("finetune-fashion", layer_decay=0.8, clip=None) == "finetune-fashion:layer_decay=0.8"
    assert problem_spec("finetune-fashion:steps=10", accumulate=2, autocast="off") == \
        "finetune-fashion:accumulate=2,steps=10"
    native = bf16_native()
    expected = "finetune-fashion:autocast=bf16" if native else "finetune-fashion"
    assert problem_spec("finetune-fashion", autocast="auto") == expected  # named by what runs
    assert get_problem("finetune-fashion:autocast=auto").name == expected
    assert get_problem("finetune-fashion:autocast=auto").autocast == (torch.bfloat16 if native else None)
    with pytest.raises(ValueError, match="layer_decay must be in \\(0, 1\\], got 2.0"):
        problem_spec("finetune-fashion", layer_decay=2.0)


@pytest.mark.slow  # the faults tier kills finetune mid-checkpoint and checks the resumed result too
@needs_fashion
def test_killed_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path):
    env = environment()
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.run(command(reference_dir), env=env, cwd=tmp_path, capture_output=True, text=True,
                               timeout=600)
    assert reference.returncode == 0, reference.stderr
    expected = stored_run(reference_dir)
    assert expected["steps"] == 24 and not list((reference_dir / "checkpoints").iterdir())

    process = subprocess.Popen(command(killed_dir), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    checkpoints = killed_dir / "checkpoints"
    deadline, step = time.monotonic() + 300, 0
    try:
        while time.monotonic() < deadline and process.poll() is None:
            files = list(checkpoints.glob("*.pt")) if checkpoints.exists() else []
            if files:
                step = torch.load(files[0], weights_only=True)["loop"]["steps"]
                if step >= 8:
                    break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert 8 <= step < 24, f"the run was not caught in the middle (checkpoint at step {step})"
    with Store(killed_dir / "runs.sqlite") as store:
        assert store.runs() == []  # nothing stored by the killed run

    resumed = subprocess.run(command(killed_dir), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    resumed_from = int(resumed.stdout.split("from step ")[1].split()[0])
    assert 8 <= resumed_from < 24 and resumed_from % 4 == 0
    got = stored_run(killed_dir)
    assert got["key"] == expected["key"]
    for field in ("steps", "stop_reason", "best_valid", "final_valid", "test_metric", "test_loss"):
        assert got[field] == expected[field], field
    strip = [{k: v for k, v in point.items() if k != "seconds"} for point in expected["curve"]]
    assert [{k: v for k, v in point.items() if k != "seconds"} for point in got["curve"]] == strip
    assert not list(checkpoints.iterdir())  # stored, so the checkpoint is gone

    again = subprocess.run(command(killed_dir), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already stored" in again.stdout


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adamx"], "unknown optimizer 'adamx'; valid names: sgd, momentum"),
    (["--problem", "finetune-sentimental"], "unknown problem 'finetune-sentimental'; valid names:"),
    (["--layer-decay", "1.5"], "layer_decay must be in (0, 1], got 1.5"),
    (["--optimizer", "nesterov"], "no measured learning rate for 'nesterov' on 'finetune-sentiment"),
    (["--lr", "-1"], "argument --lr: expected a positive finite number, got '-1'"),
    (["--lr", "0"], "argument --lr: expected a positive finite number, got '0'"),
    (["--lr", "nan"], "argument --lr: expected a positive finite number, got 'nan'"),
    (["--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
    (["--threads", "0"], "argument --threads: expected a whole number >= 1, got '0'"),
    (["--checkpoint-every", "0"], "argument --checkpoint-every: expected a whole number >= 1, got '0'"),
    (["--accumulate", "1.5"], "argument --accumulate: expected a whole number >= 1, got '1.5'"),
    (["--weight-decay", "inf"], "argument --weight-decay: expected a finite number >= 0, got 'inf'"),
    (["--clip", "-1"], "argument --clip: expected a finite number >= 0, got '-1'"),
    (["--head-scale", "nan"], "argument --head-scale: expected a positive finite number, got 'nan'"),
    (["--sweep", "../elsewhere"], "argument --sweep: expected a sweep name, not a path"),
])
def test_cli_usage_errors_exit_2_and_say_what_is_valid(argv, message, capsys, tmp_path):
    from optimlab.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["finetune", "--db", str(tmp_path / "runs.sqlite"), "--out", str(tmp_path), *argv])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("usage: optimlab finetune") and "Traceback" not in err


# -- files where a checkpoint should be --------------------------------------------------------

class Opaque:
    """Not a tensor or a plain value: a checkpoint never holds one, and loading it would run code."""


def bad_checkpoints(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (the file's bytes, what the error must say about it)."""
    good = tmp_path / "good.pt"
    torch.save({"format": checkpoint.FORMAT, "key": "k" * 16, "model": {"w": torch.zeros(20_000)}}, good)
    whole = good.read_bytes()
    other = tmp_path / "other.pt"
    torch.save({name: None for name in checkpoint.KEYS} | {"format": checkpoint.FORMAT, "key": "0" * 16}, other)
    opaque = tmp_path / "opaque.pt"
    torch.save({"model": Opaque()}, opaque)
    return {"empty": (b"", "is empty"), "truncated": (whole[:len(whole) // 2], "is damaged or truncated"),
            "random": (bytes(range(256)) * 40, "is not a checkpoint (not a torch.save archive)"),
            "text": (b"step 8, loss 0.31\n", "is not a checkpoint (not a torch.save archive)"),
            "objects": (opaque.read_bytes(), "holds objects other than tensors and plain values (refused unread)"),
            "incomplete": (whole, "lacks finished, optimizer, scheduler, hooks, loop"),
            "another run's": (other.read_bytes(), f"is the checkpoint of run {'0' * 16}, not of run {'k' * 16}")}


@pytest.mark.parametrize("case", ["empty", "truncated", "random", "text", "objects", "incomplete", "another run's"])
def test_checkpoint_loader_names_the_file_and_what_it_should_have_been(tmp_path, case):
    content, says = bad_checkpoints(tmp_path)[case]
    path = tmp_path / "run.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path, "k" * 16)
    message = str(caught.value)
    assert message.startswith(f"{path} {says}") and "\n" not in message
    if case != "another run's":
        assert f"expected the checkpoint of run {'k' * 16}" in message and "delete it" in message


def finetune_key() -> str:
    """The run key ``optimlab finetune`` gives :data:`PROBLEM` at lr 0.003 (its checkpoint's name)."""
    return RunConfig.for_problem(problem_spec(PROBLEM, autocast="off"), "adamw", 0.003, 0,
                                 stop_at_target=False).key()


@pytest.mark.parametrize("case", ["empty", "truncated", "random", "text", "another run's"])
def test_finetune_on_a_bad_checkpoint_says_so_in_one_line(tmp_path, capsys, case):
    from optimlab.cli import main

    content, says = bad_checkpoints(tmp_path)[case]
    path = tmp_path / "out" / "checkpoints" / f"{finetune_key()}.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    status = main(command(tmp_path / "out")[3:])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    line, = err.splitlines()
    assert line.startswith(f"optimlab finetune: error: {path} ")
    if case != "another run's":
        assert says in line
    assert path.read_bytes() == content  # left for the user to look at


def test_a_run_that_starts_again_deletes_the_temporary_files_of_its_killed_saves(tmp_path):
    path = tmp_path / "run.pt"
    save_atomic({"step": 4}, path)
    left = [tmp_path / ".run.pt.k1l2e3d4.tmp", tmp_path / ".run.pt.x9y8z7w6.tmp"]
    other = tmp_path / ".other.pt.a1b2c3d4.tmp"  # another run's: that run cleans up its own
    for file in (*left, other):
        file.write_bytes(b"half a checkpoint")
    assert checkpoint.temporaries(path) == sorted(left)
    checkpoint.Checkpointer(path, "k", every=4, hooks=[])
    assert checkpoint.temporaries(path) == [] and other.exists()
    assert torch.load(path, weights_only=True) == {"step": 4}
