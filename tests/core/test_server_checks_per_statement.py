"""Schema step 20 (PostgreSQL): the server's checks that ran for every row, whether the acting role
may approve and whether an audit record's entry exists, cost a row no function call: the approval
triggers' condition is written out with built-in calls, and audit_record's foreign key became a
statement trigger that checks and locks each statement's entries, with a delete trigger on
audit_entry doing what the key's ON DELETE CASCADE did. What they allow and refuse stays the same
(tests/core/test_postgres_roles.py holds the refusals of each role)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from mbxtui.core import db
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor
from mbxtui.core.services import bulk, imports
from mbxtui.core.services.selection import Selection
from tests.backends import ON_POSTGRES, Databases, query
from tests.core.test_postgres_storage import insert_person_in_sql, opened_at_step
from tests.lab.postgres import TEST_LOGIN

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's triggers; SQLite keeps its foreign key")


@pytest.fixture
def url(databases: Databases, tmp_path: Path) -> Iterator[str]:
    location = str(databases.new(tmp_path, "checks"))
    db.open_database(location)
    database.close()
    yield location
    databases.drop(location)


def connect(url: str, login: str = TEST_LOGIN):
    connection = psycopg2.connect(url.replace(f"//{TEST_LOGIN}@", f"//{login}@", 1))
    connection.autocommit = True
    return connection


def new_entry(cursor) -> int:
    cursor.execute("INSERT INTO audit_entry (at, login, action, record_kind, record_count, summary) "
                   "VALUES (now(), 'alice', 'test', 'mailbox', 2, '') RETURNING id")
    return cursor.fetchone()[0]


def test_a_database_at_step_19_loses_the_per_row_checks_and_keeps_its_audit(
        databases: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = str(databases.new(tmp_path / "v19"))
    with opened_at_step(url, 19, monkeypatch):
        insert_person_in_sql("Ann", "ann@corp.test")
        entry = database.execute_sql(
            "INSERT INTO audit_entry (at, login, action, record_kind, record_count, summary) "
            "VALUES (now(), 'alice', 'user.add', 'user', 1, 'added Ann') RETURNING id").fetchone()[0]
        database.execute_sql("INSERT INTO audit_record (entry_id, record_kind, record_id) VALUES (%s, 'user', 1)",
                             [entry])
    db.open_database(url)
    database.close()
    try:
        assert query(url, "SELECT conname FROM pg_constraint WHERE conrelid = 'audit_record'::regclass "
                          "AND contype = 'f'") == []
        assert query(url, "SELECT count(*) FROM pg_proc WHERE proname = 'mbxtui_is_approver'") == [[0]]
        triggers = {row[0]: row[1] for row in query(
            url, "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal")}
        for name in ("mailbox_approval_insert", "mailbox_approval_update"):
            assert "pg_has_role(CURRENT_USER, 'mbxtui_global_admin'" in triggers[name]
        assert {"audit_record_entry", "audit_entry_removed", "audit_record_owner"} <= set(triggers)
        assert query(url, "SELECT entry_id, record_kind FROM audit_record") == [[entry, "user"]]
    finally:
        databases.drop(url)


def test_a_record_naming_no_entry_is_refused_even_from_the_owner(url: str):
    connection = connect(url)
    try:
        with connection.cursor() as cursor:
            entry = new_entry(cursor)
            with pytest.raises(psycopg2.errors.ForeignKeyViolation,
                               match="an audit record names an audit entry that does not exist"):
                cursor.execute("INSERT INTO audit_record (entry_id, record_kind, record_id) "
                               "VALUES (%s, 'mailbox', 1), (%s, 'mailbox', 2)", (entry, entry + 1000))
            cursor.execute("INSERT INTO audit_record (entry_id, record_kind, record_id) "
                           "VALUES (%s, 'mailbox', 1), (%s, 'mailbox', 2)", (entry, entry))
            cursor.execute("SELECT count(*) FROM audit_record WHERE entry_id = %s", (entry,))
            assert cursor.fetchone()[0] == 2
    finally:
        connection.close()


def test_deleting_an_entry_deletes_its_records_and_no_other(url: str):
    connection = connect(url)
    try:
        with connection.cursor() as cursor:
            kept, deleted = new_entry(cursor), new_entry(cursor)
            cursor.execute("INSERT INTO audit_record (entry_id, record_kind, record_id) "
                           "VALUES (%s, 'mailbox', 1), (%s, 'mailbox', 1), (%s, 'mailbox', 2)",
                           (kept, deleted, deleted))
            cursor.execute("DELETE FROM audit_entry WHERE id = %s", (deleted,))
            cursor.execute("SELECT entry_id, record_id FROM audit_record ORDER BY id")
            assert cursor.fetchall() == [(kept, 1)]
    finally:
        connection.close()


def test_an_entry_cannot_be_deleted_under_records_being_written(url: str):
    """The records' statement locks their entry as the foreign key's check did: a delete of it waits
    for the records' transaction, and then takes them with it."""
    writer, deleter = connect(url), connect(url)
    try:
        with writer.cursor() as cursor:
            entry = new_entry(cursor)
        writer.autocommit = False
        with writer.cursor() as cursor:
            cursor.execute("INSERT INTO audit_record (entry_id, record_kind, record_id) VALUES (%s, 'mailbox', 1)",
                           (entry,))
        deleted = threading.Event()

        def delete() -> None:
            with deleter.cursor() as cursor:
                cursor.execute("SET lock_timeout = '20s'")
                cursor.execute("DELETE FROM audit_entry WHERE id = %s", (entry,))
            deleted.set()

        thread = threading.Thread(target=delete)
        thread.start()
        assert not deleted.wait(1.0)  # held by the uncommitted records' lock
        writer.commit()
        thread.join(timeout=30)
        assert deleted.is_set()
        assert query(url, "SELECT count(*) FROM audit_record WHERE entry_id = ?", (entry,)) == [[0]]
    finally:
        writer.close()
        deleter.close()


