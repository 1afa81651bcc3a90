"""Fault injection: kill -9 the lab's commands at seeded points, start them again, compare.

Each scenario runs a command to the end once (the reference), then runs it again in a process
that pauses at a chosen point and is killed there with SIGKILL (no chance to clean up: a crash,
a power cut, ``kill -9``), a few times over, each time starting the same command again; the last
start runs to the end (in the test's own process, as the reference: it resumes from what the
killed processes left on disk, and nothing else). Then:

* no process of the killed command outlives it (its process group is scanned in /proc: the
  command, its workers, multiprocessing's helpers);
* no temporary file is left once the command has started again (checkpoint temporaries, SQLite's
  -wal / -shm / -journal files once the command has ended);
* the results are those of the uninterrupted run (metrics and curves; not the seconds).

The points are drawn from a seeded generator (:data:`SEED`): random, and the same on every run.
A point is where the process pauses, told by a file it writes, so the kill lands exactly there
whatever the machine's load: inside a run's database transaction, after a run is stored, while a
checkpoint's temporary file is written.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optimlab import cli
from optimlab.lab.running.store import Store
from tests.processes import group, wait_until
from tests.test_lab_finetune_problems import needs_fashion

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to find the processes")]

ROOT = Path(__file__).resolve().parents[1]
SEED = 20_250_611

#: Runs the optimlab command of its arguments after making it pause (write the marker file, then
#: wait) at the COUNT-th time it reaches POINT.
LAUNCHER = '''
import sys
import threading
from pathlib import Path


def pause_after(owner, name, count, marker, flush=False):
    original, calls = getattr(owner, name), []

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == count:
            if flush:
                args[1].flush()
            Path(marker).write_text(name)
            threading.Event().wait(600)
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    point, count, marker, *argv = sys.argv[1:]
    import torch

    from optimlab import cli
    from optimlab.lab.running.store import Store

    owner, name, flush = {
        "in a run's transaction": (Store, "_link", False),  # its rows written, not committed
        "after a run is stored": (Store, "save", False),
        "while a checkpoint is written": (torch, "save", True),  # the temporary file, not yet moved
    }[point]
    pause_after(owner, name, int(count), marker, flush)
    sys.exit(cli.main(argv))
'''


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def kill_at(tmp_path: Path, point: str, count: int, argv: list[str]) -> None:
    """Run ``optimlab argv`` until it pauses at the ``count``-th ``point``, kill it there (SIGKILL),
    and check that no process of it is left."""
    launcher, marker = tmp_path / "launch.py", tmp_path / "paused"
    tmp_path.mkdir(parents=True, exist_ok=True)
    launcher.write_text(LAUNCHER)
    marker.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, str(launcher), point, str(count), str(marker), *argv],
                               env=environment(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        wait_until(lambda: marker.exists() or process.poll() is not None, f"the command to pause {point}")
        if process.poll() is not None:
            pytest.fail(f"the command ended before pausing {point} #{count}: {process.communicate()}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    wait_until(lambda: not group(process.pid), f"every process of the command killed {point} to end", limit=15)


def run_to_the_end(folder: Path, argv: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
                   ) -> str:
    """The last start, to the end, in this process (as the reference runs): what it resumes from
    is only what the killed processes left on disk, and it spares a Python start with torch's
    imports. Returns what it printed."""
    monkeypatch.chdir(folder)
    capsys.readouterr()
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status == 0 and "Traceback" not in err, err
    return out


def outcome(db: Path, sweep: str) -> dict[str, tuple]:
    """The sweep's runs, by key: what they did, and their curves without the seconds."""
    fields = ("optimizer", "lr", "seed", "phase", "stop_reason", "steps", "steps_to_target", "best_valid",
              "final_valid", "test_metric", "test_loss", "diverged")
    with Store(db) as store:
        return {r["key"]: (tuple(r[f] for f in fields),
                           [{k: v for k, v in p.items() if k != "seconds"} for p in store.curve(r["key"])])
                for r in store.runs(sweep)}


