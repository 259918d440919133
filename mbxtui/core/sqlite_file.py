"""The SQLite file mbxtui opened, held to that one file and to what it may do with it.

- **Replaced or deleted under a running process**: the file's device and inode are kept at the
  first open; every new connection and every transaction checks the path still names that file.
  A deleted SQLite file stays writable through the connections already open, so without this a
  console or a worker would go on writing into a file nobody will ever read again; and a new
  connection would create an empty database at the path (``mode=rw``: it never creates one).
- **Read-only**: when the file or its file system cannot be written (at the open, or later when a
  new connection fails), connections are opened read-only (``mode=ro``), or ``immutable`` when not even the WAL's companion files can be made
  there (SQLite's read-only WAL needs a ``-shm`` it can read or create); a write transaction is
  then refused with one sentence before anything starts.
- **A failed statement ends the transaction**: SQLite rolls back by itself on a full disk or an I/O
  error, and peewee's ROLLBACK afterwards failed with "cannot rollback - no transaction is active",
  which hid the cause. A rollback with no transaction open is skipped.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from peewee import SqliteDatabase

from mbxtui.core.faults import DatabaseReplaced, ReadOnlyDatabase, read_only, replaced

_FileIdentity = tuple[int, int]


def is_read_only(path: Path) -> bool:
    """Whether this process cannot write ``path`` (its mode, or a read-only file system)."""
    return path.exists() and not os.access(path, os.W_OK)


def _needs_immutable(path: Path) -> bool:
    # Read-only WAL needs a -shm it can create or read; with neither, and no WAL left to read,
    # the file is read as it is, which nobody can change while its directory and file are unwritable.
    shm = path.with_name(f"{path.name}-shm")
    wal = path.with_name(f"{path.name}-wal")
    wal_empty = not wal.exists() or wal.stat().st_size == 0
    return not shm.exists() and not os.access(path.parent, os.W_OK) and wal_empty


def _identity(path: str) -> _FileIdentity | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


class GuardedSqliteDatabase(SqliteDatabase):
    """peewee's SqliteDatabase on one file, opened read-only when it cannot be written."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        self.path = path
        self._choose_mode()
        self.identity = _identity(str(path))
        super().__init__(str(path), **kwargs)

    def _choose_mode(self) -> None:
        self.read_only = is_read_only(self.path)
        mode = "ro" if self.read_only else "rw"
        immutable = self.read_only and _needs_immutable(self.path)
        self.uri = f"{self.path.as_uri()}?mode={mode}" + ("&immutable=1" if immutable else "")

    def check_same_file(self) -> None:
        """DatabaseReplaced unless the path still names the file opened first."""
        now = _identity(self.database)
        if now != self.identity:
            raise DatabaseReplaced(replaced(self.database, deleted=now is None))

    def _connect(self) -> sqlite3.Connection:
        try:
            return self._open_connection()
        except sqlite3.Error:
            # The file system may have gone read-only under a running process (ext4's
            # errors=remount-ro, a remount): from now on connections read.
            if self.read_only or not is_read_only(self.path):
                raise
            self._choose_mode()
            return self._open_connection()

    def _open_connection(self) -> sqlite3.Connection:
        self.check_same_file()
        conn = sqlite3.connect(self.uri, timeout=self._timeout, isolation_level=None, uri=True,
                               **self.connect_params)
        try:
            self.check_same_file()  # replaced between the check and the open
            self._add_conn_hooks(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_pragmas(self, conn: sqlite3.Connection) -> None:
        if not self.read_only:
            super()._set_pragmas(conn)
            return
        # journal_mode would have to write the header; the file keeps whatever mode it has.
        cursor = conn.cursor()
        for pragma, value in self._pragmas:
            if pragma != "journal_mode":
                cursor.execute(f"PRAGMA {pragma} = {value};")
        cursor.close()

    def begin(self, lock_type: str | None = None) -> None:
        if self.read_only and (lock_type or "").upper() in ("IMMEDIATE", "EXCLUSIVE"):
            raise ReadOnlyDatabase(read_only(self.database))
        self.check_same_file()
        super().begin(lock_type)

    def rollback(self) -> None:
        if not self.is_closed() and not self.connection().in_transaction:
            return  # SQLite already rolled back (a full disk, an I/O error): nothing to undo
        super().rollback()
