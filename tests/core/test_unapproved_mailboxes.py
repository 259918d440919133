"""PostgreSQL's table of the mailboxes that are not approved (schema step 19): the approval's indexes
live there instead of in the mailbox table, so that approving changes no indexed column of a mailbox
and is a heap-only update. Triggers alone keep it; every path that adds, changes or removes a
mailbox must leave it holding exactly the mailboxes whose approval is not "approved"."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbxtui.core import db
from mbxtui.core.models import Mailbox, database
from mbxtui.core.permissions import Actor
from mbxtui.core.services import bulk, imports, mailbox_views, mailboxes, settings, users
from mbxtui.core.services.mailbox_pages import GridQuery, MailboxPages, reader
from mbxtui.core.services.selection import Selection
from tests.backends import ON_POSTGRES, Databases, query
from tests.core.test_postgres_storage import insert_person_in_sql, opened_at_step

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="the table is PostgreSQL's alone")

HELD = "SELECT mailbox_id, approval, active FROM mailbox_unapproved ORDER BY mailbox_id"
TRUTH = "SELECT id, approval, active FROM mailbox WHERE approval <> 'approved' ORDER BY id"


def held() -> list[tuple]:
    return [tuple(row) for row in database.execute_sql(HELD).fetchall()]


def truth() -> list[tuple]:
    return [tuple(row) for row in database.execute_sql(TRUTH).fetchall()]


def heap_only_updates() -> tuple[int, int]:
    """The mailbox table's updates in this transaction so far, and how many of them were heap-only."""
    return tuple(database.execute_sql(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'mailbox'").fetchone())


def test_a_database_at_step_18_gets_the_table_filled_from_its_mailboxes(
        databases: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = databases.new(tmp_path / "v18")
    with opened_at_step(url, 18, monkeypatch):
        insert_person_in_sql("Ann", "ann@corp.test")
        insert_person_in_sql("Bob", "bob@corp.test")
        database.execute_sql("UPDATE mailbox SET approval = 'approved' WHERE email = 'bob@corp.test'")
    db.open_database(url)
    try:
        assert [row[1:] for row in held()] == [("pending", 1)]
        assert held() == truth()
        assert query(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'mailbox' "
                          "AND indexname IN ('mailbox_approval', 'mailbox_approval_active')") == []
        assert query(url, "SELECT reloptions FROM pg_class WHERE relname = 'mailbox'") == [[["fillfactor=80"]]]
    finally:
        database.close()
        databases.drop(url)


def test_every_path_that_changes_a_mailbox_keeps_the_table(admin: Actor, default_profile, tmp_path: Path):
    settings.update(admin, require_approval_users=True, require_approval_queues=False)
    for number in range(4):
        users.add_user(admin, f"Person {number}", f"person{number}@corp.test")
    csv = tmp_path / "people.csv"
    csv.write_text("name,email\n" + "".join(f"Imported {n},imported{n}@corp.test\n" for n in range(5)))
    imports.import_csv(admin, "users", csv)
    users.add_queue(admin, "Help", "help@corp.test", "person0@corp.test")  # no approval needed: "empty"
    assert {row[1] for row in held()} == {"pending", "empty"}
    assert held() == truth()

    ids = {row.email: row.id for row in Mailbox.select(Mailbox.id, Mailbox.email)}
    with database.atomic():
        bulk.approve(admin, Selection.of_ids([ids["person1@corp.test"], ids["imported2@corp.test"]]))
        assert heap_only_updates() == (2, 2)  # approving wrote no index entry of the mailbox table
    assert held() == truth()
    bulk.reject(admin, Selection.of_ids([ids["person2@corp.test"], ids["person1@corp.test"]]))
    assert ("rejected" in {row[1] for row in held()}) and held() == truth()  # approved -> rejected is held again
    bulk.deactivate(admin, Selection.of_ids([ids["person3@corp.test"], ids["imported0@corp.test"]]))
    assert held() == truth() and (ids["person3@corp.test"], "pending", 0) in held()
    bulk.activate(admin, Selection.of_ids([ids["person3@corp.test"]]))
    assert (ids["person3@corp.test"], "pending", 1) in held()
    users.deactivate_user(admin, "imported1@corp.test")
    assert held() == truth()
    bulk.approve(admin, Selection.of_view("pending"))
    assert held() == truth()
    assert {row[1] for row in held() if row[2]} == {"empty", "rejected"}  # the inactive: not in the view
    mailboxes.edit(admin, "imported2@corp.test", email="renamed2@corp.test")  # a new address is pending again (R7)
    assert (ids["imported2@corp.test"], "pending", 1) in held() and held() == truth()
    database.execute_sql("DELETE FROM mailbox WHERE id IN (%s, %s)",
                         [ids["imported2@corp.test"], ids["help@corp.test"]])
    assert held() == truth()


def test_the_pending_view_and_the_approval_order_read_from_it(admin: Actor, default_profile):
    settings.update(admin, require_approval_users=True)
    for number in range(6):
        users.add_user(admin, f"Person {number}", f"person{number}@corp.test")
    ids = [row.id for row in Mailbox.select(Mailbox.id).order_by(Mailbox.id)]
    bulk.approve(admin, Selection.of_ids(ids[:2]))
    bulk.reject(admin, Selection.of_ids(ids[2:3]))
    bulk.deactivate(admin, Selection.of_ids(ids[3:4]))

    pending = mailbox_views.list_mailboxes(admin, view="pending")
    assert (pending.total, [row["id"] for row in pending.rows]) == (2, ids[4:])
    pages = MailboxPages(admin)
    assert list(pages.ordered_ids(GridQuery(view="pending"))) == ids[4:]
    expected = mailbox_views.ids_in_view(admin, view="all", sort="approval")  # a sort of the rows themselves
    assert [database.execute_sql("SELECT approval FROM mailbox WHERE id = %s", [i]).fetchone()[0] for i in expected] \
        == ["approved", "approved", "pending", "pending", "pending", "rejected"]
    assert list(pages.ordered_ids(GridQuery(view="all", sort="approval"))) == expected
    assert list(pages.ordered_ids(GridQuery(view="all", sort="approval", descending=True))) == expected[::-1]
    assert list(pages._read_order(reader(), "approval")) == expected
    for descending, order in ((False, expected), (True, expected[::-1])):
        listed = mailbox_views.list_mailboxes(admin, view="all", sort="approval", descending=descending,
                                              limit=3, offset=1)
        assert [row["id"] for row in listed.rows] == order[1:4]
    by_approval = mailbox_views.list_mailboxes(admin, view="pending", sort="approval", descending=True)
    assert [row["id"] for row in by_approval.rows] == ids[4:][::-1]


def test_a_session_s_own_table_of_that_name_cannot_stand_in_for_it(admin: Actor, default_profile):
    """Temporary tables come first in a session's search path: the triggers must write mbxtui's."""
    settings.update(admin, require_approval_users=True)
    users.add_user(admin, "Ann", "ann@corp.test")
    users.add_user(admin, "Bob", "bob@corp.test")
    database.execute_sql("CREATE TEMPORARY TABLE mailbox_unapproved (mailbox_id bigint PRIMARY KEY, "
                         "approval varchar(255), active integer)")
    try:
        # An UPDATE in SQL: approving reads the narrow table by its bare name too, which here would
        # be this session's own table (mbxtui's sessions make no such table).
        database.execute_sql("UPDATE mailbox SET approval = 'approved', approved_by = 'alice', approved_on = now() "
                             "WHERE email = 'ann@corp.test'")
        users.add_user(admin, "Cy", "cy@corp.test")
        database.execute_sql("DELETE FROM mailbox WHERE email = 'bob@corp.test'")
        assert database.execute_sql("SELECT count(*) FROM pg_temp.mailbox_unapproved").fetchone()[0] == 0
    finally:
        database.execute_sql("DROP TABLE pg_temp.mailbox_unapproved")
    assert held() == truth() and [row[1] for row in held()] == ["pending"]


def test_only_the_triggers_write_it(admin: Actor):
    rows = database.execute_sql(
        "SELECT has_table_privilege(r, 'mailbox_unapproved', 'SELECT'), "
        "has_table_privilege(r, 'mailbox_unapproved', 'INSERT, UPDATE, DELETE') "
        "FROM unnest(ARRAY['mbxtui_global_admin', 'mbxtui_service_admin', 'mbxtui_system_admin']) r").fetchall()
    assert [tuple(row) for row in rows] == [(True, False)] * 3