def test_a_member_of_the_owner_in_no_group_may_approve(url: str, databases: Databases):
    """The approval triggers' condition checks the owner last: a role in neither group that is a
    member of the tables' owner passes it, as before."""
    login = f"owner_member_{url.rsplit('/', 1)[-1]}"
    databases.server.admin(f'CREATE ROLE "{login}" LOGIN')
    try:
        databases.server.admin(f'GRANT "{TEST_LOGIN}" TO "{login}"')
        db.open_database(url)
        try:
            insert_person_in_sql("Ann", "ann@corp.test")
        finally:
            database.close()
        connection = connect(url, login)
        try:
            with connection.cursor() as cursor:
                cursor.execute("UPDATE mailbox SET approval = 'approved', approved_by = 'x', approved_on = now()")
                assert cursor.rowcount == 1
        finally:
            connection.close()
        assert query(url, "SELECT approval FROM mailbox") == [["approved"]]
    finally:
        databases.server.admin(f'DROP OWNED BY "{login}"')
        databases.server.admin(f'DROP ROLE "{login}"')


def test_importing_and_approving_write_their_audit_records_whole(admin: Actor, default_profile, tmp_path: Path):
    csv = tmp_path / "people.csv"
    csv.write_text("name,email\n" + "".join(f"Person {n},person{n}@corp.test\n" for n in range(30)))
    imports.import_csv(admin, "users", csv)
    outcome = bulk.approve(admin, Selection.of_view("pending"))
    assert outcome.changed == 30
    counts = database.execute_sql(
        "SELECT e.action, e.record_count, count(r.id) FROM audit_entry e LEFT JOIN audit_record r ON r.entry_id = e.id "
        "WHERE e.action IN ('user.import', 'mailbox.approve') GROUP BY e.id, e.action, e.record_count "
        "ORDER BY e.id").fetchall()
    assert [tuple(row) for row in counts] == [("user.import", 30, 30), ("mailbox.approve", 30, 30)]
