"""Fixtures and probes of the concurrency and crash tests (prefixed ``concurrency_`` so that the
other hardening tests' fixtures never clash with them).

A database of 100,000 pending mailboxes is built once per session in a child process (the test
process keeps its own database binding) and copied for every test that changes it. Each runs on
the suite's backend (tests/backends.py): "the write lock" is SQLite's, or on PostgreSQL the advisory
lock every mbxtui writer takes."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from mbxtui.core import dialect
from tests import backends
from tests.backends import ON_POSTGRES, Databases

REPO_ROOT = Path(__file__).resolve().parents[2]
BIG_MAILBOXES = 100_000
BIG_PROFILES = ("big-main", "big-other")
BUILD_TIMEOUT = 120.0


def build_big_database(path: str, count: int) -> None:
    """A database whose first operator is the OS login, with the profiles ``BIG_PROFILES`` and
    ``count`` users, each with a pending mailbox on the first profile (run in a child process)."""
    from mbxtui.core import db
    from mbxtui.core.models import database as bound
    from mbxtui.core.services import operators, profiles

    database = db.open_database(path)
    try:
        admin = operators.initialise()
        for name in BIG_PROFILES:
            profiles.create(admin, name=name, type="imap_smtp", incoming_host="imap.corp.test", incoming_port=993,
                            incoming_tls="implicit", incoming_auth="mailbox", outgoing_host="smtp.corp.test",
                            outgoing_port=587, outgoing_tls="starttls", outgoing_auth="mailbox")
        with db.write_transaction():
            _insert_big(bound, count)
    finally:
        database.close()  # the last connection folds the WAL back into the file


def _insert_big(database: Any, count: int) -> None:
    database.execute_sql(
        'WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) '
        'INSERT INTO "user" (id, name, email, active, created_on) '
        "SELECT 1000 + n, 'Person ' || n, 'person' || n || '@big.example.org', 1, '2024-01-01 00:00:00' FROM seq",
        [count])
    database.execute_sql(
        "INSERT INTO mailbox (name, email, regarding, user_id, owner_id, profile_id, is_forward, "
        "incoming_method, outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
        "delete_after_processing, approval, incoming_status, outgoing_status, act_status, overall_status, "
        "incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, transient_failures, active, "
        "created_on, modified_on, row_version) "
        "SELECT name, email, 'user', id, id, (SELECT id FROM profile WHERE name = ?), 0, 'server_side_sync', "
        "'server_side_sync', 'none', 0, '', 0, 0, 0, 'pending', 'not_run', 'not_run', 'not_run', 'not_run', "
        "0, 0, 0, 0, 0, 1, created_on, created_on, 1 FROM \"user\" WHERE id > 1000",
        [BIG_PROFILES[0]])


@pytest.fixture(scope="session")
def concurrency_big_template(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    path = databases.new(tmp_path_factory.mktemp("concurrency-big"), "big")
    code = ("import sys; from tests.hardening.conftest import build_big_database; "
            "build_big_database(sys.argv[1], int(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(BIG_MAILBOXES)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert done.returncode == 0, f"building the {BIG_MAILBOXES:,}-mailbox database failed:\n{done.stderr}"
    return path


@pytest.fixture
def concurrency_big_copy(databases: Databases, concurrency_big_template: Path | str,
                         tmp_path: Path) -> Iterator[Any]:
    """Yields a function making a fresh copy of the 100,000-mailbox database, named ``name``."""
    made = []

    def copy(name: str) -> Path | str:
        made.append(databases.copy(concurrency_big_template, tmp_path / name))
        return made[-1]

    yield copy
    for location in made:
        databases.drop(location)


# --- looking at a database from outside, the way another process sees it ----------------------

def write_lock_held(db_path: Path | str) -> bool:
    """True while another connection holds the database's write lock (a transaction in progress)."""
    if ON_POSTGRES:
        return scalar(db_path, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                               "AND objid = ? AND database = (SELECT oid FROM pg_database "
                               "WHERE datname = current_database())", (dialect.WRITER_LOCK,)) > 0
    with contextlib.closing(sqlite3.connect(db_path, timeout=0, isolation_level=None)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                return True
            raise
        conn.execute("ROLLBACK")
        return False


@contextlib.contextmanager
def write_lock_holder(db_path: Path | str) -> Iterator[Any]:
    """A connection of its own holding the database's write lock until its ``rollback()``."""
    if not ON_POSTGRES:
        with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            yield holder
        return
    import psycopg2

    with contextlib.closing(psycopg2.connect(str(db_path))) as holder:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [dialect.WRITER_LOCK])
        yield holder


def query(db_path: Path | str, sql: str, params: tuple = ()) -> list[tuple]:
    return [tuple(row) for row in backends.query(db_path, sql, params)]


def scalar(db_path: Path, sql: str, params: tuple = ()):
    return query(db_path, sql, params)[0][0]
