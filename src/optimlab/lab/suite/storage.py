"""Where the suite's Optuna studies live: a storage URL, checked; the storage opened with heartbeats;
a study created or joined.

A study is the search of one optimizer on one problem. Its trials live in an Optuna RDB storage:
the project's SQLite file by default, or any PostgreSQL or MySQL URL, so that several processes, on
one machine or many, work on the same study (:mod:`optimlab.lab.suite.workers`). The study keeps the
``spec`` it was made for (a JSON object: what its objective needs) and its sampler's ``seed`` in its
user attributes, so a worker that joins it rebuilds the same objective, and a study opened for
another spec is refused instead of mixing two searches.

A trial whose worker died (killed, its machine gone) stops sending heartbeats; once its grace period
has passed, the next process that looks fails it and queues a copy with the same parameters, which
is run in its place (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`; a worker of the
same machine that is gone is seen at once: :func:`optimlab.lab.suite.workers.fail_lost_trials`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

#: The databases whose locks :mod:`optimlab.lab.suite.workers` knows how to take, by SQLAlchemy backend name.
BACKENDS = ("sqlite", "postgresql", "mysql")

#: The drivers tried, in order, for a URL that names none (sqlite3 comes with Python).
DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg2", "psycopg", "pg8000"), "mysql": ("pymysql", "mysqldb")}

#: How to install the driver each server database needs (the ``workers`` extra has PostgreSQL's).
DRIVER_HINTS = {"postgresql": "pip install 'optimlab[workers]' (psycopg2-binary)", "mysql": "pip install pymysql"}

#: Seconds between a running trial's heartbeats, and without one before the trial counts as lost.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30

#: How many times a lost trial is run again: a trial that kills its worker every time (memory) must
#: not hold the study forever.
MAX_RETRIES = 3

#: Seconds to wait for a database server to answer a connection.
CONNECT_TIMEOUT = 10

SPEC_ATTR = "spec"
SEED_ATTR = "seed"
#: TPE's options (JSON), where the study was made with some: a worker that joins draws with the same.
TPE_ATTR = "tpe"


class StorageError(ValueError):
    """A storage URL or study that cannot be used; the message is one line naming the argument and
    what was expected."""


def storage_url(storage: str | None, default_db: Path) -> str:
    """The URL of the storage to use: ``sqlite:///<default_db>`` for None, else ``storage``, checked.

    ``storage`` is any SQLAlchemy URL Optuna accepts for a SQLite, PostgreSQL or MySQL database. A
    URL that does not parse, names another database or a driver that is not installed, or a server
    that does not answer raises :class:`StorageError` (never a driver's traceback).
    """
    if storage is None:
        return f"sqlite:///{Path(default_db)}"
    url = _parse(storage)
    if url.get_backend_name() == "sqlite":
        _check_sqlite_path(url)
    else:
        _check_reachable(url)
    return url.render_as_string(hide_password=False)


def _parse(storage: str) -> sqlalchemy.URL:
    expected = "expected a database URL such as sqlite:///optuna.db or postgresql://user@host:5432/dbname"
    try:
        url = sqlalchemy.make_url(storage)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        shown = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", storage)  # no password in a message
        raise StorageError(f"--storage: {shown!r} is not a database URL; {expected}") from None
    if url.get_backend_name() not in BACKENDS:
        raise StorageError(f"--storage: {url.get_backend_name()!r} databases are not supported; "
                           f"expected a URL starting with {', '.join(b + '://' for b in BACKENDS)}")
    return _with_installed_driver(url)


def _with_installed_driver(url: sqlalchemy.URL) -> sqlalchemy.URL:
    """``url`` with a driver that is installed: a URL that names none (``postgresql://``) gets the
    first of :data:`DRIVERS` present, since SQLAlchemy's default may not be the one installed."""
    backend = url.get_backend_name()
    candidates = [url] if url.drivername != backend else [url.set(drivername=f"{backend}+{driver}")
                                                         for driver in DRIVERS.get(backend, ("",))]
    error: BaseException | None = None
    for candidate in candidates:
        try:
            candidate.get_dialect().import_dbapi()
            return candidate
        except (ImportError, sqlalchemy.exc.NoSuchModuleError) as missing:
            error = error or missing
    hint = DRIVER_HINTS.get(backend, "install it")
    raise StorageError(f"--storage: no driver for {url.drivername} is installed ({_first_line(error)}); {hint}")


def _check_sqlite_path(url: sqlalchemy.URL) -> None:
    path = url.database
    if not path or path == ":memory:":
        raise StorageError("--storage: an in-memory SQLite database cannot be shared; expected a file, "
                           "sqlite:///path/to/optuna.db")
    if Path(path).is_dir() or not Path(path).parent.is_dir():
        raise StorageError(f"--storage: {path} is not a file in an existing folder; "
                           "expected sqlite:///path/to/optuna.db")


def _check_reachable(url: sqlalchemy.URL) -> None:
    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url.get_backend_name()))
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StorageError(f"--storage: cannot connect to {url.render_as_string(hide_password=True)}: "
                           f"{_first_line(getattr(error, 'orig', None) or error)}") from None
    finally:
        engine.dispose()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _engine_kwargs(backend: str) -> dict[str, Any]:
    if backend == "sqlite":
        # Processes sharing a SQLite file wait for each other's writes instead of failing at once
        # (the default wait is 5 s; a heartbeat must not be lost to a busy moment).
        return {"connect_args": {"timeout": 120}}
    # A server restarted or a connection dropped by a firewall: test a pooled connection before use.
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT}}


