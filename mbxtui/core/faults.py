"""Faults of the machine under mbxtui, told apart from bugs and said in one sentence that names the
place: a full disk, a read-only database or file system, a disk that fails, a damaged database, a
database file replaced or deleted while it was open.

``fault_sentence`` is the one mapping from what the OS and SQLite raise (SQLITE_FULL, SQLITE_READONLY,
SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_CORRUPT; ENOSPC, EDQUOT, EROFS, EIO) to those sentences; the
command line's error handler and the console's workers (through ``errors.problem_sentence``) both
use it. It looks through the whole chain of an exception: when a statement fails on a full disk,
SQLite has already rolled the transaction back, and the ROLLBACK that follows ("cannot rollback - no
transaction is active") hides the cause unless the chain is read. PostgreSQL's errors are not
mapped here (None: their own handling stands).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from mbxtui.core.errors import MbxError

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_FULL = sqlite3.SQLITE_FULL
_SQLITE_READONLY = sqlite3.SQLITE_READONLY
_SQLITE_IOERR = sqlite3.SQLITE_IOERR
_SQLITE_CANTOPEN = sqlite3.SQLITE_CANTOPEN
_SQLITE_CORRUPT = sqlite3.SQLITE_CORRUPT
_SQLITE_NOTADB = sqlite3.SQLITE_NOTADB

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


def fault_sentence(exc: BaseException, database_path: Path | str | None = None, *,
                   opening: bool = False) -> str | None:
    """The sentence for a machine fault anywhere in ``exc``'s chain, else None. SQLite's errors
    name ``database_path`` (by default the bound database's file); an OSError names its own file.
    ``opening``: only the faults of the machine (a full disk, a read-only or failing one), not a
    file that is no database, which opening says in its own words."""
    for cause in _chain(exc):
        if isinstance(cause, MachineFault):
            return str(cause)
        if isinstance(cause, sqlite3.Error):
            sentence = _sqlite_sentence(cause, database_path, opening)
            if sentence is not None:
                return sentence
        elif isinstance(cause, OSError) and cause.errno is not None:
            sentence = _os_sentence(cause)
            if sentence is not None:
                return sentence
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


def _sqlite_sentence(exc: sqlite3.Error, database_path: Path | str | None, opening: bool) -> str | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    where = database_path if database_path is not None else _bound_sqlite_path()
    if where is None:
        return None
    primary = code & 0xFF
    if primary == _SQLITE_FULL:
        return disk_full(where)
    if primary == _SQLITE_READONLY:
        return read_only(where)
    if primary == _SQLITE_IOERR:
        # SQLite says a full disk as an I/O error where it grows the -shm (SQLITE_IOERR_SHMSIZE),
        # so the disk is asked.
        if _no_space_left(where):
            return disk_full(where)
        return disk_failed(where, getattr(exc, "sqlite_errorname", "SQLITE_IOERR"))
    if opening:
        return None
    if primary == _SQLITE_CANTOPEN:
        return cannot_open(where)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return damaged(where)
    return None


def _os_sentence(exc: OSError) -> str | None:
    where = exc.filename if exc.filename is not None else "a file mbxtui writes"
    if exc.errno in _DISK_FULL_ERRNOS:
        return disk_full(Path(str(where)).parent if _is_temporary(where) else where)
    if exc.errno == errno.EROFS:
        return read_only_file(where)
    if exc.errno == errno.EIO:
        return disk_failed(where, "input/output error")
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
