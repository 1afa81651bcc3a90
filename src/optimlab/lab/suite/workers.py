"""Several processes working on one study: each trial claimed once, the budget never overshot,
a trial whose worker died run again.

A study's budget is a number of trials (:func:`optimlab.lab.suite.storage.budget_trials`). Before
taking a trial, a worker takes the study's claim lock, a lock the database server holds for it
(PostgreSQL's advisory lock, MySQL's ``GET_LOCK``; for SQLite, whose file lives on one machine, a
lock on a file beside it). Under the lock it counts the trials and creates one only if the budget
has room: two workers that both see one trial left cannot both take it. A lock held by a process
that dies is released by the server (or the kernel) with its connection.

While a trial runs, a thread records its heartbeat, and the trial names its worker (``host:pid``).
A trial without a heartbeat for the storage's grace period, or at once one whose worker was a
process of the claiming machine that no longer runs it (a suite killed and started again), is
failed by the next worker that claims and queued again with the same parameters, which that worker
(or another) runs, before any new trial. If the lost worker comes back after all (it was only stopped), its
result is refused: a trial counts once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from optimlab.lab.suite.storage import (
    GRACE_PERIOD,
    HEARTBEAT_INTERVAL,
    StorageError,
    budget_trials,
    finished_trials,
    load_study,
    open_storage,
)

log = logging.getLogger(__name__)

#: Seconds between looks at a study whose remaining trials other workers are running.
POLL_SECONDS = 1.0

#: How long a worker waits for a claim lock before it reports the database as stuck.
LOCK_TIMEOUT = 600

Objective = Callable[[optuna.Trial], float]


def _storage(study: optuna.Study) -> Any:
    """The study's storage (Optuna keeps it private; heartbeats and claims need it, as Optuna's own
    optimize loop does)."""
    storage = study._storage
    if not isinstance(getattr(storage, "_backend", storage), RDBStorage):
        raise StorageError("storage: workers need an RDB storage (a SQLite, PostgreSQL or MySQL URL)")
    return storage


def _engine(study: optuna.Study) -> sqlalchemy.Engine:
    storage = _storage(study)
    return getattr(storage, "_backend", storage).engine


def claim_lock(study: optuna.Study) -> contextlib.AbstractContextManager[None]:
    """Hold the study's claim lock: one process at a time, on every machine that shares the storage."""
    return study_lock(_engine(study), study.study_name)


@contextlib.contextmanager
def study_lock(engine: sqlalchemy.Engine, study_name: str) -> Iterator[None]:
    """The claim lock of the study ``study_name`` (which need not exist yet) in the database of
    ``engine`` (an RDB storage's ``engine``)."""
    backend = engine.dialect.name
    key = zlib.crc32(f"optimlab-claim:{study_name}".encode())
    if backend == "postgresql":
        with engine.begin() as connection:  # the transaction's end releases the lock
            connection.execute(sqlalchemy.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}s'"))
            try:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            except sqlalchemy.exc.OperationalError:
                raise StorageError(f"storage: waited {LOCK_TIMEOUT} s for the claim lock of "
                                   f"{study_name!r}") from None
            yield
    elif backend == "mysql":
        with engine.connect() as connection:
            name = f"optimlab-claim-{key}"
            got = connection.execute(sqlalchemy.text("SELECT GET_LOCK(:name, :timeout)"),
                                     {"name": name, "timeout": LOCK_TIMEOUT}).scalar()
            if got != 1:
                raise StorageError(f"storage: waited {LOCK_TIMEOUT} s for the claim lock of {study_name!r}")
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    else:
        with _file_lock(engine.url.database, study_name):
            yield


_MEMORY_LOCK = threading.Lock()


