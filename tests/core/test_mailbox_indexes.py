"""The grid's sort orders come from indexes on both backends (schema step 10): every statement that
reads a sort order, and on PostgreSQL every sort's first screen (``MailboxPages.server_head``), is
planned as a walk of an index in display order, never as a sort of the mailbox table. At a million
mailboxes such a sort costs seconds where the walk costs milliseconds (bench/README.md, grid.py).

The plans are asked for with sorting priced out (PostgreSQL's ``enable_sort`` and
``enable_incremental_sort`` off), so the answer does not depend on how many rows the test's table
holds: the planner sorts anyway only when no index yields the order."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from mbxtui.core.permissions import Actor
from mbxtui.core.services import mailbox_views, users
from mbxtui.core.services.mailbox_pages import GridQuery, MailboxPages, reader
from tests.backends import ON_POSTGRES

SORTS = list(mailbox_views.SORT_COLUMNS)


class RecordingConnection:
    """Runs statements on ``conn`` and remembers each, to ask for its plan afterwards."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[tuple[str, list[Any]]] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.statements.append((sql, list(params)))
        return self.conn.execute(sql, params)


@pytest.fixture
def conn(admin: Actor) -> Iterator[Any]:
    for number in range(3):
        users.add_user(admin, f"Person {number}", f"person{number}@corp.test")
    connection = reader()
    if ON_POSTGRES:
        connection.execute("BEGIN")
        connection.execute("SET LOCAL enable_sort = off")
        connection.execute("SET LOCAL enable_incremental_sort = off")
    yield connection
    if ON_POSTGRES:
        connection.execute("ROLLBACK")


def postgres_plan(conn: Any, sql: str, params: list[Any]) -> dict[str, Any]:
    plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchall()[0][0]
    return (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]


def sorts_of_mailboxes(node: dict[str, Any]) -> list[str]:
    """The Sort nodes of a plan that sort rows read from the mailbox table without a bound: a sort
    of the few ids that LIMITed index walks picked (the profile sort's heads), or of rows joined to
    those ids (however the planner joins them), is allowed."""
    found = []

    def joins_head(subtree: dict[str, Any]) -> bool:
        return subtree["Node Type"] == "CTE Scan" or any(joins_head(c) for c in subtree.get("Plans", []))

    def reads_unbounded(subtree: dict[str, Any]) -> bool:
        if subtree["Node Type"] in ("Limit", "CTE Scan"):
            return False
        if subtree.get("Relation Name") == "mailbox":
            looked_up = subtree.get("Index Name") == "mailbox_pkey" and "Index Cond" in subtree
            if not looked_up:
                return True
        return any(reads_unbounded(child) for child in subtree.get("Plans", []))

    def walk(subtree: dict[str, Any]) -> None:
        if "Sort" in subtree["Node Type"] and reads_unbounded(subtree) and not joins_head(subtree):
            found.append(f"{subtree['Node Type']} by {', '.join(subtree.get('Sort Key', []))}")
        for child in subtree.get("Plans", []):
            walk(child)

    walk(node)
    return found


def sqlite_sorts(conn: Any, sql: str, params: list[Any]) -> list[str]:
    return [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params) if "TEMP B-TREE" in row[-1]]


@pytest.mark.parametrize("sort", SORTS)
def test_every_sort_order_is_read_from_an_index(admin: Actor, conn: Any, sort: str):
    recording = RecordingConnection(conn)
    order = MailboxPages(admin)._read_order(recording, sort)
    assert sorted(order) == sorted(row[0] for row in conn.execute("SELECT id FROM mailbox"))
    assert recording.statements
    for sql, params in recording.statements:
        if sql.startswith("SELECT id FROM profile"):
            continue  # the profiles in order of name, a handful of rows
        if ON_POSTGRES:
            assert sorts_of_mailboxes(postgres_plan(conn, sql, params)) == [], (sort, sql)
        else:
            assert sqlite_sorts(conn, sql, params) == [], (sort, sql)


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's first screen is a LIMIT query of its own")
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort", SORTS)
def test_each_sorts_first_screen_walks_an_index_on_postgresql(admin: Actor, conn: Any, sort: str,
                                                               descending: bool):
    pages = MailboxPages(admin)
    for view in ("all", "active"):
        sql, params = pages.server_head(GridQuery(view=view, sort=sort, descending=descending))
        assert sorts_of_mailboxes(postgres_plan(conn, sql, params)) == [], (view, sort, descending)
        shown = [row[0] for row in conn.execute(sql, params).fetchall()]
        assert shown == mailbox_views.ids_in_view(admin, view=view, sort=sort, descending=descending)
