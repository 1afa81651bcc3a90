"""Worker processes sharing one study, as a user runs them: real processes (``python -m
tests.test_suite_workers URL``), a real objective (the lab's ``linreg`` problem trained with SGD at
the trial's learning rate), on the SQLite default and on a real PostgreSQL server.

The study ends with exactly its budget of finished trials, no learning rate run twice, each worker
having run some; a worker killed mid-trial loses nothing (its trial is run again by the other, with
the same learning rate) and leaves nothing RUNNING; spawned workers die with their parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from optimlab.lab.suite import storage as st
from optimlab.lab.suite.workers import Objective, work, work_in_processes
from tests.processes import alive, children, wait_until

ROOT = Path(__file__).resolve().parents[1]

#: Set in a worker's environment to a folder: the worker's first trial writes ``hang-<pid>`` there
#: and then hangs, for the test to kill it mid-trial.
HANG = "OPTIMLAB_TEST_HANG_IN"

#: Short heartbeats, so a lost trial is noticed within seconds (the default grace is 30 s).
HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 3}


# -- the objective the workers run ------------------------------------------------------------------

_met = False


def objective_for(spec: Mapping[str, Any]) -> Objective:
    from optimlab.lab.running.runs import RunConfig, execute

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 0.05, log=True)
        meet(Path(spec["meet"]), spec["workers"])
        if os.environ.get(HANG):
            (Path(os.environ[HANG]) / f"hang-{os.getpid()}").write_text(str(trial.number))
            time.sleep(3600)
        result = execute(RunConfig(spec["problem"], spec["optimizer"], lr, max_steps=spec["steps"],
                                   stop_at_target=False), threads=1)
        time.sleep(spec["sleep"])  # long enough for the workers' trials to overlap
        return result.final_valid

    return objective


def meet(folder: Path, workers: int) -> None:
    """On a worker's first trial, wait until every worker has one: a worker that started late
    would otherwise find the budget taken, and the test would show nothing about sharing."""
    global _met
    if _met:
        return
    _met = True
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < workers and time.monotonic() < deadline:
        time.sleep(0.02)


def budget_of(spec: Mapping[str, Any]) -> int:
    return spec["trials"]


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    processes = int(argv[1]) if len(argv) > 1 else 0
    if processes:
        ran = work_in_processes(processes, argv[0], objective_for, budget_of, **HEARTBEAT, poll_seconds=0.2)
    else:
        ran = work(argv[0], objective_for, budget_of, **HEARTBEAT, poll_seconds=0.2)
    print(json.dumps({"ran": ran, "pid": os.getpid()}))


# -- the tests --------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return st.storage_url(None, tmp_path / "optuna.db")
    return request.getfixturevalue("postgres_url")


def make_study(url: str, folder: Path, workers: int = 2, trials: int = 12) -> str:
    (folder / "meet").mkdir()
    spec = {"problem": "linreg", "optimizer": "sgd", "steps": 30, "sleep": 0.2, "trials": trials,
            "meet": str(folder / "meet"), "workers": workers}
    st.open_study(url, "linreg/sgd", spec, seed=0)
    return "linreg/sgd"


def start_worker(url: str, *args: str, hang_in: Path | None = None) -> subprocess.Popen:
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop(HANG, None)
    if hang_in is not None:
        env[HANG] = str(hang_in)
    return subprocess.Popen([sys.executable, "-m", "tests.test_suite_workers", url, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(worker: subprocess.Popen) -> dict:
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return st.load_study(st.open_storage(url), name).trials


def pid_of(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


@pytest.mark.slow  # over 20 s on the busy 2-core development machine: two interpreters start torch
def test_two_workers_share_a_study(url, tmp_path):
    name = make_study(url, tmp_path)
    results = [finish(worker) for worker in [start_worker(url), start_worker(url)]]
    trials = trials_of(url, name)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12
    assert sorted(t.number for t in trials) == list(range(12))
    assert len({t.params["lr"] for t in trials}) == 12  # no learning rate run twice
    assert sum(r["ran"] for r in results) == 12
    assert {pid_of(t) for t in trials} == {r["pid"] for r in results}  # each worker ran some
    assert all(r["ran"] > 0 for r in results)


# In the quick tier (CI) with test_spawned_workers_die_with_their_parent: what a kill must not
# lose or leave behind; the other worker tests repeat their set-up (slow tier).
def test_a_killed_workers_trial_is_run_again(url, tmp_path):
    name = make_study(url, tmp_path)
    (tmp_path / "hang").mkdir()
    doomed, survivor = start_worker(url, hang_in=tmp_path / "hang"), start_worker(url)
    marker = tmp_path / "hang" / f"hang-{doomed.pid}"
    wait_until(marker.exists, "the doomed worker to start a trial")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=60)
    result = finish(survivor)

    trials = trials_of(url, name)
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and lost[0].number == int(marker.read_text()) and pid_of(lost[0]) == doomed.pid
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == lost[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and pid_of(retry[0]) == result["pid"]
    assert retry[0].params == lost[0].params  # the same learning rate, run once to completion
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == 12 and len(st.finished_trials(trials)) == 12 and result["ran"] == 12
    assert len({t.params["lr"] for t in completed}) == 12
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_spawned_workers_share_a_study(tmp_path):
    url = st.storage_url(None, tmp_path / "optuna.db")
    name = make_study(url, tmp_path)
    result = finish(start_worker(url, "2"))
    trials = trials_of(url, name)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12 and result["ran"] == 12
    assert len({t.params["lr"] for t in trials}) == 12
    ran_by = {pid_of(t) for t in trials}
    assert len(ran_by) == 2 and result["pid"] not in ran_by  # the two spawned processes, not their parent


def test_spawned_workers_die_with_their_parent(tmp_path):
    url = st.storage_url(None, tmp_path / "optuna.db")
    make_study(url, tmp_path)
    (tmp_path / "hang").mkdir()
    parent = start_worker(url, "2", hang_in=tmp_path / "hang")
    hung = wait_until(lambda: len(list((tmp_path / "hang").glob("hang-*"))) == 2 and
                      [int(p.name.split("-")[1]) for p in (tmp_path / "hang").glob("hang-*")],
                      "both spawned workers to start a trial")
    assert set(hung) <= set(children(parent.pid))
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=60)
    wait_until(lambda: not any(alive(pid) for pid in hung), "the workers to die with their parent", 30)


if __name__ == "__main__":
    main(sys.argv[1:])
