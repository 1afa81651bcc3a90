"""The results database: round trips, sweeps and links, all-or-nothing saves, resume keys, export."""

from __future__ import annotations

import csv
import json
import math
import sqlite3

import pytest

from optimlab.lab.running.runs import CurvePoint, RunConfig, RunResult
from optimlab.lab.running.store import RUN_FIELDS, SCHEMA_VERSION, Store, StoreError
from optimlab.lab.training.loop import StopReason


def result(steps: int = 30, reached: int | None = 20, diverged: bool = False, best: float | None = 0.98) -> RunResult:
    curve = [CurvePoint(0, 0.0, None, 0.69, 0.5), CurvePoint(10, 0.1, 0.4, 0.3, 0.95),
             CurvePoint(20, 0.2, 0.2, 0.1, best), CurvePoint(steps, 0.3, math.nan if diverged else 0.1,
                                                             math.inf if diverged else 0.1, 0.97)]
    return RunResult(StopReason.DIVERGED if diverged else StopReason.TARGET, steps, 0.3, reached,
                     None if reached is None else 0.2, best, 0.97, None if diverged else 0.96, 0.12, diverged,
                     "accuracy", True, 0.97, "exploded" if diverged else "", curve)


def config(lr: float = 0.1, seed: int = 0, optimizer: str = "sgd", **kwargs) -> RunConfig:
    return RunConfig.for_problem("logreg-cancer", optimizer, lr, seed, **kwargs)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "sub" / "runs.sqlite") as opened:
        yield opened


def test_save_and_load_round_trip(store):
    c, r = config(kwargs={"weight_decay": 0.01}), result()
    key = store.save(c, r, sweep="s", phase="grid", started=123.0)
    assert key == c.key() and store.has(key)
    loaded_config, loaded_result = store.load(key)
    assert loaded_config == c and loaded_config.key() == key
    # Non-finite values come back as None; everything else unchanged.
    assert loaded_result == r


def test_runs_rows_have_every_field_with_python_types(store):
    c = config(schedule="cosine")
    store.save(c, result(diverged=True, reached=None), sweep="s", phase="grid", started=100.0)
    [row] = store.runs("s")
    assert list(row) == [*RUN_FIELDS, "config"]
    assert row["key"] == c.key() and row["sweep"] == "s" and row["phase"] == "grid"
    assert row["problem"] == "logreg-cancer" and row["optimizer"] == "sgd" and row["lr"] == 0.1
    assert row["batch_size"] == 32 and row["max_steps"] == 1000 and row["schedule"] == "cosine"
    assert row["kwargs"] == {} and row["stop_at_target"] is True
    assert row["diverged"] is True and row["higher_is_better"] is True and row["stop_reason"] == "diverged"
    assert row["steps_to_target"] is None and row["test_metric"] is None and row["message"] == "exploded"
    assert row["created"] == 100.0 and row["finished"] >= row["created"]
    assert row["config"] == c.to_dict()
    curve = store.curve(c.key())
    assert [p["step"] for p in curve] == [0, 10, 20, 30]
    assert curve[0]["train_loss"] is None and curve[-1]["train_loss"] is None and curve[-1]["valid_loss"] is None
    assert curve[1] == {"step": 10, "seconds": 0.1, "train_loss": 0.4, "valid_loss": 0.3, "valid_metric": 0.95}


def test_done_keys_are_per_sweep_and_links_share_runs(store):
    a, b, c = config(0.1), config(0.01), config(0.1, seed=1)
    store.save(a, result(), sweep="one", phase="grid")
    store.save(b, result(), sweep="one", phase="grid")
    store.save(c, result(), sweep="two", phase="best")
    assert store.done_keys("one") == {a.key(), b.key()}
    assert store.done_keys("two") == {c.key()}
    assert store.done_keys() == {a.key(), b.key(), c.key()}
    store.link("two", a.key(), "grid")
    assert store.done_keys("two") == {a.key(), c.key()}
    assert len(store.runs()) == 3  # stored once
    assert {(r["key"], r["sweep"]) for r in store.runs()} == {(a.key(), "one"), (b.key(), "one"), (c.key(), "two")}
    assert {r["key"]: r["phase"] for r in store.runs("two")} == {a.key(): "grid", c.key(): "best"}
    assert set(store.curves("two")) == {a.key(), c.key()}
    assert [s["name"] for s in store.sweeps()] == ["one", "two"]
    assert {s["name"]: s["runs"] for s in store.sweeps()} == {"one": 2, "two": 2}
    assert store.runs(problem="mlp-digits") == [] and len(store.runs(optimizer="sgd")) == 3
    with pytest.raises(KeyError, match="no run with key 'nope'"):
        store.link("two", "nope")


