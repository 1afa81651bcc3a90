"""Real services for the tests: a PostgreSQL server (scripts/postgres.py) and a fresh database in it
per test.

CI starts one server for the whole run and exports its URL as ``OPTIMLAB_TEST_POSTGRES_URL``;
without it, the first test that needs PostgreSQL starts a server for the session. Where PostgreSQL
or its Python driver is not installed, those tests are skipped with the package to install.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

URL_VARIABLE = "OPTIMLAB_TEST_POSTGRES_URL"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres.py"


def postgres_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("optimlab_scripts_postgres", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The URL of a running PostgreSQL server: CI's, or one started here and stopped at the end."""
    if os.environ.get(URL_VARIABLE):
        yield os.environ[URL_VARIABLE]
        return
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver is not installed (pip package psycopg2-binary)")
    script = postgres_script()
    try:
        script.bin_dir()
    except script.PostgresError as error:
        pytest.skip(str(error))
    # Not under pytest's tmp_path: as root the server runs as the postgres user, who cannot enter
    # root's private folders; mkdtemp's folder is handed to that user.
    folder = Path(tempfile.mkdtemp(prefix="optimlab-postgres-"))
    try:
        yield script.start(folder)
    finally:
        script.stop(folder)


def _admin(server_url: str):
    import psycopg2
    import sqlalchemy

    url = sqlalchemy.make_url(server_url)
    connection = psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                  dbname=url.database or "postgres")
    connection.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
    return connection


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server (dropped afterwards): the URL to reach it."""
    import sqlalchemy

    name = f"optimlab_test_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(_admin(server_url)) as admin, admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.closing(_admin(server_url)) as admin, admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE: PostgreSQL >= 13
