"""The database backend the suite runs on: SQLite files (the default) or PostgreSQL databases on a
private server started for the session (``MBXTUI_TEST_BACKEND=postgresql``).

A test's database is a *location*: a file path on SQLite, a ``postgresql://`` URL on PostgreSQL.
``Databases`` hands them out: a template built once per session, then a fresh copy per test (a
file copy, or ``CREATE DATABASE ... TEMPLATE``). ``query`` and ``dump`` read a location the way the
tests check what the product wrote, on either backend.

Tests that are about SQLite itself (its file, WAL, pragmas, old SQLite files) carry
``@pytest.mark.sqlite_only(reason)`` and are skipped on PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Sequence

BACKEND = os.environ.get("MBXTUI_TEST_BACKEND", "sqlite").strip().lower() or "sqlite"
if BACKEND not in ("sqlite", "postgresql"):
    raise SystemExit(f"MBXTUI_TEST_BACKEND={BACKEND!r}: choose sqlite or postgresql")
ON_POSTGRES = BACKEND == "postgresql"

_numbers = itertools.count(1)


class Databases:
    """Databases for the tests of one session, on the chosen backend."""

    def __init__(self, server=None):
        self.server = server  # tests.lab.postgres.PostgresServer on PostgreSQL

    def new(self, directory: Path, name: str = "mbxtui") -> Path | str:
        """The location of a database that does not exist yet (opening it creates the schema)."""
        if self.server is None:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            return directory / f"{name}.db"
        return self.server.create_database(f"{name}_{next(_numbers)}")

    def copy(self, template: Path | str, directory: Path) -> Path | str:
        """A new database holding what ``template`` holds (no connection to the template may be open)."""
        if self.server is None:
            directory.mkdir(mode=0o700, exist_ok=True)
            path = directory / "mbxtui.db"
            shutil.copyfile(template, path)
            os.chmod(path, 0o600)
            return path
        return self.server.create_database(f"test_{next(_numbers)}", template=_name(template))

    def drop(self, location: Path | str) -> None:
        """Remove a database a test is done with (files go with the test's temporary directory)."""
        if self.server is not None:
            self.server.drop_database(_name(location))


def _name(url: str) -> str:
    return str(url).rsplit("/", 1)[-1]


def query(location: Path | str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Rows of ``sql`` (``?`` placeholders), read on a connection of its own; each row answers to
    ``row[0]`` and ``row["column"]``, timestamps as the text SQLite stores."""
    if not ON_POSTGRES:
        conn = sqlite3.connect(f"file:{location}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg2.extensions
    import psycopg2.extras

    from mbxtui.core.postgres import TIMESTAMP_AS_TEXT, pyformat

    conn = psycopg2.connect(str(location))
    try:
        psycopg2.extensions.register_type(TIMESTAMP_AS_TEXT, conn)
        with conn.cursor(cursor_factory=psycopg2.extras.DictCursor) as cursor:
            cursor.execute(pyformat(sql), [int(v) if isinstance(v, bool) else v for v in params])
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.rollback()
        conn.close()


def execute(location: Path | str, sql: str, params: Sequence[Any] = ()) -> None:
    """Run one changing statement (``?`` placeholders) on a connection of its own, and commit."""
    if not ON_POSTGRES:
        conn = sqlite3.connect(location)
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg2

    from mbxtui.core.postgres import pyformat

    conn = psycopg2.connect(str(location))
    try:
        with conn.cursor() as cursor:
            cursor.execute(pyformat(sql), [int(v) if isinstance(v, bool) else v for v in params])
        conn.commit()
    finally:
        conn.close()


def tables(location: Path | str) -> list[str]:
    """The tables of the schema (not the backend's own, nor SQLite's full-text index)."""
    if not ON_POSTGRES:
        sql = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
               "AND name NOT LIKE '%fts%' ORDER BY name")
    else:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    return [row[0] for row in query(location, sql)]


def dump(location: Path | str) -> list[str]:
    """Every row of every table, to compare before and after a refused change."""
    if not ON_POSTGRES:
        conn = sqlite3.connect(f"file:{location}?mode=ro", uri=True)
        try:
            return sorted(conn.iterdump())
        finally:
            conn.close()
    return sorted(f"{table}: {tuple(row)!r}" for table in tables(location)
                  for row in query(location, f'SELECT * FROM "{table}"'))
