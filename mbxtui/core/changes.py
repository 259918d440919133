"""Telling a console that the mailboxes changed elsewhere (another console, a worker, the CLI), so it
can show them again without reading whole tables to find out.

The database's own change signal (``dialect.change_signal``: ``PRAGMA data_version`` on SQLite,
LISTEN/NOTIFY on PostgreSQL) is watched on a thread of its own. A burst of changes, such as a bulk
approval by another operator or Test & Enable results arriving, costs one call: the watcher waits
until the changes settle (``settle_seconds`` without another, at most ``max_delay_seconds``) and
leaves at least ``min_interval_seconds`` between two calls. ``on_change`` runs on the watcher's
thread; a console turns it into a message for its own loop. When the signal's connection is lost,
``on_error`` hears why, and the watcher opens it again every ``RECONNECT_SECONDS`` (then calls
``on_change``: what changed meanwhile is unknown).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Callable

import peewee
import psycopg2

from mbxtui.core import dialect

DATABASE_ERRORS = (sqlite3.Error, psycopg2.Error, peewee.DatabaseError)
RECONNECT_SECONDS = 5.0  # after losing the signal (the server restarted, say)


class ChangeWatcher:
    def __init__(self, db: peewee.Database, on_change: Callable[[], None], *,
                 on_error: Callable[[Exception], None] | None = None, settle_seconds: float = 0.25,
                 max_delay_seconds: float = 2.0, min_interval_seconds: float = 1.0):
        self._db = db
        self._on_change = on_change
        self._on_error = on_error
        self.settle_seconds = settle_seconds
        self.max_delay_seconds = max_delay_seconds
        self.min_interval_seconds = min_interval_seconds
        self._stopping = threading.Event()
        self._signal = dialect.of(db).change_signal(db)  # opened here: a refused connection shows at once
        self._signal_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mbxtui-changes", daemon=True)

    def start(self) -> ChangeWatcher:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop watching and close the signal's connection; True once the thread has ended."""
        self._stopping.set()
        with self._signal_lock:
            if self._signal is not None:
                self._signal.interrupt()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._signal is not None:  # never started
            self._signal.close()
            self._signal = None
        return not self._thread.is_alive()

    def _run(self) -> None:
        last_call = float("-inf")
        try:
            while not self._stopping.is_set():
                try:
                    if not self._signal.wait(self.min_interval_seconds):
                        continue
                    self._settle(last_call)
                except DATABASE_ERRORS as exc:
                    if self._on_error is not None:
                        self._on_error(exc)
                    # Whatever changed while the signal was lost is unknown: once it is back,
                    # everything is shown again.
                    if not self._reopen():
                        return
                if self._stopping.is_set():
                    return
                last_call = time.monotonic()
                self._on_change()
        finally:
            with self._signal_lock:
                if self._signal is not None:
                    self._signal.close()
                    self._signal = None

    def _settle(self, last_call: float) -> None:
        """Wait while more changes keep coming, within the bounds."""
        started = time.monotonic()
        deadline = started + self.max_delay_seconds
        earliest = max(started, last_call + self.min_interval_seconds)
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            quiet = self.settle_seconds if now >= earliest else max(self.settle_seconds, earliest - now)
            if not self._signal.wait(min(quiet, deadline - now)) and time.monotonic() >= earliest:
                return

    def _reopen(self) -> bool:
        """Open the signal again, every ``RECONNECT_SECONDS`` until it opens (True) or the watcher
        stops (False)."""
        with self._signal_lock:
            if self._signal is not None:
                with contextlib.suppress(*DATABASE_ERRORS, OSError):
                    self._signal.close()
                self._signal = None
        while not self._stopping.wait(RECONNECT_SECONDS):
            try:
                signal = dialect.of(self._db).change_signal(self._db)
            except DATABASE_ERRORS:
                continue
            with self._signal_lock:
                if self._stopping.is_set():
                    signal.close()
                    return False
                self._signal = signal
            return True
        return False
