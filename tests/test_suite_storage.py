"""The suite's Optuna storage: URLs checked with one-line errors, studies created and joined with
their spec, the claim lock that keeps several workers inside a study's budget, and
optuna-dashboard serving a study (its page loaded in headless Chromium).

Each test runs on the SQLite default and on a real PostgreSQL server (tests/services.py).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optimlab.lab.suite import storage as st
from optimlab.lab.suite import workers
from tests.processes import wait_until

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPEC = {"problem": "linreg", "optimizer": "sgd", "trials": 3}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return st.storage_url(None, tmp_path / "optuna.db")
    return st.storage_url(request.getfixturevalue("postgres_url"), tmp_path)


# -- URLs -------------------------------------------------------------------------------------------

def test_the_default_is_the_projects_sqlite_file(tmp_path):
    assert st.storage_url(None, tmp_path / "lab" / "optuna.db") == f"sqlite:///{tmp_path}/lab/optuna.db"


@pytest.mark.parametrize("given, message", [
    ("results.db", r"^--storage: 'results.db' is not a database URL; expected a database URL such as sqlite:///"),
    ("oracle://scott@db/orcl", r"^--storage: 'oracle' databases are not supported; expected a URL starting with "
                               r"sqlite://, postgresql://, mysql://$"),
    ("postgresql://me:secret@localhost:notaport/db", r"^--storage: 'postgresql://me:\*\*\*@localhost:notaport/db' "
                                                     r"is not a database URL"),
    ("postgresql+nosuchdriver://localhost/db", r"^--storage: no driver for postgresql\+nosuchdriver is installed"),
    ("sqlite:///no/such/folder/optuna.db", r"^--storage: no/such/folder/optuna.db is not a file in an existing folder"),
    ("sqlite://", r"^--storage: an in-memory SQLite database cannot be shared"),
])
def test_a_bad_url_is_one_clear_line(given, message):
    with pytest.raises(st.StorageError, match=message) as error:
        st.storage_url(given, Path("unused.db"))
    assert "\n" not in str(error.value) and "secret" not in str(error.value)


def test_an_unreachable_server_is_one_clear_line():
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver is not installed (pip package psycopg2-binary)")
    with socket_without_server() as port:
        with pytest.raises(st.StorageError) as error:
            st.storage_url(f"postgresql://me:secret@127.0.0.1:{port}/db", Path("unused.db"))
    line = str(error.value)
    assert re.match(rf"^--storage: cannot connect to postgresql\+psycopg2://me:\*\*\*@127.0.0.1:{port}/db: "
                    r".*refused", line)
    assert "\n" not in line and "secret" not in line


@contextlib.contextmanager
def socket_without_server():
    """A local port nothing listens on (held bound, so no other test takes it meanwhile)."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_a_plain_postgresql_url_gets_the_installed_driver(postgres_server, tmp_path):
    plain = postgres_server.replace("postgresql+psycopg2://", "postgresql://")
    assert st.storage_url(plain, tmp_path) == postgres_server