def test_saving_a_key_again_replaces_the_run_and_its_curve(store):
    c = config()
    store.save(c, result(steps=30), sweep="s")
    store.save(c, result(steps=40), sweep="s")
    [row] = store.runs("s")
    assert row["steps"] == 40
    assert [p["step"] for p in store.curve(c.key())] == [0, 10, 20, 40]


def test_a_failed_save_stores_nothing(store):
    c, r = config(), result()
    r.curve.append(CurvePoint(99, 1.0, object(), 0.1, 0.9))  # sqlite cannot store an object: fails mid-save
    with pytest.raises(sqlite3.Error):
        store.save(c, r, sweep="s", phase="grid")
    assert not store.has(c.key()) and store.runs() == [] and store.curve(c.key()) == []
    assert store.done_keys("s") == set() and store.sweeps() == []
    store.save(c, result(), sweep="s")  # and the store still works
    assert store.done_keys("s") == {c.key()}


def test_reopening_keeps_everything_and_uses_wal(tmp_path):
    path = tmp_path / "runs.sqlite"
    with Store(path) as first:
        first.save_sweep("s", "logreg-cancer", {"optimizers": ["sgd"]})
        first.save(config(), result(), sweep="s", phase="grid")
        # Another connection reads while this one is open (a report during a sweep).
        with Store(path) as reader:
            assert reader.done_keys("s") == {config().key()}
    with Store(path) as again:
        assert again.done_keys("s") == {config().key()}
        assert again.sweep("s")["spec"] == {"optimizers": ["sgd"]} and again.sweep("nope") is None
        assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert again.conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_other_schema_versions_and_other_files_are_refused(tmp_path):
    path = tmp_path / "runs.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, this optimlab reads version 1"):
        Store(path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, it is a text file " * 100)
    with pytest.raises(StoreError, match="junk.sqlite is not an SQLite database"):
        Store(junk)


def damage(path) -> None:
    """Overwrite the cell pointers of the file's first table page after the schema: the page is
    there, its rows point nowhere (what a torn write or a bad disk sector leaves)."""
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    page = next(i for i in range(1, len(data) // size) if data[i * size] == 0x0D)  # a table's leaf page
    data[page * size + 8:page * size + 72] = b"\xff" * 64
    path.write_bytes(bytes(data))


def stored_then_damaged(path) -> bytes:
    """A database holding two runs in a sweep, damaged; its bytes."""
    with Store(path) as store:
        store.save(config(), result(), sweep="s", phase="grid")
        store.save(config(lr=0.3), result(), sweep="s", phase="grid")
    damage(path)
    return path.read_bytes()


def test_a_damaged_database_is_refused_before_anything_is_written_to_it(tmp_path):
    path = tmp_path / "runs.sqlite"
    before = stored_then_damaged(path)
    with pytest.raises(StoreError) as caught:
        Store(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged (") and "\n" not in message
    assert "PRAGMA integrity_check" in message and f"mv {path} {path}.damaged" in message
    assert "recomputed" in message
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["runs.sqlite"]


def test_save_checks_its_arguments(store):
    with pytest.raises(TypeError, match="expected a RunConfig and a RunResult, got dict and RunResult"):
        store.save({}, result())


def test_export_csv_and_json(store, tmp_path):
    a, b = config(0.1), config(0.01, optimizer="adam")
    store.save(a, result(), sweep="one", phase="grid")
    store.save(b, result(diverged=True, reached=None), sweep="two", phase="grid")
    path = store.export(tmp_path / "out" / "runs.csv")
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(RUN_FIELDS)
    assert {(r["optimizer"], r["lr"], r["diverged"]) for r in rows} == {("sgd", "0.1", "False"),
                                                                          ("adam", "0.01", "True")}
    path = store.export(tmp_path / "one.json", fmt="json", sweep="one")
    document = json.loads(path.read_text())
    assert document["schema_version"] == SCHEMA_VERSION and [s["name"] for s in document["sweeps"]] == ["one"]
    [run] = document["runs"]
    assert run["key"] == a.key() and run["config"] == a.to_dict() and len(run["curve"]) == 4
    assert run["curve"][0]["train_loss"] is None
    everything = json.loads(store.export(tmp_path / "all.json", fmt="json").read_text())
    assert len(everything["runs"]) == 2  # diverged run's inf/nan exported as null: valid JSON
    with pytest.raises(ValueError, match="unknown format 'xml'; valid formats: csv, json"):
        store.export(tmp_path / "x.xml", fmt="xml")


def test_memory_store():
    with Store(":memory:") as store:
        store.save(config(), result(), sweep="s")
        assert len(store.runs("s")) == 1
