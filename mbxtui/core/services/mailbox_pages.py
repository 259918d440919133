"""Fast reads for the console's mailbox grid, which pages through views of up to millions of mailboxes.

The grid needs two things: every mailbox id of a view in display order, built once per query, and
the cells of the few rows on screen, fetched by id a page at a time. Both read through the plain
driver connection, sqlite3's or ``dialect.reader``'s over PostgreSQL's (peewee's row wrapping costs
five times as much at this size).

The obvious query, the view's WHERE with ORDER BY, makes SQLite pick the index of the view's
condition (``active = 1`` matches nearly every row) and then look up a million table rows and sort
them: seconds. Instead, the order comes from scanning the sort column's index, which holds
(value, id) and so never touches the table; that order is cached until the database changes. The
view and the filter become sets of ids read from indexes alone (the full-text index for the
filter), and the order is kept to the ids in those sets. When the sets are small, SQLite sorts
just those rows, with the view's own condition from ``mailbox_views.view_condition`` re-checked.
``VIEW_IDS`` restates the views of R20 for indexes; the tests hold it to ``mailbox_views.ids_in_view``.

Reading a whole order into Python still costs a few hundred milliseconds at a million mailboxes,
so a large view is read in two steps: its first ``HEAD`` ids at once, by walking the index only
as far as needed, and the rest afterwards (the console does both on a worker thread).

A filter is answered the same way. Its first matches come from walking the sort column's index
in display order and testing each batch of ids with the filter's own SQL: milliseconds when
matches are common, where reading every match first costs seconds (one or two characters are
too short for the trigram index: a scan of the whole table, 0.4-0.7 s at a million; "org" is in
every address). The whole list, and so the count, comes with the rest. The walk has a time
budget (``WALK_SECONDS``): when it finds less than a screenful, a filter of three characters or
more goes through its index instead (a rare match is found fast there), and a shorter one shows
what was found and leaves the rest to the full read.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import sqlite3
from array import array
from dataclasses import dataclass, field
from typing import Callable, Generator, Iterable, Iterator, NamedTuple, Sequence

from mbxtui.core import dialect, validation
from mbxtui.core.enums import View
from mbxtui.core.idset import IdSet
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services.mailbox_readers import Readers
from mbxtui.core.services.mailbox_views import (
    approval_heads, filter_condition, order_by, stale_ids, view_condition, where_for,
)
from mbxtui.core.sql_lists import chunks, in_list_chunks, placeholders
from mbxtui.core.walks import first_matches

# The ids a view takes, read from one index (None: every mailbox), and whether the view leaves
# inactive mailboxes out. Mirrors mailbox_views.view_condition.
VIEW_IDS: dict[View, tuple[str | None, bool]] = {
    View.ALL: (None, False),
    View.ACTIVE: (None, True),
    View.MINE: ("SELECT id FROM mailbox WHERE owner_id = ?", True),
    View.FORWARD: ("SELECT id FROM mailbox WHERE is_forward = 1", True),
    View.PENDING: ("", True),  # dialect.pending_ids(): PostgreSQL keeps it in a table of its own (step 19)
    View.FAILED: ("SELECT id FROM mailbox WHERE overall_status = 'failure'", True),
    View.DISABLED: (
        "SELECT id FROM mailbox WHERE incoming_enabled = 0 AND outgoing_enabled = 0 AND act_enabled = 0", False),
    View.STALE: ("", True),  # stale_ids(): its SQL names the moment it is read
}
INACTIVE_IDS = "SELECT id FROM mailbox WHERE active = 0"

# Below these sizes SQLite sorts the matching rows itself, which beats walking the whole order;
# the bar is higher when the whole order would first have to be read.
SMALL_RESULT_WITH_ORDER = 50_000
SMALL_RESULT_WITHOUT_ORDER = 200_000
HEAD = 1000  # ids read at once when the rest of a large view is read in the background
WALK_BATCH = 500  # ids tested against the filter per statement while walking the order
# How long the walk for a filter's first matches may take: a filter the trigram index can serve
# gives up sooner, as a rare match is found faster through the index.
WALK_SECONDS = 0.05
WALK_SECONDS_INDEXED = 0.015
FIRST_SCREEN = 100  # matches that fill a screen: with these the walk's head is shown

GRID_COLUMNS = (
    "m.id, m.name, m.email, m.regarding, p.name, m.incoming_method, m.outgoing_method, m.act_method, "
    "m.approval, m.incoming_status, m.outgoing_status, m.act_status, m.overall_status, "
    "m.incoming_enabled, m.outgoing_enabled, m.act_enabled, m.test_scheduled, m.test_completed_on, m.active, "
    "s.state, s.last_incoming_success, p.type"
)
# The rows' own joins: their profile's name and their sync status (R31), one primary-key lookup each, for
# the rows of a page only (never for an order or a filter).
GRID_JOINS = "LEFT JOIN profile p ON p.id = m.profile_id LEFT JOIN sync_status s ON s.mailbox_id = m.id"


class GridRow(NamedTuple):
    """One mailbox as the grid shows it."""

    id: int
    name: str
    email: str
    regarding: str
    profile: str | None
    incoming_method: str
    outgoing_method: str
    act_method: str
    approval: str
    incoming_status: str
    outgoing_status: str
    act_status: str
    overall_status: str
    incoming_enabled: int
    outgoing_enabled: int
    act_enabled: int
    test_scheduled: int
    test_completed_on: str | None
    active: int
    sync_state: str | None = None  # None: processing has never claimed it
    last_sync: str | None = None  # its last successful incoming sync
    profile_type: str | None = None  # with incoming_method, whether its mail is read (not over Exchange)


@dataclass(frozen=True)
class GridQuery:
    """What the grid shows: a view of R20, a substring filter on name and address, a sort."""

    view: str = View.ACTIVE.value
    filter_text: str = ""
    sort: str = "name"
    descending: bool = False


def _ids(conn: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> array:
    # Rows are 1-tuples: chaining them flattens the cursor into the array without a Python loop.
    return array("q", itertools.chain.from_iterable(conn.execute(sql, params)))


def check_query(query: GridQuery, actor: Actor) -> None:
    """Raise ``InvalidInput`` for an unknown view or sort or a bad filter, without reading."""
    view_condition(query.view, actor)
    order_by(query.sort, query.descending)
    filter_condition(query.filter_text)


@dataclass
class OrderedIds:
    """A view's ids in display order, read in one or two steps. ``head`` holds the first ids (all
    of them when ``read_rest`` is None) and ``total`` is how many there are, or None until the
    rest is read (a filter's first matches). ``read_rest(conn)`` reads the whole list: a few
    hundred milliseconds at a million mailboxes, which the console spends on a worker thread
    while it already shows the head."""

    total: int | None
    head: array
    read_rest: Callable[[sqlite3.Connection], array] | None = None
    rows: dict[int, GridRow] = field(default_factory=dict)  # rows of the head, when read with it
    newest_id: int | None = None  # the largest mailbox id, when read with the head

    def whole(self, conn: sqlite3.Connection) -> array:
        """Every id: the head when that is all, else the rest read on ``conn``."""
        return self.head if self.read_rest is None else self.read_rest(conn)


class MailboxPages:
    """Reads for one grid, on the connection given (from ``readers``), else on the calling thread's."""

    def __init__(self, actor: Actor):
        require(actor, Permission.READ)
        self.actor = actor
        self.readers = Readers()  # connections for reads on worker threads (opened when first used)
        self._orders: dict[str, tuple[tuple[int, int, int], array]] = {}
        self._kept: dict[str, tuple[array, array, set[int]]] = {}  # see _kept_order

    # --- the ordered ids of a view ---------------------------------------------------------------

    def ordered_ids(self, query: GridQuery) -> array:
        """Every mailbox id of the view and filter, in display order."""
        return self.start_ordered_ids(query).whole(reader())

    def start_ordered_ids(self, query: GridQuery, conn: sqlite3.Connection | None = None) -> OrderedIds:
        """The ids of the view and filter in display order: all of them when that is quick, else
        the first ``HEAD`` (or a filter's first matches) and how to read
        the rest. Reads on ``conn`` (the thread's own connection by default)."""
        require(self.actor, Permission.READ)
        check_query(query, self.actor)
        conn = conn if conn is not None else reader()
        text = (query.filter_text or "").strip()
        if dialect.current().name == "postgresql":
            return self._start_on_server(conn, query, text)
        if text:
            indexed = dialect.current().substring_ids(text) is not None and len(text) >= 3
            head, exhausted = self._walk_matches(conn, query, text, WALK_SECONDS_INDEXED if indexed else WALK_SECONDS)
            if exhausted:
                return OrderedIds(len(head), head)
            if len(head) >= FIRST_SCREEN or not indexed:
                whole = GridQuery(query.view, text, query.sort, query.descending)
                return OrderedIds(None, head, self._rest_of(whole))
            # A rare match: its index finds all of them sooner than the walk finds a screenful.
        return self._start_indexed(conn, query)

    def _rest_of(self, query: GridQuery) -> Callable[[sqlite3.Connection], array]:
        """``read_rest`` for a head found by a walk or a LIMIT query: the whole list, from the indexes."""
        backend = dialect.current()

        def read_rest(conn: sqlite3.Connection) -> array:
            reader_ = backend.reader(conn)
            return self._start_indexed(reader_, query, walk=False).whole(reader_)

        return read_rest

    def _start_on_server(self, conn: sqlite3.Connection, query: GridQuery, text: str) -> OrderedIds:
        """PostgreSQL sends a query's whole result at once, so walking an index from the client
        would read all of it: the head is a query of its own, ``LIMIT HEAD``, which the planner
        answers by walking the sort column's index while that pays. A filter's head is given
        ``WALK_SECONDS`` (a rare short match means a scan of the table): past that it is left to
        the rest, as on SQLite."""
        head_sql, params = self.server_head(query)
        limit = f"SET LOCAL statement_timeout = {round(WALK_SECONDS * 1000)}; " if text else ""
        from psycopg2.errors import QueryCanceled

        try:
            found = conn.execute(limit + head_sql, params).fetchall()
        except QueryCanceled:
            found = None
        rows = {row[0]: GridRow._make(row[:-1]) for row in found[:HEAD]} if found else {}
        head = array("q", rows)
        newest = found[0][-1] if found else None
        if found is not None and len(found) <= HEAD:
            return OrderedIds(len(head), head, rows=rows)
        whole = GridQuery(query.view, text, query.sort, query.descending)
        return OrderedIds(None, head, self._rest_of(whole), rows=rows, newest_id=newest)

    def server_head(self, query: GridQuery) -> tuple[str, list[object]]:
        """PostgreSQL's query of the first ``HEAD`` + 1 rows of the view and filter in display
        order, with the newest id in each row (the head's rows and the newest id come in one round
        trip: the server may be far), and its parameters. Every sort column has an index in
        (column, id) order (schema step 10; the approval's is in the narrow table of the mailboxes
        not approved, step 19), which the planner walks for this LIMIT."""
        text = (query.filter_text or "").strip()
        where, params = where_for(self.actor, query.view, text or None)
        ordering = order_by(query.sort, query.descending)
        sort = (query.sort or "name").strip().lower()
        if sort == "profile":
            # The order is the profile's name, so no index of the mailbox table holds it: the
            # first ids of each profile (and of no profile) by the (profile_id, id) index, at most
            # HEAD + 1 each, then the first of those few by the profile's name, and only their rows.
            direction = "DESC" if query.descending else "ASC"
            heads = (f"(SELECT CAST(NULL AS VARCHAR(255)) AS profile_name, m.id FROM mailbox m "
                     f"WHERE m.profile_id IS NULL AND {where} ORDER BY m.id {direction} LIMIT {HEAD + 1}) UNION ALL "
                     f"(SELECT g.name, h.id FROM profile g CROSS JOIN LATERAL (SELECT m.id FROM mailbox m "
                     f"WHERE m.profile_id = g.id AND {where} ORDER BY m.id {direction} LIMIT {HEAD + 1}) h)")
            first = ordering.replace("p.name", "u.profile_name").replace("m.id", "u.id")
            # MATERIALIZED: the heads are read once, never again for each row joined to them.
            return (f"WITH head AS MATERIALIZED (SELECT u.id FROM ({heads}) u ORDER BY {first} LIMIT {HEAD + 1}) "
                    f"SELECT {GRID_COLUMNS}, (SELECT max(id) FROM mailbox) FROM head JOIN mailbox m ON m.id = head.id "
                    f"{GRID_JOINS} ORDER BY {ordering}"), [*params, *params]
        if sort == "approval":  # no index of the mailbox table holds it (schema step 19)
            heads, heads_params = approval_heads(query.view, where, params, HEAD + 1, query.descending)
            return (f"WITH head AS MATERIALIZED ({heads}) "
                    f"SELECT {GRID_COLUMNS}, (SELECT max(id) FROM mailbox) FROM head JOIN mailbox m ON m.id = head.id "
                    f"{GRID_JOINS} ORDER BY {ordering} LIMIT {HEAD + 1}"), heads_params
        return (f"SELECT {GRID_COLUMNS}, (SELECT max(id) FROM mailbox) FROM mailbox m "
                f"{GRID_JOINS} WHERE {where} ORDER BY {ordering} LIMIT {HEAD + 1}"), params

    def _walk_matches(self, conn: sqlite3.Connection, query: GridQuery, text: str,
                      seconds: float) -> tuple[array, bool]:
        """The first ``HEAD`` ids of the view and filter in display order, found by walking the
        sort order and testing ``WALK_BATCH`` ids per statement with the view's and the filter's
        own SQL; also whether the walk reached the end of the order. It stops early, with what it
        found, once ``seconds`` have passed."""
        view_sql, view_params = view_condition(query.view, self.actor)
        filter_sql, filter_params = filter_condition(text)
        if dialect.current().name == "sqlite" and text.isascii():
            # The trigram index, asked about 500 rows, reads the whole list of the text's matches
            # (0.7 s for "org" at a million): LIKE tests the rows themselves (2 ms). For ASCII text
            # the two agree, except for a letter the index folds to ASCII (the Kelvin sign as "k"):
            # such a row may be missing from the head, never from the whole list read after it.
            pattern = dialect.like_pattern(text)
            filter_sql, filter_params = "(m.name LIKE ? ESCAPE '\\' OR m.email LIKE ? ESCAPE '\\')", [pattern, pattern]
        sort = (query.sort or "name").strip().lower()

        def matching(batch: list[int]) -> list[int]:
            marks = placeholders(batch)
            matched = set(itertools.chain.from_iterable(conn.execute(
                f"SELECT m.id FROM mailbox m WHERE m.id IN ({marks}) AND ({view_sql}) AND ({filter_sql})",
                [*batch, *view_params, *filter_params])))
            return [mailbox_id for mailbox_id in batch if mailbox_id in matched]

        with contextlib.closing(self._walk_order(conn, sort, query.descending)) as walk:
            batches = chunks(walk, WALK_BATCH)
            walked = first_matches(batches, matching, HEAD, seconds=seconds)
        return array("q", walked.found), walked.exhausted

    def _start_indexed(self, conn: sqlite3.Connection, query: GridQuery, walk: bool = True) -> OrderedIds:
        """The ids from the view's and the filter's indexes, kept in the order of the sort
        column's index (``walk``: the first ``HEAD`` by walking it, when the whole order is not
        cached)."""
        view = validation.choice("view", query.view, View)
        view_sql, view_params = view_condition(view, self.actor)
        ordering = order_by(query.sort, query.descending)
        sort = (query.sort or "name").strip().lower()

        include_sql, active_only = VIEW_IDS[view]
        include_params = self._view_params(view)
        if view == View.STALE:
            include_sql, include_params = stale_ids()
        elif view == View.PENDING:
            include_sql, active_only = dialect.current().pending_ids()
        candidates = None if include_sql is None else _ids(conn, include_sql, include_params)
        matches = self._filter_ids(conn, query.filter_text)
        if matches is not None:
            candidates = matches if candidates is None else _intersection(candidates, matches)

        cached = self._cached_order(conn, sort)
        small = SMALL_RESULT_WITH_ORDER if cached is not None else SMALL_RESULT_WITHOUT_ORDER
        if candidates is not None and len(candidates) <= small:
            ids = self._sorted_by_sqlite(conn, candidates, view_sql, view_params, ordering)
            return OrderedIds(len(ids), ids)

        inactive = set(_ids(conn, INACTIVE_IDS)) if active_only else set()
        if candidates is not None:
            wanted = IdSet(candidates)
            wanted.difference_update(inactive)
            total = len(wanted)
            keep = wanted.keep
        else:
            def keep(order: Iterable[int]) -> Iterator[int]:
                return itertools.filterfalse(inactive.__contains__, order) if inactive else iter(order)

        def in_display_order(order: array) -> array:
            ids = array("q", keep(order)) if candidates is not None else self._kept_order(sort, order, inactive)[:]
            if query.descending:
                ids.reverse()  # ORDER BY x DESC, id DESC is exactly the ascending order reversed
            return ids

        if cached is not None:
            ids = in_display_order(cached)
            return OrderedIds(len(ids), ids)
        if candidates is None:  # counted only here: the cached order needs no count (9-50 ms)
            total = conn.execute("SELECT count(*) FROM mailbox").fetchone()[0] - len(inactive)
        fingerprint = self._fingerprint(conn)
        backend = dialect.current()

        def read_rest(reader: sqlite3.Connection) -> array:
            order = self._read_order(backend.reader(reader), sort)
            self._orders = {sort: (fingerprint, order)}
            return in_display_order(order)

        if not walk:
            return OrderedIds(total, array("q"), read_rest)
        with contextlib.closing(self._walk_order(conn, sort, query.descending)) as walk:
            head = array("q", itertools.islice(keep(walk), HEAD))
        if len(head) < HEAD:
            return OrderedIds(len(head), head)
        return OrderedIds(total, head, read_rest)

    def _kept_order(self, sort: str, cached: array, inactive: set[int]) -> array:
        """``cached`` without the ``inactive`` ids, kept beside it: a view of every mailbox sorted
        again (reversed, say) is then a copy in C, not a pass of Python over a million ids
        (110-240 ms on the worker under load)."""
        found = self._kept.get(sort)
        if found is None or found[0] is not cached or found[2] != inactive:
            kept = array("q", itertools.filterfalse(inactive.__contains__, cached)) if inactive else cached
            found = (cached, kept, inactive)
            self._kept = {sort: found}
        return found[1]

    def newest_id(self, conn: sqlite3.Connection | None = None) -> int:
        """The largest mailbox id now (mailboxes created later have larger ones)."""
        conn = conn if conn is not None else reader()
        return conn.execute("SELECT max(id) FROM mailbox").fetchone()[0] or 0

    def forget_orders(self) -> None:
        """Drop the cached sort orders (they are also dropped when the database changes)."""
        self._orders.clear()

    def _view_params(self, view: View) -> list[object]:
        if view == View.MINE:
            return [self.actor.user_id if self.actor.user_id is not None else -1]
        return []

    def _filter_ids(self, conn: sqlite3.Connection, filter_text: str | None) -> array | None:
        text = (filter_text or "").strip()
        if not text:
            return None
        filter_sql, filter_params = filter_condition(text)  # also validates the text
        from_index = dialect.current().substring_ids(text)
        if from_index is not None:
            # The same match, read straight from the trigram index instead of row by row.
            return _ids(conn, *from_index)
        # Too short for the trigram index: one pass over the table (cheaper than one per index).
        return _ids(conn, f"SELECT m.id FROM mailbox m WHERE {filter_sql}", filter_params)

    def _sorted_by_sqlite(self, conn: sqlite3.Connection, candidates: array, view_sql: str,
                          view_params: list[object], ordering: str) -> array:
        if not candidates:
            return array("q")
        sql = (f"SELECT m.id FROM {dialect.current().id_list_join()} "
               f"LEFT JOIN profile p ON p.id = m.profile_id WHERE {view_sql} ORDER BY {ordering}")
        return _ids(conn, sql, [json.dumps(candidates.tolist()), *view_params])

    # --- whole sort orders, from the indexes ---------------------------------------------------

    def _fingerprint(self, conn: sqlite3.Connection) -> object:
        return dialect.current().fingerprint(conn)

    def _cached_order(self, conn: sqlite3.Connection, sort: str) -> array | None:
        entry = self._orders.get(sort)
        if entry is not None and entry[0] == self._fingerprint(conn):
            return entry[1]
        return None

    def _read_order(self, conn: sqlite3.Connection, sort: str) -> array:
        """Every mailbox id in ascending order of ``sort`` (ties by id)."""
        if sort == "profile":
            return self._order_by_profile(conn)
        if sort == "enabled" and dialect.current().name == "sqlite":
            return self._order_by_enabled(conn)  # PostgreSQL's index holds the sum itself
        if sort == "approval":
            order = dialect.current().approval_order(conn)
            if order is not None:
                return array("q", order)
        return _ids(conn, f"SELECT m.id FROM mailbox m ORDER BY {order_by(sort, False)}")

    def _walk_order(self, conn: sqlite3.Connection, sort: str, descending: bool) -> Generator[int, None, None]:
        """Mailbox ids in display order, read lazily from the sort column's index."""
        if sort == "enabled":
            yield from self._walk_enabled(conn, descending)
            return
        if sort == "profile":
            groups = [None, *(row[0] for row in conn.execute("SELECT id FROM profile ORDER BY name, id"))]
            if descending:
                groups.reverse()
            direction = "DESC" if descending else "ASC"
            statements = [(f"SELECT id FROM mailbox WHERE profile_id IS NULL ORDER BY id {direction}", [])
                          if group is None else
                          (f"SELECT id FROM mailbox WHERE profile_id = ? ORDER BY id {direction}", [group])
                          for group in groups]
        else:
            statements = [(f"SELECT m.id FROM mailbox m ORDER BY {order_by(sort, descending)}", [])]
        for sql, params in statements:
            cursor = conn.execute(sql, params)
            try:
                yield from itertools.chain.from_iterable(cursor)
            finally:
                cursor.close()

    @staticmethod
    def _walk_enabled(conn: sqlite3.Connection, descending: bool) -> Generator[int, None, None]:
        direction = "DESC" if descending else "ASC"
        combinations = sorted(itertools.product((0, 1), repeat=3), key=sum, reverse=descending)
        for total, group in itertools.groupby(combinations, key=sum):
            cursors = [conn.execute(f"SELECT id FROM mailbox WHERE incoming_enabled = ? AND outgoing_enabled = ? "
                                    f"AND act_enabled = ? ORDER BY id {direction}", combination)
                       for combination in group]
            try:
                yield from heapq.merge(*(itertools.chain.from_iterable(c) for c in cursors), reverse=descending)
            finally:
                for cursor in cursors:
                    cursor.close()

    @staticmethod
    def _order_by_profile(conn: sqlite3.Connection) -> array:
        # The profile index holds (profile_id, id): one range per profile, in order of profile name,
        # mailboxes without a profile first (as NULL sorts first in SQL).
        order = _ids(conn, "SELECT id FROM mailbox WHERE profile_id IS NULL ORDER BY id")
        for (profile_id,) in conn.execute("SELECT id FROM profile ORDER BY name, id"):
            order.extend(_ids(conn, "SELECT id FROM mailbox WHERE profile_id = ? ORDER BY id", [profile_id]))
        return order

    @staticmethod
    def _order_by_enabled(conn: sqlite3.Connection) -> array:
        # The enabled index holds (incoming, outgoing, act, id), each flag 0 or 1; the sort key is
        # their sum. Each combination is one id-ordered run; sorting the runs of one sum merges them.
        runs: dict[int, array] = {}
        for combination in itertools.product((0, 1), repeat=3):
            run = _ids(conn, "SELECT id FROM mailbox WHERE incoming_enabled = ? AND outgoing_enabled = ? "
                             "AND act_enabled = ? ORDER BY id", combination)
            runs.setdefault(sum(combination), array("q")).extend(run)
        order = array("q")
        for total in sorted(runs):
            order.extend(sorted(runs[total]))
        return order

    # --- rows ----------------------------------------------------------------------------------

    def rows(self, ids: Iterable[int], conn: sqlite3.Connection | None = None) -> dict[int, GridRow]:
        """The grid's cells for these mailboxes, by id (ids that no longer exist are left out)."""
        require(self.actor, Permission.READ)
        wanted = list(ids)
        conn = conn if conn is not None else reader()
        found: dict[int, GridRow] = {}
        with _undecodable_as_surrogates(conn):
            for marks, chunk in in_list_chunks(wanted):
                for row in conn.execute(
                        f"SELECT {GRID_COLUMNS} FROM mailbox m {GRID_JOINS} WHERE m.id IN ({marks})", chunk):
                    found[row[0]] = GridRow._make(row)
        return found


@contextlib.contextmanager
def _undecodable_as_surrogates(conn: object) -> Generator[None, None, None]:
    """SQLite stores whatever bytes it is given (a file written by another program, say): text
    that is not UTF-8 is read as lone surrogates, which ``display.safe`` shows escaped, instead of
    failing the whole page. (PostgreSQL refuses such text on the way in.)"""
    if not isinstance(conn, sqlite3.Connection):
        yield
        return
    before = conn.text_factory
    conn.text_factory = _decode_text
    try:
        yield
    finally:
        conn.text_factory = before


def _decode_text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def reader(db=None):  # noqa: ANN001, ANN201  (a peewee database; sqlite3's or dialect.reader's connection)
    """The current thread's plain driver connection to ``db`` (the bound database by default)."""
    db = db if db is not None else database.obj
    return dialect.of(db).reader(db.connection())


def _intersection(first: array, second: array) -> array:
    small, large = (first, second) if len(first) <= len(second) else (second, first)
    keep = set(small)
    return array("q", filter(keep.__contains__, large))
