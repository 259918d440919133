"""Driver connections for the console grid's reads on worker threads (``MailboxPages.readers``).

Each worker thread would otherwise open a connection of its own on the first read it happens to
run, through peewee's per-thread connection: often a keystroke's read, and behind 20 ms of latency
a PostgreSQL connect costs 0.1-0.4 s. Here connections are kept open between reads, taken by
whichever thread reads next, and opened ahead (``warm``) while the grid paints its first screen."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from mbxtui.core import dialect
from mbxtui.core.faults import fault_sentence
from mbxtui.core.models import database


class Readers:
    """Plain driver connections to the bound database for one grid's reads, kept open between reads
    and taken by whichever worker thread reads next. A worker thread's own connection would be
    opened on the first read that thread happens to run, often a keystroke's: behind 20 ms of
    latency PostgreSQL's connect alone takes about 0.1-0.4 s. ``warm`` opens them beforehand."""

    def __init__(self, keep: int = 3) -> None:
        self._keep = keep  # connections kept open between reads (more are opened while busy)
        self._lock = threading.Lock()
        self._idle: list[tuple[object, object]] = []  # (peewee database, its driver connection)
        self._closed = False
        self._order_connection: object = None  # the connection of the last read of a view's ids

    def warm(self, count: int | None = None) -> None:
        """Open connections until ``count`` (``keep`` by default) are idle."""
        wanted = min(self._keep, self._keep if count is None else count)
        while True:
            with self._lock:
                if self._closed or len(self._idle) >= wanted:
                    return
            self._give_back(self._open())

    @contextlib.contextmanager
    def connection(self, for_order: bool = False) -> Iterator[object]:
        """A connection for one read (sqlite3's, or ``dialect.reader``'s over PostgreSQL's). After
        a fault of the machine (the server gone, say) it and the idle ones are closed, not kept:
        the next read connects anew. ``for_order``: a view's ids, read on the connection that read
        the last ones when it is free (SQLite's cached sort orders hold for their connection only:
        on another, reversing a sort read the whole order again, 0.3-0.5 s instead of 0.05-0.1 s)."""
        db = database.obj
        with self._lock:
            other = [entry for entry in self._idle if entry[0] is not db]  # a database closed since
            self._idle = [entry for entry in self._idle if entry[0] is db]
            ordering = [entry for entry in self._idle if entry[1] is self._order_connection]
            rest = [entry for entry in self._idle if entry[1] is not self._order_connection]
            found = ((ordering or rest) if for_order else (rest or ordering))[-1] if self._idle else None
            if found is not None:
                self._idle.remove(found)
        for entry in other:
            _close(entry)
        entry = found if found is not None else self._open()
        if for_order:
            self._order_connection = entry[1]
        try:
            yield dialect.of(db).reader(entry[1])
        except BaseException as exc:
            if fault_sentence(exc) is not None:  # the others are likely dead too (a server restarted)
                with self._lock:
                    dead, self._idle = [entry, *self._idle], []
                for each in dead:
                    _close(each)
                entry = None
            raise
        finally:
            if entry is not None:
                self._give_back(entry)

    def close(self) -> None:
        """Close the idle connections now and the busy ones as they are given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for entry in idle:
            _close(entry)

    def _open(self) -> tuple[object, object]:
        db = database.obj
        return db, db._connect()  # what peewee opens for a thread, with the same settings

    def _give_back(self, entry: tuple[object, object]) -> None:
        with self._lock:
            keep = not self._closed and entry[0] is database.obj
            if keep and len(self._idle) >= self._keep:
                if entry[1] is self._order_connection:  # kept before the others
                    self._idle.append(entry)
                    entry = self._idle.pop(0)
                keep = False
            elif keep:
                self._idle.append(entry)
        if not keep:
            _close(entry)


def _close(entry: tuple[object, object]) -> None:
    with contextlib.suppress(Exception):
        entry[1].close()