@contextlib.contextmanager
def _file_lock(database: str | None, study_name: str) -> Iterator[None]:
    if not database or database == ":memory:":  # one process sees an in-memory database
        with _MEMORY_LOCK:
            yield
        return
    import fcntl  # POSIX: the SQLite storage is shared by processes of one machine

    path = Path(f"{database}.claims")
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def worker_name() -> str:
    """This process, as a trial's ``worker`` attribute names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: The ids of the trials this process claimed and has not finished: a trial that names this
#: process as its worker but is not among them was left by an earlier process with the same pid.
_CLAIMED: set[int] = set()


def _gone(worker: str | None, trial_id: int) -> bool:
    """Whether ``worker`` (``host:pid``) is a process of this machine that no longer runs the trial."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return trial_id not in _CLAIMED
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def fail_lost_trials(study: optuna.Study) -> None:
    """Fail the running trials whose worker is lost, and queue a copy of each (same parameters):
    those without a heartbeat for the grace period, and at once those whose worker was a process
    of this machine that is gone (a suite killed and started again need not wait for the grace
    period, and its retry runs before any new trial: it resumes to the numbers of an
    uninterrupted suite)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        if _gone(trial.user_attrs.get("worker"), trial._trial_id):
            _give_back(study, trial)
    optuna.storages.fail_stale_trials(study)


def claim(study: optuna.Study, n_trials: int) -> optuna.Trial | None:
    """A trial of ``study`` for this process to run, or None if the budget of ``n_trials`` is all
    claimed. Lost trials are failed and queued again first (:func:`fail_lost_trials`); a queued
    trial is taken before a new one is created."""
    storage = _storage(study)
    with claim_lock(study):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_lost_trials(study)
            # Optuna warns that heartbeats are meant for its optimize loop: this loop records them.
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trials = study.get_trials(deepcopy=False)
            queued = any(t.state == TrialState.WAITING for t in trials)
            if not queued and len(budget_trials(trials)) >= n_trials:
                return None
            trial = study.ask()  # takes a queued trial if there is one
        storage.record_heartbeat(trial._trial_id)  # before the lock goes: it is never unwatched
        _CLAIMED.add(trial._trial_id)
        trial.set_user_attr("worker", worker_name())  # and never without its worker
    return trial


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every interval while the block runs."""
    storage = _storage(study)
    interval = storage.get_heartbeat_interval() or HEARTBEAT_INTERVAL
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial._trial_id)
            except sqlalchemy.exc.SQLAlchemyError as error:  # a busy moment: the next beat may pass
                log.warning("trial %d: heartbeat not recorded (%s)", trial.number, error)

    thread = threading.Thread(target=beat, name=f"optimlab-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_trial(study: optuna.Study, trial: optuna.Trial, objective: Objective) -> TrialState:
    """Run a claimed trial and record its result. An exception in the objective fails the trial
    and propagates; Ctrl-C queues the trial again (with its parameters) and propagates."""
    try:
        return _run_claimed(study, trial, objective)
    finally:
        _CLAIMED.discard(trial._trial_id)


def _run_claimed(study: optuna.Study, trial: optuna.Trial, objective: Objective) -> TrialState:
    try:
        with heartbeat(study, trial):
            value: float | None = objective(trial)
        state = None
    except optuna.TrialPruned:
        value, state = None, TrialState.PRUNED
    except KeyboardInterrupt:
        _give_back(study, trial)
        raise
    except Exception:
        _tell(study, trial, None, TrialState.FAIL)
        raise
    return _tell(study, trial, value, state)


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None, state: TrialState | None) -> TrialState:
    try:
        return study.tell(trial, value, state=state).state
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        current = _storage(study).get_trial(trial._trial_id)
        if current.state == TrialState.RUNNING:  # not a race: a value Optuna refuses
            raise
    # Another worker failed it (no heartbeat for the grace period: this process was stopped) and
    # queued it again; the retry's result is the one that counts.
    log.warning("trial %d was taken as lost and queued again; this run's result is dropped", trial.number)
    return current.state


