"""The results database: one SQLite file holding runs, their configs and their metric curves.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``schema_version``)::

    runs        one row per run, keyed by RunConfig.key(): the config as JSON and as columns
                (problem, optimizer, lr, seed, ...), the result columns (stop_reason, steps,
                seconds, steps_to_target, ..., diverged), the sweep that ran it first, and the
                wall-clock times it started and finished (Unix seconds)
    curves      (key, step): seconds, train_loss, valid_loss, valid_metric per evaluation
    sweeps      one row per sweep: name, problem, its spec as JSON, created/updated times
    sweep_runs  (sweep, key, phase): which runs belong to which sweep ("grid" or "best" phase).
                A run is stored once and may belong to several sweeps: a sweep that needs a run
                another sweep already did links it instead of running it again.

:meth:`Store.save` writes a run, its curve and its sweep membership in one transaction, so a
run is either stored whole or not at all, even if the process is killed mid-write; the file is
in WAL mode, so readers (a report, ``optimlab runs``) can read while a sweep writes.
Non-finite numbers are stored as NULL (read back as None).

Opening a file checks its pages first (``PRAGMA quick_check``): a damaged database is a
:class:`StoreError` that says so and what to do, and nothing is written into it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from optimlab.lab.running.runs import RunConfig, RunResult

SCHEMA_VERSION = 1

CONFIG_COLUMNS = ("problem", "optimizer", "lr", "seed", "batch_size", "max_steps", "schedule", "kwargs",
                  "stop_at_target")
RESULT_COLUMNS = ("stop_reason", "steps", "seconds", "steps_to_target", "seconds_to_target", "best_valid",
                  "final_valid", "test_metric", "test_loss", "diverged", "metric", "higher_is_better", "target",
                  "message")
CURVE_COLUMNS = ("step", "seconds", "train_loss", "valid_loss", "valid_metric")
BOOLEAN_COLUMNS = ("stop_at_target", "diverged", "higher_is_better")
#: The columns of :meth:`Store.runs`' dicts (and of the CSV export), in order.
RUN_FIELDS = ("key", "sweep", "phase", *CONFIG_COLUMNS, *RESULT_COLUMNS, "created", "finished")
FORMATS = ("csv", "json")

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY, problem TEXT NOT NULL, spec TEXT, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY, sweep TEXT, config TEXT NOT NULL,
    problem TEXT NOT NULL, optimizer TEXT NOT NULL, lr REAL NOT NULL, seed INTEGER NOT NULL,
    batch_size INTEGER, max_steps INTEGER NOT NULL, schedule TEXT, kwargs TEXT NOT NULL,
    stop_at_target INTEGER NOT NULL,
    stop_reason TEXT NOT NULL, steps INTEGER NOT NULL, seconds REAL NOT NULL, steps_to_target INTEGER,
    seconds_to_target REAL, best_valid REAL, final_valid REAL, test_metric REAL, test_loss REAL,
    diverged INTEGER NOT NULL, metric TEXT NOT NULL, higher_is_better INTEGER NOT NULL, target REAL NOT NULL,
    message TEXT NOT NULL, created REAL NOT NULL, finished REAL NOT NULL);
CREATE INDEX IF NOT EXISTS runs_problem ON runs (problem, optimizer);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep TEXT NOT NULL, key TEXT NOT NULL REFERENCES runs (key) ON DELETE CASCADE, phase TEXT,
    PRIMARY KEY (sweep, key));
CREATE TABLE IF NOT EXISTS curves (
    key TEXT NOT NULL REFERENCES runs (key) ON DELETE CASCADE, step INTEGER NOT NULL, seconds REAL NOT NULL,
    train_loss REAL, valid_loss REAL, valid_metric REAL, PRIMARY KEY (key, step));
"""


class StoreError(RuntimeError):
    """The database file cannot be used (damaged, another schema version, not an optimlab store);
    the message names the file and says what to do."""


