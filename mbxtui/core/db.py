"""Opening the database: a SQLite file (pragmas, owner-only files) or a PostgreSQL server
(``postgresql://USER@HOST:PORT/DBNAME``), and the schema migrations of either."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import uuid
from datetime import datetime
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import peewee
from peewee import SqliteDatabase

from mbxtui.core import dialect
from mbxtui.core.errors import MbxError, PermissionDenied, one_line, refusal
from mbxtui.core.faults import MachineFault, fault_sentence, server_name
from mbxtui.core.jobs import clock_jumps
from mbxtui.core.migrations import LATEST_VERSION, MIGRATIONS, POSTGRES_MIGRATIONS
from mbxtui.core.models import database
from mbxtui.core.paths import ensure_private_dir, foreign_owner, is_server_url, open_owner_only, user_name
from mbxtui.core.sqlite_file import GuardedSqliteDatabase, is_read_only

# One text form for every datetime written through raw SQL, the same as peewee's.
sqlite3.register_adapter(datetime, lambda value: value.isoformat(sep=" "))

log = logging.getLogger(__name__)
BUSY_TIMEOUT_SECONDS = 30
PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    # 8 MB of pages per connection, and the console holds several (the grid's background reads,
    # the Test & Enable runner, workers): 32 MB each took 25 MB more apiece at a million mailboxes
    # and made no read or bulk approval measurably faster.
    "cache_size": -8000,
    # Temporary files stay files (SQLite's default): a bulk UPDATE of 150,000 mailboxes keeps the
    # old content of every page it changes in a statement journal, and temp_store=memory held
    # those 300 MB in the process.
    # No memory-mapped reads (SQLite's default): mapped pages count as the process's own memory,
    # and a filter scanning a million mailboxes mapped 400 MB into the console. The views count
    # from indexes, which read as fast through the page cache.
}


class DatabaseError(MbxError):
    pass


def _create_owner_only(path: Path) -> None:
    ensure_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(open_owner_only(path, os.O_EXCL))


def _refuse_foreign_owner(path: Path) -> None:
    """DatabaseError when the file belongs to another user: SQLite would create the -wal and -shm
    beside it as whoever runs mbxtui (root's would lock its owner out), and the data is theirs."""
    owner = foreign_owner(path)
    if owner is not None:
        raise DatabaseError(f"{path} is owned by {owner}, not by {user_name(os.geteuid())}: mbxtui opens only "
                            f"databases of the user it runs as; run it as {owner}")


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise ValueError("migration script ends inside a statement")


def _refuse_newer(version: int) -> None:
    if version > LATEST_VERSION:
        raise DatabaseError(
            f"the database is at schema version {version}, newer than this mbxtui understands "
            f"({LATEST_VERSION}): upgrade mbxtui"
        )


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations, each in its own immediate transaction; return the version."""
    conn.isolation_level = None
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    _refuse_newer(version)
    if version == LATEST_VERSION:
        # No write lock taken: opening must not queue behind (or time out on) a long bulk change.
        return version
    for number, script in MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current >= number:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(script):
                conn.execute(statement)
            if number == 1:
                conn.execute("INSERT INTO meta (key, value) VALUES ('install_id', ?)", (uuid.uuid4().hex,))
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return conn.execute("PRAGMA user_version").fetchone()[0]


# pg_advisory_xact_lock keys: one process at a time migrates a database.
POSTGRES_MIGRATION_LOCK = 0x6D6278_01


def _postgres_version(db: peewee.Database) -> int:
    if db.execute_sql("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    row = db.execute_sql("SELECT version FROM schema_version").fetchone()
    return row[0] if row else 0


def migrate_postgres(db: peewee.Database) -> int:
    """Apply pending migrations to a PostgreSQL database, each in its own transaction under an
    advisory lock (two processes opening a new database do not both create it); return the version."""
    version = _postgres_version(db)
    _refuse_newer(version)
    if version == LATEST_VERSION:
        return version
    for number, script in POSTGRES_MIGRATIONS:
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(?)", [POSTGRES_MIGRATION_LOCK])
            db.execute_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if _postgres_version(db) >= number:
                continue
            db.execute_sql(script)
            if number == 1:
                db.execute_sql("INSERT INTO meta (key, value) VALUES ('install_id', ?)", [uuid.uuid4().hex])
            db.execute_sql("DELETE FROM schema_version")
            db.execute_sql("INSERT INTO schema_version (version) VALUES (?)", [number])
    return _postgres_version(db)


def _connect_postgres(url: str, existing_only: bool) -> peewee.Database:
    from mbxtui.core import postgres

    shown = postgres.shown_url(postgres.check_url(url))
    db = postgres.database_for(url)
    try:
        db.connect(reuse_if_open=True)
    except peewee.DatabaseError as exc:
        fault = fault_sentence(exc, server_name(url), opening=True)  # e.g. every connection slot taken
        if fault is not None:
            raise MachineFault(fault) from None
        raise DatabaseError(f"cannot connect to {shown}: {postgres.connect_failure(url, str(exc))}") from None
    try:
        if existing_only:
            _require_installation(db, shown)
        migrate_postgres(db)
        clock_jumps.follow_server(db)  # the server's clock, not this host's, for every moment
    except peewee.DatabaseError as exc:
        db.close()
        raise DatabaseError(f"cannot open {shown} as an mbxtui database: {one_line(exc)}") from None
    except BaseException:
        db.close()
        raise
    return db


def schema_version(db: peewee.Database) -> int:
    """The number of the last migration applied to ``db`` (0: none)."""
    if isinstance(db, SqliteDatabase):
        return db.execute_sql("PRAGMA user_version").fetchone()[0]
    return _postgres_version(db)


def _require_installation(db: peewee.Database, shown: str) -> None:
    """DatabaseError unless ``db`` already holds an mbxtui installation (a schema and an install id)."""
    try:
        found = schema_version(db) >= 1 and db.execute_sql(
            "SELECT value FROM meta WHERE key = 'install_id'").fetchone() is not None
    except (sqlite3.DatabaseError, peewee.DatabaseError):
        found = False
    if not found:
        raise DatabaseError(f"{shown} is not an mbxtui database (no mbxtui schema or install id in it)")


def open_database(path: Path | str) -> peewee.Database:
    """Open (creating and migrating when needed) the database and bind the models: a SQLite file
    at ``path``, or the PostgreSQL database ``path`` names when it is a postgresql:// URL."""
    db = connect_database(path)
    database.initialize(db)
    return db


def connect_database(path: Path | str, *, existing_only: bool = False) -> peewee.Database:
    """The database at ``path``, opened and migrated to the latest schema, without binding the
    models to it. ``existing_only``: refuse (DatabaseError) what is not already an mbxtui
    installation instead of creating one there."""
    if is_server_url(path):
        return _connect_postgres(str(path), existing_only)
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database file")
    if existing_only and not path.is_file():
        raise DatabaseError(f"{path} does not exist")
    _refuse_foreign_owner(path)
    if not is_read_only(path):
        try:
            _create_owner_only(path)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database {path}: {exc.strerror}") from None
    db = GuardedSqliteDatabase(path, pragmas=PRAGMAS, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    try:
        db.connect(reuse_if_open=True)
        if existing_only:
            _require_installation(db, str(path))
        migrate(db.connection())
    except (sqlite3.DatabaseError, peewee.DatabaseError) as exc:
        db.close()
        fault = fault_sentence(exc, path, opening=True)
        raise DatabaseError(fault or f"cannot open {path} as an mbxtui database: {exc}") from None
    except BaseException:
        db.close()
        raise
    return db


class BackgroundCheckpoints:
    """Moves WAL checkpoints off the connections that write, onto a thread of their own.

    By default the connection whose commit grows the WAL past 1,000 pages copies it back into the
    database before its commit returns: after approving 100,000 mailboxes that is 0.6-0.9 s more
    for the operator to wait. The console turns that off for every connection it opens from now on
    and checkpoints every ``interval`` seconds here instead (PASSIVE: never waits for readers or
    blocks writers). Other processes keep checkpointing as usual."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not isinstance(database.obj, SqliteDatabase):
            return  # PostgreSQL checkpoints on its own
        database.pragma("wal_autocheckpoint", 0, permanent=True)
        self._thread = threading.Thread(target=self._run, name="mbxtui-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        warned = False
        try:
            while not self._stop.wait(self.interval):
                try:
                    database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
                    warned = False
                except (sqlite3.Error, peewee.DatabaseError, MachineFault) as exc:
                    # Busy or closing: the next round tries again. A full disk is said once: every
                    # commit stays in the WAL, which grows until the checkpoint gets through. A file
                    # replaced under the console (MachineFault) too, rather than a traceback on its terminal.
                    fault = fault_sentence(exc)
                    if fault is not None and not warned:
                        log.warning("WAL checkpoint: %s", fault)
                        warned = True
        finally:
            with contextlib.suppress(sqlite3.Error, peewee.DatabaseError):
                database.close()

    def stop(self) -> None:
        """Checkpoint once more and stop; connections opened afterwards checkpoint as usual."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        with contextlib.suppress(sqlite3.Error, peewee.DatabaseError):
            database.pragma("wal_autocheckpoint", 1000, permanent=True)
            database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")


def raw_connection() -> sqlite3.Connection:
    """The current thread's driver connection (sqlite3's; psycopg2's on PostgreSQL), for set-based
    SQL the ORM would make slow."""
    return database.connection()


def install_id() -> str:
    row = database.execute_sql("SELECT value FROM meta WHERE key = 'install_id'").fetchone()
    return row[0]


@contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that holds the write lock from its start: writers queue one behind the other
    (see ``dialect.write_transaction``). A PostgreSQL server's refusal of the session's role
    (R35) becomes a PermissionDenied sentence, the transaction rolled back."""
    try:
        with dialect.current().write_transaction(database):
            yield
    except peewee.DatabaseError as exc:
        sentence = refusal(exc)
        if sentence is None:
            raise
        raise PermissionDenied(sentence) from None


def drop_connection() -> None:
    """Close this thread's connection after an error that may have broken it (the next query
    connects anew)."""
    with contextlib.suppress(Exception):
        database.close()


@contextmanager
def database_thread_pool(threads: int, name: str) -> Iterator[ThreadPoolExecutor]:
    """A pool whose threads each keep their database connection while the pool lasts and close it
    as it ends. Connecting anew for every task cost PostgreSQL 196 ms of a 351 ms sync cycle
    (bench/sync.py --profile); closing on the way out leaves none open behind the pool."""
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
    try:
        yield pool
    finally:
        # One closing task on each thread: each waits at the barrier until every thread holds one,
        # so that no thread takes two. The wait is bounded: a broken barrier only leaves a
        # connection to the thread's end.
        barrier = threading.Barrier(threads)

        def close_here() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)
            database.close()

        for _ in range(threads):
            pool.submit(close_here)
        pool.shutdown(wait=True)