def leftovers(folder: Path) -> list[str]:
    """Temporary files in ``folder`` and below: checkpoint temporaries and SQLite's side files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", "-wal", "-shm", "-journal")))


# -- compare -----------------------------------------------------------------------------------

#: 2 optimizers x 2 rates, then 1 more seed of each one's best rate: 6 runs of a 5-point regression.
COMPARE = ["compare", "--problem", "linreg", "--optimizers", "sgd,adam", "--lrs", "0.01,0.03", "--extra-seeds", "1",
           "--quiet", "--no-report", "--sweep", "faults"]
RUNS = 6
STORE_POINTS = ["in a run's transaction", "after a run is stored"]


@pytest.fixture(scope="module")
def compare_reference(tmp_path_factory) -> dict[str, tuple]:
    db = tmp_path_factory.mktemp("reference") / "r.sqlite"
    assert cli.main([*COMPARE, "--workers", "1", "--db", str(db)]) == 0
    return outcome(db, "faults")


# In one process: killed once at each kind of point. With 2 worker processes (each start costs
# them seconds of imports): killed once, the workers with it.
@pytest.mark.parametrize("workers, kills", [(1, 2), (2, 1)])
def test_compare_killed_anywhere_resumes_to_the_uninterrupted_results(tmp_path, compare_reference, workers, kills,
                                                                      capsys, monkeypatch):
    db = tmp_path / "r.sqlite"
    argv = [*COMPARE, "--workers", str(workers), "--db", str(db)]
    rng, stored, points = random.Random(SEED + workers), 0, []
    kinds = rng.sample(STORE_POINTS, kills)  # different kinds, in a drawn order
    for left, point in reversed(list(enumerate(reversed(kinds)))):
        count = rng.randint(1, RUNS - stored - left - 1)  # a run or more left for each later start
        points.append((point, count))
        kill_at(tmp_path, point, count, argv)
        # Killed inside its transaction, a run is not stored at all; killed after, it is stored whole.
        stored += count - (point == "in a run's transaction")
        assert len(outcome(db, "faults")) == stored, points
    out = run_to_the_end(tmp_path, argv, capsys, monkeypatch)
    assert f"{RUNS - stored} runs done now, {RUNS} stored for this sweep" in out, (points, out)
    assert leftovers(tmp_path) == [], points
    assert outcome(db, "faults") == compare_reference, points


# -- finetune ----------------------------------------------------------------------------------

#: 12 steps of the pretrained CNN on Fashion-MNIST, a checkpoint every 2 steps (and a final one).
PROBLEM = "finetune-fashion:steps=12,valid=200,test=200"
SWEEP = "finetune/finetune-fashion:steps=12,test=200,valid=200"


def finetune(folder: Path) -> list[str]:
    return ["finetune", "--problem", PROBLEM, "--lr", "0.003", "--threads", "1", "--autocast", "off",
            "--checkpoint-every", "2", "--quiet", "--db", str(folder / "r.sqlite"), "--out", str(folder / "out")]


@needs_fashion
def test_finetune_killed_anywhere_resumes_to_the_uninterrupted_result(tmp_path, capsys, monkeypatch):
    reference, work = tmp_path / "reference", tmp_path / "work"
    assert cli.main(finetune(reference)) == 0
    checkpoints = work / "out" / "checkpoints"
    # Killed while one of its 7 checkpoints (steps 2 to 12, and the final one) is written, then at
    # the end, while the trained run is being stored.
    points = [("while a checkpoint is written", random.Random(SEED).randint(1, 7)), ("in a run's transaction", 1)]
    previous: list[str] = []
    for point, count in points:
        kill_at(work, point, count, finetune(work))
        # The temporary file a kill mid-save left is gone once the command has started again.
        assert not set(previous) & set(leftovers(checkpoints)), (points, previous)
        previous = leftovers(checkpoints)
        assert outcome(work / "r.sqlite", SWEEP) == {}, points  # nothing stored before the end
    out = run_to_the_end(work, finetune(work), capsys, monkeypatch)
    assert "resuming run" in out and "from step 12" in out, out
    assert leftovers(work) == [] and list(checkpoints.iterdir()) == [], points
    assert outcome(work / "r.sqlite", SWEEP) == outcome(reference / "r.sqlite", SWEEP), points