_OPENED: dict[tuple[str, int, int], RDBStorage] = {}
_OPENING = threading.Lock()


def open_storage(url: str, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = GRACE_PERIOD) -> RDBStorage:
    """The Optuna storage at ``url`` (see :func:`storage_url`), with heartbeats: a running trial
    without a heartbeat for ``grace_period`` seconds is failed and queued again with the same
    parameters (at most :data:`MAX_RETRIES` times).

    One storage per URL and process: each holds a pool of connections, and a suite opens a study
    per problem and optimizer, more than a PostgreSQL server's 100 connections if each had its own.
    """
    key = (url, heartbeat_interval, grace_period)
    with _OPENING:
        if key not in _OPENED:
            _OPENED[key] = _open_storage(url, heartbeat_interval, grace_period)
        return _OPENED[key]


def _open_storage(url: str, heartbeat_interval: int, grace_period: int) -> RDBStorage:
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # heartbeats and their retry are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(parsed.render_as_string(hide_password=False),
                              engine_kwargs=_engine_kwargs(parsed.get_backend_name()),
                              heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError) as error:
        raise StorageError(f"--storage: cannot open {parsed.render_as_string(hide_password=True)} as an Optuna "
                           f"storage: {_first_line(getattr(error, 'orig', None) or error)}") from None