def unusable(path: str | Path, error: sqlite3.DatabaseError | str, untouched: bool = True) -> StoreError:
    """The :class:`StoreError` of the database at ``path`` that failed with ``error`` (an
    exception, or what ``PRAGMA quick_check`` found); ``untouched``: found before anything was
    written to it."""
    if isinstance(error, str) or getattr(error, "sqlite_errorname", None) == "SQLITE_CORRUPT":
        return StoreError(f"{path} is damaged ({error}){'; nothing was written to it' if untouched else ''}. Check it "
                          f"with `sqlite3 {path} 'PRAGMA integrity_check'`, move it aside (`mv {path} {path}.damaged`) "
                          f"and run again: a new database is started, and the results can be recomputed")
    if getattr(error, "sqlite_errorname", None) == "SQLITE_NOTADB":
        return StoreError(f"{path} is not an SQLite database ({error}); give another file as the results database")
    return StoreError(f"{path}: not a usable results database ({error})")


def quick_check(conn: sqlite3.Connection) -> str | None:
    """What SQLite's quick check finds wrong with the file's pages (its first finding), or None.
    It reads every page once: milliseconds for a results database of a few megabytes."""
    findings = [row[0] for row in conn.execute("PRAGMA quick_check")]
    return None if findings == ["ok"] else findings[0].splitlines()[-1]


