"""``optimlab suite --storage URL`` and ``optimlab suite --worker --storage URL`` as a user runs them:
two processes on one storage (a real PostgreSQL server, and the SQLite default file), sharing the
suite's tuning studies. Each study ends with exactly its budget of trials, none run twice, both
processes ran some, and the suite writes its report and JSON. A bad ``--storage`` is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optimlab import cli
from optimlab.lab.suite import storage as st
from tests.processes import group, wait_until
from tests.test_faults import environment

TRIALS = 4
TRACKS = ("adam", "adamw+warmup-cosine")
WORKLOADS = ("logreg-cancer", "linreg-diabetes")
SUITE = ["suite", "--problems", ",".join(WORKLOADS), "--optimizers", "adam", "--trials", str(TRIALS),
         "--seeds", "1", "--max-steps", "40", "--quiet", "--name", "shared"]

#: Runs ``optimlab ARGV`` with one torch thread; the process's first timed step waits (up to 120 s)
#: until the other process has reached its own first step, so that both take part in the tuning
#: rather than one finishing it before the other has imported torch.
LAUNCHER = '''
import os, pathlib, sys, time
import torch
torch.set_num_threads(1)
from optimlab import cli
from optimlab.lab.suite import measure
folder, processes = pathlib.Path(sys.argv[1]), int(sys.argv[2])
original, met = measure.StepTimer.after_step, []
def after_step(self, loop):
    if not met:
        met.append(True)
        (folder / f"ready-{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while len(list(folder.glob("ready-*"))) < processes and time.monotonic() < deadline:
            time.sleep(0.02)
    return original(self, loop)
measure.StepTimer.after_step = after_step
sys.exit(cli.main(sys.argv[3:]))
'''


def start(folder: Path, argv: list[str]) -> subprocess.Popen:
    launcher = folder / "launch.py"
    launcher.write_text(LAUNCHER)
    return subprocess.Popen([sys.executable, str(launcher), str(folder / "meet"), "2", *argv], env=environment(),
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(process: subprocess.Popen) -> str:
    try:
        out, err = process.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{process.args[4:]} did not end: {process.communicate()}")
    assert process.returncode == 0 and "Traceback" not in err, err
    wait_until(lambda: not group(process.pid), "the command's processes to end", limit=15)
    return out


def share(folder: Path, suite_storage: list[str], worker_storage: list[str]) -> tuple[str, str, int, int]:
    """The worker started first (it waits for the suite's studies), then the suite; both to the end."""
    (folder / "meet").mkdir(parents=True)
    worker = start(folder, ["suite", "--worker", *worker_storage, "--name", "shared", "--wait", "120"])
    suite = start(folder, [*SUITE, *suite_storage, "--out", str(folder), "--json", str(folder / "summary.json")])
    try:
        return finish(suite), finish(worker), suite.pid, worker.pid
    finally:
        for process in (suite, worker):
            if process.poll() is None:
                process.kill()


def tuning_trials(url: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = st.open_storage(url)
    names = [n for n in optuna.study.get_all_study_names(storage) if not n.endswith("/runs")]
    return {name: optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False) for name in names}


def check_shared(url: str, folder: Path, shared: tuple[str, str, int, int]) -> None:
    suite_out, worker_out, suite_pid, worker_pid = shared
    studies = tuning_trials(url)
    assert sorted(studies) == sorted(f"shared/{w}/{t}" for w in WORKLOADS for t in TRACKS)
    ran_by: dict[int, int] = {}
    for name, trials in studies.items():
        assert [t.state for t in trials if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)] == [], name
        assert len(trials) == TRIALS, name  # exactly the budget
        assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == TRIALS, name  # none run twice
        for trial in trials:
            pid = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
            ran_by[pid] = ran_by.get(pid, 0) + 1
    assert set(ran_by) == {suite_pid, worker_pid} and sum(ran_by.values()) == len(TRACKS) * len(WORKLOADS) * TRIALS
    assert f"{ran_by[worker_pid]} trials run by this worker" in worker_out
    measured = len(TRACKS) * len(WORKLOADS) * 2  # tuned and default, one seed
    assert f"{ran_by[suite_pid] + measured} trials and runs done now" in suite_out
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["tracks"]) == set(TRACKS)
    assert all(entry["trials"] == TRIALS for data in summary["tracks"].values() for entry in data["workloads"].values())
    assert (folder / "shared" / "index.html").stat().st_size > 10_000


@pytest.mark.slow
def test_a_suite_and_a_worker_share_a_postgresql_storage(postgres_url, tmp_path):
    shared = share(tmp_path, ["--storage", postgres_url], ["--storage", postgres_url])
    check_shared(postgres_url, tmp_path, shared)


@pytest.mark.slow
def test_a_suite_and_a_worker_share_the_sqlite_default(tmp_path):
    db = tmp_path / "db.sqlite"
    url = f"sqlite:///{db}"
    shared = share(tmp_path, ["--db", str(db)], ["--storage", url])
    check_shared(url, tmp_path, shared)


@pytest.mark.parametrize("argv, status, message", [
    (["suite", "--storage", "nosuch://db"], 2, "--storage: 'nosuch' databases are not supported"),
    (["suite", "--storage", "sqlite:///no/such/folder/optuna.db"], 2, "--storage: no/such/folder/optuna.db is not "
                                                                     "a file in an existing folder"),
    (["suite", "--worker", "--storage", "nosuch://db"], 2, "--storage: 'nosuch' databases are not supported"),
])
def test_a_bad_storage_is_one_line(argv, status, message, capsys):
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith(f"optimlab suite: error: {message}") and err.count("\n") == 1, err


def test_a_worker_takes_no_suite_settings(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["suite", "--worker", "--trials", "3", "--quick"])
    assert stopped.value.code == 2
    assert "--worker: --quick, --trials cannot be given to a worker" in capsys.readouterr().err