class TrialSeededSampler(BaseSampler):
    """TPE whose random draws for a trial come from ``seed`` and the trial's place in the budget.

    A trial's place is how many of the study's budget trials (:func:`budget_trials`) came before
    it: unique in the study, since workers create trials one at a time under the claim lock, so
    workers sharing a seed draw distinct start-up trials, and a trial draws the same values
    whichever process runs it. A lost trial's retry takes its place (its parameters are the lost
    one's), so a suite killed and resumed by one process numbers its later trials as an
    uninterrupted one would, and with TPE reading finished trials only (``constant_liar`` off)
    draws the same values: it resumes to the same numbers. With several workers, later trials
    still depend on which results were finished when they were drawn: as reproducible as the
    workers' timing.
    """

    def __init__(self, seed: int, **tpe: Any) -> None:
        self.seed, self._tpe_options = seed, tpe
        self._number: int | None = None
        self._tpe = TPESampler(seed=seed, **tpe)

    def _for(self, study: optuna.Study, trial: FrozenTrial | optuna.Trial) -> TPESampler:
        if trial.number != self._number:  # the first call is in ask(), under the claim lock
            place = sum(t.number < trial.number for t in budget_trials(study.get_trials(deepcopy=False)))
            digest = hashlib.blake2b(f"{self.seed}:{place}".encode(), digest_size=4).digest()
            self._tpe = TPESampler(seed=int.from_bytes(digest, "little"), **self._tpe_options)
            self._number = trial.number
        return self._tpe

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(study, trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._for(study, trial).after_trial(study, trial, state, values)


def open_study(storage_url: str | RDBStorage, name: str, spec: Mapping[str, Any], *, seed: int,
               pruner: optuna.pruners.BasePruner | None = None, direction: str = "minimize",
               tpe: Mapping[str, Any] | None = None) -> optuna.Study:
    """Create the study ``name`` in the storage, or join it if it exists (any number of processes
    may do this at once). A study made for another ``spec``, ``seed``, ``direction`` or TPE options
    ``tpe`` (:class:`TrialSeededSampler`) is refused (:class:`StorageError`). ``pruner`` None: no
    pruning."""
    storage = open_storage(storage_url) if isinstance(storage_url, str) else storage_url
    canonical = json.loads(json.dumps(spec, sort_keys=True))  # what the storage gives back: JSON
    options = dict(tpe or {})
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                sampler=TrialSeededSampler(seed, **options),
                                pruner=pruner or optuna.pruners.NopPruner())
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SEED_ATTR, seed)  # first: a study with a spec always has its seed
        if options:
            study.set_user_attr(TPE_ATTR, options)
        study.set_user_attr(SPEC_ATTR, canonical)
    where = f"study {name!r}"
    stored = study.user_attrs[SPEC_ATTR]  # read back: a process that created it at the same time wins
    if stored != canonical:
        raise StorageError(f"{where} was made for another spec ({spec_difference(stored, canonical)}); "
                           "expected the same spec, or another study name")
    if study.user_attrs.get(SEED_ATTR) != seed:
        raise StorageError(f"{where} was made with seed {study.user_attrs.get(SEED_ATTR)}, not {seed}; "
                           "expected the same seed, or another study name")
    if study.user_attrs.get(TPE_ATTR, {}) != options:
        raise StorageError(f"{where} was made with TPE options {study.user_attrs.get(TPE_ATTR, {})}, not {options}; "
                           "expected the same options, or another study name")
    if study.direction.name.lower() != direction:
        raise StorageError(f"{where} is to {study.direction.name.lower()}, not {direction}; "
                           "expected the same direction, or another study name")
    return study


def load_study(storage: RDBStorage, name: str, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Join the existing study ``name`` with the seed it was made with (:class:`StorageError` if there
    is no such study, or it was not made by :func:`open_study`)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = ", ".join(optuna.study.get_all_study_names(storage)) or "none"
        raise StorageError(f"--study: no study named {name!r} in the storage; expected one of: {known}") from None
    if SPEC_ATTR not in study.user_attrs or SEED_ATTR not in study.user_attrs:
        raise StorageError(f"--study: study {name!r} holds no spec; expected a study made by optimlab suite")
    study.sampler = TrialSeededSampler(study.user_attrs[SEED_ATTR], **study.user_attrs.get(TPE_ATTR, {}))
    study.pruner = pruner or optuna.pruners.NopPruner()
    return study


def spec_difference(stored: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """The first keys where two specs differ, as ``key: stored -> given``."""
    keys = sorted(set(stored) | set(given))
    changed = [f"{key}: {json.dumps(stored.get(key))} there, {json.dumps(given.get(key))} here"
               for key in keys if stored.get(key) != given.get(key)]
    return "; ".join(changed[:3]) + ("; ..." if len(changed) > 3 else "")


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the failed trials that were queued again (their retry stands in for them)."""
    return {number for trial in trials for number in trial.system_attrs.get("retry_history", ())}


def budget_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that use the study's budget: every trial, waiting, running or finished, except a
    lost one that was queued again (its retry is counted instead)."""
    retried = retried_numbers(trials)
    return [t for t in trials if not (t.state == TrialState.FAIL and t.number in retried)]


def finished_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The budget's finished trials: COMPLETE, PRUNED, and FAIL where no retry stands in."""
    return [t for t in budget_trials(trials) if t.state.is_finished()]