def _give_back(study: optuna.Study, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
    """Fail an interrupted trial and queue it again, as if its worker had died."""
    storage = _storage(study)
    try:
        if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            return
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    retry = storage.get_heartbeat_stale_trial_callback()
    if retry is not None:
        retry(study, storage.get_trial(trial._trial_id))


def run_trials(study: optuna.Study, objective: Objective, n_trials: int, *, wait: bool = True,
               poll_seconds: float = POLL_SECONDS) -> int:
    """Work on ``study`` until it holds ``n_trials`` finished trials in all, counted in the storage,
    however many processes work on it at once; returns how many this call ran.

    With ``wait`` (the default) it also waits while other workers run the last trials, taking over
    any that is lost; without, it returns as soon as every trial of the budget is claimed.
    """
    ran = 0
    while True:
        trial = claim(study, n_trials)
        if trial is not None:
            run_trial(study, trial, objective)
            ran += 1
            continue
        if not wait or study_done(study, n_trials):
            return ran
        time.sleep(poll_seconds)


def study_done(study: optuna.Study, n_trials: int) -> bool:
    """Whether ``study`` holds its budget of ``n_trials`` finished trials."""
    return len(finished_trials(study.get_trials(deepcopy=False))) >= n_trials


def work(storage_url: str, objective_for: Callable[[Mapping[str, Any]], Objective],
         budget_of: Callable[[Mapping[str, Any]], int], study_names: list[str] | None = None, *,
         pruner_of: Callable[[Mapping[str, Any]], optuna.pruners.BasePruner | None] | None = None,
         joins: Callable[[str, Mapping[str, Any]], bool] | None = None, wait_for_studies: float = 0,
         poll_seconds: float = POLL_SECONDS, heartbeat_interval: int = HEARTBEAT_INTERVAL,
         grace_period: int = GRACE_PERIOD) -> int:
    """Join the studies ``study_names`` of the storage (None: every study in it with budget left
    that ``joins(name, spec)`` accepts, looked for again after each pass) and run their trials until
    none has budget left and no trial of theirs is running anywhere; returns how many trials this
    process ran. With ``wait_for_studies`` it first waits up to that many seconds for a study to
    join (a worker started before the suite that creates them).

    Each study's objective is ``objective_for(spec)`` and its budget ``budget_of(spec)``, ``spec``
    being what the study keeps (:func:`optimlab.lab.suite.storage.open_study`).
    """
    storage = open_storage(storage_url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    joined: dict[str, tuple[optuna.Study, Objective, int] | None] = {}
    deadline = time.monotonic() + wait_for_studies
    ran = 0
    while True:
        names = study_names if study_names is not None else optuna.study.get_all_study_names(storage)
        for name in names:
            if name in joined:
                continue
            try:
                joined[name] = _join(storage, name, objective_for, budget_of, pruner_of, joins)
            except StorageError:
                if study_names is not None:
                    raise
                # another program's study, or one being created (its spec comes just after it):
                # looked at again on the next pass
        names = [name for name in names if name in joined]
        active = [(study, objective, budget) for study, objective, budget in
                  (joined[name] for name in names if joined[name] is not None) if not study_done(study, budget)]
        if not active:
            if any(joined.values()) or time.monotonic() >= deadline:
                return ran
            time.sleep(poll_seconds)
            continue
        before = ran
        for study, objective, budget in active:
            ran += run_trials(study, objective, budget, wait=False)
        if ran == before:  # others are running the last trials: look again soon
            time.sleep(poll_seconds)


def _join(storage: RDBStorage, name: str, objective_for: Callable[[Mapping[str, Any]], Objective],
          budget_of: Callable[[Mapping[str, Any]], int],
          pruner_of: Callable[[Mapping[str, Any]], optuna.pruners.BasePruner | None] | None,
          joins: Callable[[str, Mapping[str, Any]], bool] | None) -> tuple[optuna.Study, Objective, int] | None:
    """The study ``name`` joined, with its objective and budget; None if ``joins`` declines it."""
    study = load_study(storage, name)
    spec = study.user_attrs["spec"]
    if joins is not None and not joins(name, spec):
        return None
    if pruner_of is not None:
        study.pruner = pruner_of(spec) or optuna.pruners.NopPruner()
    return study, objective_for(spec), budget_of(spec)


def _work_in_child(threads: int, args: tuple, kwargs: dict[str, Any]) -> int:
    import torch

    from optimlab.lab.running.sweep import die_with_parent

    die_with_parent()
    torch.set_num_threads(threads)
    return work(*args, **kwargs)


def work_in_processes(processes: int, storage_url: str, objective_for: Callable[[Mapping[str, Any]], Objective],
                      budget_of: Callable[[Mapping[str, Any]], int], study_names: list[str] | None = None,
                      **options: Any) -> int:
    """:func:`work` in ``processes`` spawned worker processes with one torch thread each, which die
    with this process even if it is killed; returns the trials they ran. ``objective_for`` and
    the other functions must be importable (module level) to reach the workers."""
    context = multiprocessing.get_context("spawn")
    args = (storage_url, objective_for, budget_of, study_names)
    with context.Pool(processes) as pool:
        results = [pool.apply_async(_work_in_child, (1, args, options)) for _ in range(processes)]
        return sum(result.get() for result in results)