def clean(value: Any) -> Any:
    """Non-finite floats as None (SQLite would turn nan into NULL anyway; inf too, for JSON)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class Store:
    """A SQLite results database at ``path`` (created with its folder if missing; ":memory:" works).

    Use as a context manager or call :meth:`close`. One ``Store`` is used from one thread.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path if str(path) == ":memory:" else Path(path)
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn: Any = None
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            damage = quick_check(self.conn)  # before anything is written: writing could spread it
            if damage is not None:
                raise unusable(self.path, damage)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable against a killed process
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(SCHEMA)  # idempotent (IF NOT EXISTS); executescript commits itself
            with self.transaction():
                row = self.conn.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    self.conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                elif row["version"] != SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: results database of schema version {row['version']}, this "
                                     f"optimlab reads version {SCHEMA_VERSION}; use another --db file")
        except BaseException as error:
            if self.conn is not None:
                self.conn.close()
            if isinstance(error, sqlite3.DatabaseError):
                raise unusable(self.path, error) from None
            raise

    # -- plumbing ------------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception: all or nothing."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------------
    def save_sweep(self, name: str, problem: str, spec: Mapping[str, Any] | None = None) -> None:
        """Create or update the sweep ``name`` (its problem and spec as JSON)."""
        now = time.time()
        with self.transaction():
            self._upsert_sweep(name, problem, spec, now)

    def _upsert_sweep(self, name: str, problem: str, spec: Mapping[str, Any] | None, now: float) -> None:
        spec_json = None if spec is None else json.dumps(spec, sort_keys=True)
        self.conn.execute(
            "INSERT INTO sweeps (name, problem, spec, created, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET updated = excluded.updated, "
            "spec = COALESCE(excluded.spec, sweeps.spec), problem = excluded.problem",
            (name, problem, spec_json, now, now))

    def save(self, config: RunConfig, result: RunResult, sweep: str | None = None, phase: str | None = None,
             started: float | None = None) -> str:
        """Store a finished run (replacing an earlier one with the same key), its curve, and its
        membership in ``sweep``; one transaction. Returns the run's key."""
        if not isinstance(config, RunConfig) or not isinstance(result, RunResult):
            raise TypeError(f"Store.save: expected a RunConfig and a RunResult, got {type(config).__name__} "
                            f"and {type(result).__name__}")
        key = config.key()
        now = time.time()
        configured = config.to_dict()
        configured["kwargs"] = json.dumps(configured["kwargs"], sort_keys=True)
        produced = result.to_dict()
        values = {"key": key, "sweep": sweep, "config": config.canonical_json(),
                  **{c: configured[c] for c in CONFIG_COLUMNS}, **{c: produced[c] for c in RESULT_COLUMNS},
                  "created": now if started is None else started, "finished": now}
        columns = list(values)
        with self.transaction():
            self.conn.execute(f"INSERT OR REPLACE INTO runs ({', '.join(columns)}) "
                              f"VALUES ({', '.join('?' * len(columns))})",
                              [clean(values[c]) for c in columns])
            self.conn.execute("DELETE FROM curves WHERE key = ?", (key,))
            self.conn.executemany(
                f"INSERT INTO curves (key, {', '.join(CURVE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                [(key, *(clean(getattr(point, c)) for c in CURVE_COLUMNS)) for point in result.curve])
            if sweep is not None:
                self._upsert_sweep(sweep, config.problem, None, now)
                self._link(sweep, key, phase)
        return key

    def _link(self, sweep: str, key: str, phase: str | None) -> None:
        self.conn.execute("INSERT INTO sweep_runs (sweep, key, phase) VALUES (?, ?, ?) "
                          "ON CONFLICT (sweep, key) DO UPDATE SET phase = COALESCE(sweep_runs.phase, excluded.phase)",
                          (sweep, key, phase))

    def link(self, sweep: str, key: str, phase: str | None = None) -> None:
        """Make the stored run ``key`` part of ``sweep`` too (without running it again)."""
        with self.transaction():
            row = self.conn.execute("SELECT problem FROM runs WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"Store.link: no run with key {key!r}")
            self._upsert_sweep(sweep, row["problem"], None, time.time())
            self._link(sweep, key, phase)

    def unlink(self, sweep: str, keys: Iterable[str]) -> int:
        """Remove runs ``keys`` from ``sweep`` (the runs stay stored); returns how many were in it."""
        keys = list(keys)
        with self.transaction():
            before = self.conn.total_changes
            self.conn.executemany("DELETE FROM sweep_runs WHERE sweep = ? AND key = ?", [(sweep, k) for k in keys])
            return self.conn.total_changes - before

    # -- reading -------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone() is not None

    def done_keys(self, sweep: str | None = None) -> set[str]:
        """Keys of the runs stored for ``sweep`` (all stored runs when None)."""
        if sweep is None:
            return {row[0] for row in self.conn.execute("SELECT key FROM runs")}
        return {row[0] for row in self.conn.execute("SELECT key FROM sweep_runs WHERE sweep = ?", (sweep,))}

    def runs(self, sweep: str | None = None, problem: str | None = None,
             optimizer: str | None = None) -> list[dict[str, Any]]:
        """Stored runs as dicts with the keys :data:`RUN_FIELDS` plus ``config`` (a dict), ordered
        by optimizer, lr, seed. With ``sweep``: that sweep's runs, ``phase`` their phase in it;
        without: every run once, ``sweep``/``phase`` those of the sweep that first ran it.
        ``kwargs`` is a dict; booleans are bools; missing or non-finite values are None."""
        if sweep is None:
            sql = ("SELECT r.*, r.sweep AS in_sweep, m.phase AS phase FROM runs r "
                   "LEFT JOIN sweep_runs m ON m.sweep = r.sweep AND m.key = r.key WHERE 1")
            args: list[Any] = []
        else:
            sql = ("SELECT r.*, m.sweep AS in_sweep, m.phase AS phase FROM runs r "
                   "JOIN sweep_runs m ON m.key = r.key WHERE m.sweep = ?")
            args = [sweep]
        for column, value in (("problem", problem), ("optimizer", optimizer)):
            if value is not None:
                sql += f" AND r.{column} = ?"
                args.append(value)
        sql += " ORDER BY r.optimizer, r.lr, r.seed, r.key"
        return [self._row(row) for row in self.conn.execute(sql, args)]

    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        data = {field: row[field] for field in RUN_FIELDS if field not in ("sweep",)}
        data["sweep"] = row["in_sweep"]
        data["kwargs"] = json.loads(row["kwargs"])
        for column in BOOLEAN_COLUMNS:
            data[column] = bool(data[column])
        data["config"] = json.loads(row["config"])
        return {field: data[field] for field in (*RUN_FIELDS, "config")}

    def run(self, key: str) -> dict[str, Any] | None:
        """The stored run ``key`` as in :meth:`runs` (None if absent)."""
        row = self.conn.execute("SELECT r.*, r.sweep AS in_sweep, m.phase AS phase FROM runs r LEFT JOIN "
                                "sweep_runs m ON m.sweep = r.sweep AND m.key = r.key WHERE r.key = ?",
                                (key,)).fetchone()
        return None if row is None else self._row(row)

    def load(self, key: str) -> tuple[RunConfig, RunResult]:
        """The stored run ``key`` as the objects it was saved from (curve included)."""
        data = self.run(key)
        if data is None:
            raise KeyError(f"Store.load: no run with key {key!r}")
        result = {c: data[c] for c in RESULT_COLUMNS}
        result["curve"] = self.curve(key)
        return RunConfig.from_dict(data["config"]), RunResult.from_dict(result)

    def curve(self, key: str) -> list[dict[str, Any]]:
        """The run's evaluations, by step: dicts with step, seconds, train_loss, valid_loss, valid_metric."""
        rows = self.conn.execute(f"SELECT {', '.join(CURVE_COLUMNS)} FROM curves WHERE key = ? ORDER BY step",
                                 (key,))
        return [dict(row) for row in rows]

    def curves(self, sweep: str) -> dict[str, list[dict[str, Any]]]:
        """Every curve of ``sweep``'s runs: key -> :meth:`curve`."""
        result: dict[str, list[dict[str, Any]]] = {}
        rows = self.conn.execute(f"SELECT c.key, {', '.join('c.' + c for c in CURVE_COLUMNS)} FROM curves c "
                                 "JOIN sweep_runs m ON m.key = c.key WHERE m.sweep = ? ORDER BY c.key, c.step",
                                 (sweep,))
        for row in rows:
            result.setdefault(row["key"], []).append({c: row[c] for c in CURVE_COLUMNS})
        return result

    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep: name, problem, spec (dict or None), created, updated, runs (how many)."""
        rows = self.conn.execute("SELECT s.*, (SELECT COUNT(*) FROM sweep_runs m WHERE m.sweep = s.name) AS runs "
                                 "FROM sweeps s ORDER BY s.created, s.name")
        return [{"name": row["name"], "problem": row["problem"],
                 "spec": None if row["spec"] is None else json.loads(row["spec"]),
                 "created": row["created"], "updated": row["updated"], "runs": row["runs"]} for row in rows]

    def sweep(self, name: str) -> dict[str, Any] | None:
        """One sweep as in :meth:`sweeps` (None if absent)."""
        return next((s for s in self.sweeps() if s["name"] == name), None)

    # -- export --------------------------------------------------------------------------------
    def export(self, path: str | Path, fmt: str = "csv", sweep: str | None = None) -> Path:
        """Write the runs (of ``sweep``, or all) to ``path``: ``csv`` one row per run with the
        columns :data:`RUN_FIELDS` (kwargs as JSON); ``json`` an object with the schema version,
        the sweeps and the runs, each run with its config and its curve."""
        if fmt not in FORMATS:
            raise ValueError(f"Store.export: unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        runs = self.runs(sweep)
        if fmt == "csv":
            with path.open("w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=RUN_FIELDS)
                writer.writeheader()
                for run in runs:
                    row = {k: run[k] for k in RUN_FIELDS}
                    row["kwargs"] = json.dumps(row["kwargs"], sort_keys=True)
                    writer.writerow(row)
        else:
            sweeps = self.sweeps() if sweep is None else [s for s in self.sweeps() if s["name"] == sweep]
            document = {"schema_version": SCHEMA_VERSION, "sweeps": sweeps,
                        "runs": [{**run, "curve": self.curve(run["key"])} for run in runs]}
            path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
        return path