def test_the_server_script_starts_and_stops_a_server(tmp_path):
    """scripts/postgres.py as CI runs it: ``start DIR`` prints a URL that answers, ``stop DIR`` ends
    the server and removes DIR."""
    from tests import services

    pytest.importorskip("psycopg2", reason="the PostgreSQL driver is not installed (pip package psycopg2-binary)")
    script = services.postgres_script()
    try:
        script.bin_dir()
    except script.PostgresError as error:
        pytest.skip(str(error))
    folder = Path(tempfile.mkdtemp(prefix="optimlab-postgres-"))
    command = [sys.executable, str(services.SCRIPT)]
    started = subprocess.run([*command, "start", str(folder)], capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert re.fullmatch(r"postgresql\+psycopg2://optimlab@127\.0\.0\.1:\d+/postgres", url)
        assert st.storage_url(url, tmp_path) == url  # reachable
    finally:
        stopped = subprocess.run([*command, "stop", str(folder)], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not folder.exists()
    with pytest.raises(st.StorageError, match="cannot connect"):
        st.storage_url(url, tmp_path)


# -- studies ----------------------------------------------------------------------------------------

def test_a_study_keeps_its_spec_and_is_joined_with_it(url):
    created = st.open_study(url, "linreg/sgd", SPEC, seed=3)
    joined = st.open_study(url, "linreg/sgd", dict(reversed(SPEC.items())), seed=3)  # key order is not a difference
    assert joined._study_id == created._study_id
    loaded = st.load_study(st.open_storage(url), "linreg/sgd")
    assert loaded.user_attrs == {"spec": SPEC, "seed": 3}
    assert loaded.sampler.seed == 3


@pytest.mark.parametrize("change, message", [
    ({"spec": {**SPEC, "trials": 5}}, r"^study 'linreg/sgd' was made for another spec \(trials: 3 there, 5 here\); "
                                      r"expected the same spec, or another study name$"),
    ({"seed": 4}, r"^study 'linreg/sgd' was made with seed 3, not 4; expected the same seed, or another study name$"),
    ({"direction": "maximize"}, r"^study 'linreg/sgd' is to minimize, not maximize; expected the same direction"),
])
def test_a_study_opened_for_something_else_is_refused(url, change, message):
    st.open_study(url, "linreg/sgd", SPEC, seed=3)
    arguments = {"spec": SPEC, "seed": 3, **change}
    with pytest.raises(st.StorageError, match=message):
        st.open_study(url, "linreg/sgd", arguments.pop("spec"), **arguments)


def test_joining_a_missing_study_names_the_ones_there(url):
    st.open_study(url, "linreg/sgd", SPEC, seed=0)
    expected = r"^--study: no study named 'nope' in the storage; expected one of: linreg/sgd$"
    with pytest.raises(st.StorageError, match=expected):
        st.load_study(st.open_storage(url), "nope")


def test_trials_are_seeded_by_their_number(tmp_path):
    """A trial's random draws come from the study's seed and its number: distinct draws within a
    study (workers sharing a seed do not repeat each other), the same ones in another study with
    that seed, whichever process runs them."""
    def first_draws(path):
        study = st.open_study(st.storage_url(None, path), "s", SPEC, seed=7)
        workers.run_trials(study, lambda trial: trial.suggest_float("lr", 1e-4, 1.0, log=True), 4)
        return [t.params["lr"] for t in study.trials]

    draws = first_draws(tmp_path / "a.db")
    assert len(set(draws)) == 4
    assert first_draws(tmp_path / "b.db") == draws


# -- the budget under concurrency -------------------------------------------------------------------

def claim_in_threads(url: str, budget: int, meet_timeout: float, threads: int = 2) -> list[optuna.trial.FrozenTrial]:
    """``threads`` workers, each with its own connection, claim trials of one study at once. Each
    waits (up to ``meet_timeout`` s) for a partner between counting the trials and asking for one:
    without the claim lock both would count the same free slot and both take it; with it, the
    partner waits for the lock and never comes."""
    st.open_study(url, "race", SPEC, seed=0)
    meet = threading.Barrier(threads)
    errors = []

    def worker():
        study = st.load_study(st.open_storage(url), "race")
        ask = study.ask

        def slow_ask(*args, **kwargs):
            with contextlib.suppress(threading.BrokenBarrierError):
                meet.wait(timeout=meet_timeout)
            meet.reset() if meet.broken else None
            return ask(*args, **kwargs)

        study.ask = slow_ask
        try:
            workers.run_trials(study, lambda trial: trial.suggest_float("x", 0, 1), budget)
        except Exception as error:  # reported by the test, not lost in the thread
            errors.append(error)

    running = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    assert not errors
    return st.load_study(st.open_storage(url), "race").trials


def test_two_workers_at_the_last_free_trial_take_it_once(url):
    trials = claim_in_threads(url, budget=3, meet_timeout=1)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert sorted(t.number for t in trials) == [0, 1, 2]


def test_without_the_claim_lock_the_budget_is_overshot(url, monkeypatch):
    """The race the claim lock prevents is real: the test above would fail without it."""
    monkeypatch.setattr(workers, "claim_lock", lambda study: contextlib.nullcontext())
    assert len(claim_in_threads(url, budget=3, meet_timeout=30)) > 3


# -- lost and interrupted trials ---------------------------------------------------------------------

def test_an_interrupted_trial_is_queued_again_with_its_parameters(url):
    study = st.open_study(url, "s", SPEC, seed=0)

    def interrupted(trial):
        trial.suggest_float("lr", 0.1, 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        workers.run_trials(study, interrupted, 2)
    lost, queued = study.trials
    assert (lost.state, queued.state) == (TrialState.FAIL, TrialState.WAITING)
    assert queued.params == lost.params and queued.system_attrs["failed_trial"] == lost.number
    workers.run_trials(study, lambda trial: trial.suggest_float("lr", 0.1, 1), 2)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == lost.params and len(st.finished_trials(trials)) == 2


def test_a_trial_taken_over_while_it_ran_is_not_counted_twice(url, caplog):
    """A worker that was stopped past the grace period finds, when it comes back, that another one
    failed its trial and queued it again: its own result is dropped."""
    study = st.open_study(url, "s", SPEC, seed=0)
    other = st.load_study(st.open_storage(url), "s")

    def taken_over(trial):
        trial.suggest_float("lr", 0.1, 1)
        workers._give_back(other, other.trials[trial.number])  # what the other worker does to a lost trial
        return 1.0

    trial = workers.claim(study, 1)
    assert workers.run_trial(study, trial, taken_over) == TrialState.FAIL
    assert "trial 0 was taken as lost and queued again; this run's result is dropped" in caplog.text
    workers.run_trials(study, lambda trial: trial.suggest_float("lr", 0.1, 1), 1)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params and len(st.finished_trials(trials)) == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_of_another_machine_is_lost_only_when_its_heartbeat_stops(url):
    """A worker on another machine cannot be looked up: its trial stays its own while its heartbeat
    is fresh (a new trial is claimed beside it), and is run again once it is stale (3 s here)."""
    study = st.open_study(st.open_storage(url, heartbeat_interval=1, grace_period=3), "s", SPEC, seed=0)
    remote = workers.claim(study, 3)
    remote.suggest_float("lr", 0.1, 1)
    remote.set_user_attr("worker", "another-machine:1")
    workers._CLAIMED.discard(remote._trial_id)  # this process only stands in for that machine's
    beside = workers.claim(study, 3)
    assert beside.number == 1 and study.trials[0].state == TrialState.RUNNING
    workers.run_trial(study, beside, lambda trial: trial.suggest_float("lr", 0.1, 1))
    workers.run_trials(study, lambda trial: trial.suggest_float("lr", 0.1, 1), 3, poll_seconds=0.2)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].params == trials[0].params


# -- results of a trial -----------------------------------------------------------------------------

def test_pruned_and_failed_trials_use_the_budget(url):
    """A pruned trial and one whose objective raised are finished: they count, and are not run again
    (only a lost trial is); the objective's error reaches the caller."""
    study = st.open_study(url, "s", SPEC, seed=0, pruner=optuna.pruners.ThresholdPruner(upper=1.0))

    def pruned(trial):
        trial.report(5.0, step=1)
        assert trial.should_prune()
        raise optuna.TrialPruned

    def broken(trial):
        raise ZeroDivisionError("the objective's own bug")

    assert workers.run_trials(study, pruned, 1) == 1
    with pytest.raises(ZeroDivisionError):
        workers.run_trials(study, broken, 2)
    assert workers.run_trials(study, lambda trial: 0.5, 3) == 1
    assert workers.run_trials(study, lambda trial: 0.5, 3) == 0
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[0].value == 5.0  # the last reported value, as Optuna's own loop records it


def test_a_worker_joins_every_study_with_budget_left(url):
    for name, trials in [("a", 2), ("b", 3)]:
        st.open_study(url, name, {**SPEC, "trials": trials}, seed=0)
    optuna.create_study(storage=url, study_name="not-a-suite-study")  # another program's: left alone
    ran = workers.work(url, lambda spec: (lambda trial: trial.suggest_float("x", 0, 1)), lambda spec: spec["trials"])
    assert ran == 5
    storage = st.open_storage(url)
    assert [len(st.load_study(storage, name).trials) for name in ("a", "b")] == [2, 3]
    assert workers.work(url, lambda spec: None, lambda spec: spec["trials"]) == 0  # nothing left: returns at once
    with pytest.raises(st.StorageError, match=r"^--study: no study named 'c' in the storage; expected one of: "):
        workers.work(url, lambda spec: None, lambda spec: spec["trials"], ["a", "c"])


# -- optuna-dashboard -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DASHBOARD = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package chromium)")
@pytest.mark.skipif(DASHBOARD is None, reason="optuna-dashboard is not installed (pip install 'optimlab[workers]')")
def test_optuna_dashboard_serves_the_study(url, tmp_path):
    from tests.test_report_browser import FLAGS

    name = "mlp-digits/adam-dashboard-check"
    workers.run_trials(st.open_study(url, name, SPEC, seed=0), lambda trial: trial.suggest_float("lr", 0.1, 1), 2)
    with socket_without_server() as port:
        pass  # free again: the dashboard takes it
    server = subprocess.Popen([DASHBOARD, url, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = f"http://127.0.0.1:{port}/dashboard"
        served = wait_until(lambda: fetch(page) or server.poll() is not None, "optuna-dashboard to answer", 60)
        assert server.poll() is None, f"optuna-dashboard ended: {server.stderr.read()[-2000:]}"
        assert name not in served  # the page's HTML is a script: the name comes from the storage
        profile = tmp_path / "profile"
        done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                               "--dump-dom", page], capture_output=True, text=True, timeout=120)
        assert name in visible_text(done.stdout), f"study not shown; chromium said: {done.stderr[-2000:]}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def visible_text(page: str) -> str:
    """The text a reader sees: no markup, styles, scripts or drawings (whose data could hold anything)."""
    page = re.sub(r"<(style|script|svg)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def fetch(address: str) -> str | None:
    try:
        with urllib.request.urlopen(address, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None
