"""Faults of the machine under mbxtui, told apart from bugs and said in one sentence that names the
place: a full disk, a read-only database or file system, a disk that fails, a damaged database, a
database file replaced or deleted while it was open.

``fault_sentence`` is the one mapping from what the OS and SQLite raise (SQLITE_FULL, SQLITE_READONLY,
SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_CORRUPT; ENOSPC, EDQUOT, EROFS, EIO) to those sentences; the
command line's error handler and the console's workers (through ``errors.problem_sentence``) both
use it. It looks through the whole chain of an exception: when a statement fails on a full disk,
SQLite has already rolled the transaction back, and the ROLLBACK that follows ("cannot rollback - no
transaction is active") hides the cause unless the chain is read.

PostgreSQL's faults of the machine name the server (``host:port/dbname``, never a password): every
connection slot taken (SQLSTATE 53300, or the slots left reserved for superusers), a full disk
(53100), no memory (53200), the server unreachable or gone (class 08, 57P01-57P03, libpq's own
words when it could not connect), and a read-only transaction (25006: a standby, or
``default_transaction_read_only``). A connection refused while connecting carries no SQLSTATE, so
libpq's message is read.

Some of these pass without a restart (a full disk once space is freed, a server that has a free
slot again or is back up): ``passing_fault`` names them, so that a long-running runner waits them
out instead of stopping. ``database_fault`` names those of the database alone, which a runner hands
back instead of charging to the mailbox it was working on.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path
from typing import NamedTuple

from mbxtui.core.errors import MbxError

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_FULL = sqlite3.SQLITE_FULL
_SQLITE_READONLY = sqlite3.SQLITE_READONLY
_SQLITE_IOERR = sqlite3.SQLITE_IOERR
_SQLITE_CANTOPEN = sqlite3.SQLITE_CANTOPEN
_SQLITE_CORRUPT = sqlite3.SQLITE_CORRUPT
_SQLITE_NOTADB = sqlite3.SQLITE_NOTADB

# The runners' lines about faults they wait out (``mbxtui worker`` prints them on stderr).
log = logging.getLogger(__name__)

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_CHAIN_DEPTH = 8


class MachineFault(MbxError):
    """A fault of the machine, already said as a sentence naming the place."""


class ReadOnlyDatabase(MachineFault):
    """A change asked of a database opened read-only."""


class DatabaseReplaced(MachineFault):
    """The database file at the path is no longer the one that was opened."""


def disk_full(where: Path | str) -> str:
    return (f"the disk holding {where} is full (no space left on device): nothing was changed; free some space "
            "there and try again")


def read_only(where: Path | str) -> str:
    return (f"the database {where} is read-only (its file or its file system cannot be written): nothing was "
            "changed; listing and showing still work, make it writable to change anything")


def read_only_file(where: Path | str) -> str:
    return (f"{where} is on a read-only file system: nothing was changed; remount it read-write "
            "and try again")


def disk_failed(where: Path | str, what: str) -> str:
    return (f"the disk failed reading or writing {where} ({what}): nothing more was written; check the disk "
            "and the system log, then try again")


def cannot_open(where: Path | str) -> str:
    return (f"the database {where} cannot be opened (it is gone, or its directory cannot be read or "
            "written): nothing was changed; check that it is there and yours")


def damaged(where: Path | str) -> str:
    return (f"the database {where} is damaged (not a valid SQLite database any more): nothing was changed; "
            "restore it from a backup")


def replaced(where: Path | str, deleted: bool) -> str:
    what = "was deleted" if deleted else "was replaced by another file"
    return (f"the database file {where} {what} while mbxtui had it open: nothing was written to the old "
            "one; start mbxtui again to open what is there now")


class _Fault(NamedTuple):
    sentence: str
    passes: bool  # may pass without a restart: a full disk, a server without a free slot or restarting
    database: bool  # the database's (SQLite's or PostgreSQL's), not another file's


def fault_sentence(exc: BaseException, database_path: Path | str | None = None, *,
                   opening: bool = False) -> str | None:
    """The sentence for a machine fault anywhere in ``exc``'s chain, else None. SQLite's errors
    name ``database_path`` (by default the bound database's file); an OSError names its own file.
    ``opening``: only the faults of the machine (a full disk, a read-only or failing one, a
    PostgreSQL server without a free connection slot), not a file that is no database nor a server
    that cannot be reached, which opening says in its own words."""
    fault = _fault(exc, database_path, opening)
    return None if fault is None else fault.sentence


def passing_fault(exc: BaseException) -> str | None:
    """The sentence when ``exc`` is a fault that may pass while the process runs on (a full disk,
    the database server without a free connection slot, out of disk or memory, restarting or out of
    reach), else None. A read-only, failing, damaged or replaced database does not pass by itself."""
    fault = _fault(exc, None, False)
    return fault.sentence if fault is not None and fault.passes else None


def database_fault(exc: BaseException) -> str | None:
    """The sentence when ``exc`` is a fault of the database or of the machine under it (not of
    another file), else None: what a runner must not charge to the mailbox it was working on."""
    fault = _fault(exc, None, False)
    return fault.sentence if fault is not None and fault.database else None


def _fault(exc: BaseException, database_path: Path | str | None, opening: bool) -> _Fault | None:
    for cause in _chain(exc):
        fault: _Fault | None = None
        if isinstance(cause, MachineFault):
            fault = _Fault(str(cause), False, True)
        elif isinstance(cause, sqlite3.Error):
            fault = _sqlite_fault(cause, database_path, opening)
        elif _is_postgres_error(cause):
            fault = _postgres_fault(cause, database_path, opening)
        elif isinstance(cause, OSError) and cause.errno is not None:
            fault = _os_fault(cause)
        if fault is not None:
            return fault
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, then what it wraps (peewee puts the driver's exception first in its arguments),
    what caused it and what it interrupted, each once."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending and len(seen) < _CHAIN_DEPTH:
        current = pending.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        wrapped = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        # ``raise ... from None`` says the error it interrupted is not the cause.
        interrupted = None if current.__suppress_context__ else current.__context__
        pending.extend(c for c in (wrapped, current.__cause__, interrupted) if c is not None)
    return seen


def _sqlite_fault(exc: sqlite3.Error, database_path: Path | str | None, opening: bool) -> _Fault | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    where = database_path if database_path is not None else _bound_sqlite_path()
    if where is None:
        return None
    primary = code & 0xFF
    if primary == _SQLITE_FULL:
        return _Fault(disk_full(where), True, True)
    if primary == _SQLITE_READONLY:
        return _Fault(read_only(where), False, True)
    if primary == _SQLITE_IOERR:
        # SQLite says a full disk as an I/O error where it grows the -shm (SQLITE_IOERR_SHMSIZE),
        # so the disk is asked.
        if _no_space_left(where):
            return _Fault(disk_full(where), True, True)
        return _Fault(disk_failed(where, getattr(exc, "sqlite_errorname", "SQLITE_IOERR")), False, True)
    if opening:
        return None
    if primary == _SQLITE_CANTOPEN:
        return _Fault(cannot_open(where), False, True)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return _Fault(damaged(where), False, True)
    return None


def _os_fault(exc: OSError) -> _Fault | None:
    where = exc.filename if exc.filename is not None else "a file mbxtui writes"
    if exc.errno in _DISK_FULL_ERRNOS:
        return _Fault(disk_full(Path(str(where)).parent if _is_temporary(where) else where), True, False)
    if exc.errno == errno.EROFS:
        return _Fault(read_only_file(where), False, False)
    if exc.errno == errno.EIO:
        return _Fault(disk_failed(where, "input/output error"), False, False)
    return None


def _no_space_left(where: Path | str) -> bool:
    try:
        info = os.statvfs(Path(where).parent)
    except OSError:
        return False
    return info.f_bavail == 0 or (info.f_favail == 0 and info.f_files > 0)


def _is_temporary(name: object) -> bool:
    # A temporary file beside the one being replaced (``.NAME.XXXX``): its directory says more.
    return Path(str(name)).name.startswith(".")


def _bound_sqlite_path() -> str | None:
    from peewee import SqliteDatabase

    from mbxtui.core.models import database

    bound = database.obj
    return bound.database if isinstance(bound, SqliteDatabase) else None


# --- PostgreSQL ---------------------------------------------------------------------------------

_PG_TOO_MANY_CONNECTIONS = "53300"
_PG_DISK_FULL = "53100"
_PG_OUT_OF_MEMORY = "53200"
_PG_READ_ONLY_TRANSACTION = "25006"
_PG_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})  # admin shutdown, crash shutdown, cannot connect now
_PG_NO_SLOT_WORDS = ("too many clients already", "remaining connection slots are reserved",
                     "too many connections for")
_PG_GONE_WORDS = ("could not connect to server", "connection refused", "server closed the connection",
                  "connection already closed", "terminating connection", "the database system is",
                  "could not receive data from server", "could not send data to server", "no connection to the server",
                  "failed: timeout expired", "no route to host", "network is unreachable")
_PG_DISK_FULL_WORDS = ("no space left on device",)


def too_many_connections(server: str) -> str:
    return (f"the PostgreSQL server {server} refuses new connections: every connection slot is taken "
            "(max_connections reached): nothing was changed; close idle sessions or raise max_connections, "
            "then try again")


def server_disk_full(server: str) -> str:
    return (f"the PostgreSQL server {server} is out of disk space (no space left on device): nothing was "
            "changed; free some space where the server keeps its data and try again")


def server_cannot_write(server: str, reason: str) -> str:
    return (f"the PostgreSQL server {server} could not write its files ({reason}): its disk may be full; "
            "nothing was changed; check the free space where the server keeps its data and its log, then try again")


def server_out_of_memory(server: str) -> str:
    return (f"the PostgreSQL server {server} is out of memory: nothing was changed; free memory on the "
            "server or lower its memory settings, then try again")


def server_gone(server: str, reason: str) -> str:
    return (f"the PostgreSQL server {server} cannot be reached or closed the connection ({reason}): what was "
            "under way was not committed; check that the server is running, then try again")


def server_read_only(server: str) -> str:
    return (f"the PostgreSQL database {server} is read-only (a standby, or default_transaction_read_only is "
            "on): nothing was changed; listing and showing still work, make changes on the primary server")


def server_name(url: str) -> str:
    """``host:port/dbname`` of a postgresql:// URL: never its user or password."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = unquote(parts.hostname or "") or query.get("host", [""])[-1] or os.environ.get("PGHOST", "") or "localhost"
    try:
        port = parts.port or query.get("port", [""])[-1] or os.environ.get("PGPORT", "") or 5432
    except ValueError:
        port = "?"
    return f"{host}:{port}/{unquote(parts.path.lstrip('/'))}"


def _is_postgres_error(exc: BaseException) -> bool:
    # psycopg2 is imported only where PostgreSQL is used: its errors are known by their module.
    return type(exc).__module__.startswith("psycopg2")


def _postgres_fault(exc: BaseException, server: Path | str | None, opening: bool) -> _Fault | None:
    code = getattr(exc, "pgcode", None) or ""
    text = " ".join(str(exc).split())
    words = text.lower()
    where = str(server) if server is not None else _bound_server()
    if where is None:
        return None
    if code == _PG_TOO_MANY_CONNECTIONS or any(w in words for w in _PG_NO_SLOT_WORDS):
        return _Fault(too_many_connections(where), True, True)
    if code == _PG_DISK_FULL or any(w in words for w in _PG_DISK_FULL_WORDS):
        return _Fault(server_disk_full(where), True, True)
    if "could not write init file" in words:  # a first session's cache file, on a full disk most often
        return _Fault(server_cannot_write(where, _reason(text)), True, True)
    if code == _PG_OUT_OF_MEMORY:
        return _Fault(server_out_of_memory(where), True, True)
    if code == _PG_READ_ONLY_TRANSACTION:
        return _Fault(server_read_only(where), False, True)
    if opening:  # a server that cannot be reached is said by opening, in libpq's words
        return None
    if code.startswith("08") or code in _PG_SERVER_GONE or (not code and any(w in words for w in _PG_GONE_WORDS)):
        return _Fault(server_gone(where, _reason(text)), True, True)
    return None


def _reason(text: str) -> str:
    """libpq's reason, without the repeated "connection to server at ... failed:" preamble."""
    reason = text.rsplit("failed: ", 1)[-1] if "failed: " in text else text
    return reason.removeprefix("FATAL: ").strip() or "no reason given"


def forget_connection() -> None:
    """Close this thread's database connection after a fault, so that the thread's next call
    connects anew: a pooled thread would otherwise keep a connection the server has closed."""
    import contextlib

    from mbxtui.core.models import database

    with contextlib.suppress(Exception):
        database.close()


def _bound_server() -> str | None:
    from peewee import PostgresqlDatabase

    from mbxtui.core.models import database

    bound = database.obj
    return server_name(str(bound.database)) if isinstance(bound, PostgresqlDatabase) else None
