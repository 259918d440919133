"""What the grid's worker threads do: read a view's ids or a page of rows, and post the answer to
the grid as a message (Toolong's log view reads its lines the same way). Nothing here touches
the widget's state: the grid's message handlers do, on the UI thread."""

from __future__ import annotations

import contextlib
import threading
from array import array
from typing import Callable, NamedTuple

from textual.message import Message

from mbxtui.core.errors import problem_sentence
from mbxtui.core.services.mailbox_pages import GridQuery, MailboxPages
from mbxtui.tui.widgets.grid_drawing import RowView, row_view
from mbxtui.tui.widgets.grid_rows import GONE, PAGE_SIZE


# The rest of a large view is read once its head is painted (or after this long at most): reading
# it holds the interpreter lock for most of a second at a million mailboxes, which would slow the
# painting of the first screen; and a keystroke typed meanwhile spares the read altogether.
REST_AFTER_SECONDS = 0.5
WARM_CONNECTIONS = 2  # kept open besides the one an order read holds


class OrderRead(Message, bubble=False):
    """A worker read the ids of query number ``generation``: the first of them (``complete``
    False: the rest follows in another OrderRead), or all; or it failed with ``error``."""

    def __init__(self, generation: int, ids: array, total: int | None, complete: bool, newest_id: int,
                 error: str | None = None, rows: dict[int, RowView] | None = None, rows_token: int = 0) -> None:
        self.generation = generation
        self.ids = ids
        self.total = total
        self.complete = complete
        self.newest_id = newest_id  # the largest id of the view when complete, else of the table
        self.error = error
        self.rows = rows or {}  # the rows around where the cursor will be, read with the ids
        self.rows_token = rows_token  # the row cache's token from before they were read
        self.painted = threading.Event()  # set by the grid once the frame showing them is painted
        self.keep_id: int | None = None  # the mailbox the worker looked for among the ids ...
        self.keep_position: int | None = None  # ... and where it found it (None: not among them)
        super().__init__()

    def position_of(self, keep_id: int | None, cursor_row: int) -> int:
        """Where the cursor goes: on ``keep_id`` when it is among the ids (where the worker found
        it, when it looked for the same mailbox: a scan of a million ids is 20-60 ms of the UI
        thread under load), else on ``cursor_row``, or the top when only the first ids are here."""
        if keep_id is None:
            return cursor_row
        if keep_id == self.keep_id:
            return self.keep_position if self.keep_position is not None else cursor_row if self.complete else 0
        try:
            return self.ids.index(keep_id)
        except ValueError:
            return cursor_row if self.complete else 0


class ReadOrder(NamedTuple):
    """What a worker reads the ids of: query number ``generation``, and the rows around
    ``keep_id`` (the mailbox under the cursor, which stays under it) or else the first rows."""

    query: GridQuery
    generation: int
    keep_id: int | None
    rows_token: int


class RowsRead(Message, bubble=False):
    """A worker read the rows of ``asked`` (None: the read failed with ``error``)."""

    def __init__(self, epoch: int, asked: list[int], rows: dict[int, RowView] | None,
                 error: str | None = None) -> None:
        self.epoch = epoch
        self.asked = asked
        self.rows = rows
        self.error = error
        super().__init__()


class Interruptible:
    """The connection of the one long read (the rest of a large view) that a newer query may stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: tuple[int, object] | None = None

    def start(self, generation: int, connection: object) -> None:
        with self._lock:
            self._running = (generation, connection)

    def end(self) -> None:
        with self._lock:
            self._running = None

    def interrupt_older_than(self, generation: int) -> None:
        """Stop the read if it answers a query older than ``generation``. PostgreSQL's cancel opens
        a connection of its own to the server and waits for it to close, so it is sent from a
        thread of its own, not the caller's (the UI thread); ``end`` waits for a cancel under way,
        so that it never reaches a later read on the same connection."""
        with self._lock:
            running = self._running
            if running is None or running[0] >= generation:
                return
        threading.Thread(target=self._interrupt, args=(running,), name="grid-interrupt", daemon=True).start()

    def _interrupt(self, running: tuple[int, object]) -> None:
        with self._lock:
            if self._running is running:
                self._running = None
                with contextlib.suppress(Exception):  # the read runs on; its answer is dropped
                    running[1].interrupt()


def read_order(source: MailboxPages, asked: ReadOrder, post: Callable[[Message], object],
               cancelled: Callable[[], bool], long_read: Interruptible) -> None:
    """On a worker thread: post the view's first ids with the rows the screen will show, then (for
    a large view) all the ids. The rows come in the same message, so the new view is drawn once,
    with its cells, instead of as placeholders first."""
    generation = asked.generation
    try:
        with source.readers.connection(for_order=True) as conn:
            _read_order(source, conn, asked, post, cancelled, long_read)
    except Exception as exc:  # the grid shows the error; a cancelled read's error is no news
        if not cancelled():
            post(OrderRead(generation, array("q"), 0, True, 0, error=problem_sentence(exc)))


def _read_order(source: MailboxPages, conn: object, asked: ReadOrder, post: Callable[[Message], object],
                cancelled: Callable[[], bool], long_read: Interruptible) -> None:
    generation = asked.generation
    ordered = source.start_ordered_ids(asked.query, conn)
    complete = ordered.read_rest is None
    if complete:
        newest = max(ordered.head) if ordered.head else 0
    elif ordered.newest_id is not None or not ordered.head:
        # No head (a rare short filter whose walk gave up): nothing can be marked before the
        # rest arrives with its own newest id, so no round trip for it (40 ms behind latency).
        newest = ordered.newest_id or 0
    else:
        newest = source.newest_id(conn)
    if cancelled():
        return
    head = ordered.head
    try:
        found = head.index(asked.keep_id) if asked.keep_id is not None else None
    except ValueError:
        found = None
    position = found or 0
    around = head[max(0, position - PAGE_SIZE // 2):position + PAGE_SIZE // 2].tolist()
    missing = [mailbox_id for mailbox_id in around if mailbox_id not in ordered.rows]
    read = {**{mailbox_id: ordered.rows[mailbox_id] for mailbox_id in around if mailbox_id in ordered.rows},
            **(source.rows(missing, conn) if missing else {})}
    rows = {mailbox_id: row_view(row) for mailbox_id, row in read.items()}
    rows.update((mailbox_id, GONE) for mailbox_id in around if mailbox_id not in rows)
    first = OrderRead(generation, head, ordered.total, complete, newest, rows=rows, rows_token=asked.rows_token)
    first.keep_id, first.keep_position = asked.keep_id, found
    post(first)
    # The next reads (a keystroke's, the pages around) find connections open: 0.1-0.4 s each to
    # open behind 20 ms of latency. Opened while the first screen is painted.
    source.readers.warm(WARM_CONNECTIONS)
    if complete:
        return
    first.painted.wait(REST_AFTER_SECONDS)
    if cancelled():
        return
    long_read.start(generation, conn)
    try:
        ids = ordered.whole(conn)
    finally:
        long_read.end()
    if not cancelled():
        post(OrderRead(generation, ids, len(ids), True, max(ids) if ids else 0))


def read_rows(source: MailboxPages, epoch: int, asked: list[int]) -> RowsRead:
    """On a worker thread: the rows of these mailboxes, ready to draw."""
    try:
        with source.readers.connection() as conn:
            rows = source.rows(asked, conn)
        return RowsRead(epoch, asked, {mailbox_id: row_view(row) for mailbox_id, row in rows.items()})
    except Exception as exc:  # the rows stay placeholders; the grid says why
        return RowsRead(epoch, asked, None, error=problem_sentence(exc))
