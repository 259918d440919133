"""Copying a whole installation (``mbxtui migrate``): from a populated SQLite file into the suite's
backend (a new SQLite file, or a PostgreSQL database of the private server), and back from
PostgreSQL into SQLite. The same services answer the same on the copy, new rows get new ids, the
keyring keeps working, and every refusal or failure leaves the target without data."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest

from mbxtui.core import db
from mbxtui.core.enums import AlertLevel
from mbxtui.core.jobs import failing_profiles
from mbxtui.core.jobs import queue as jobs
from mbxtui.core.models import Mailbox, database, utcnow
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import (
    alerts, audit, bulk, credentials, enablement, mailbox_views, mailboxes, operators, profiles, settings, users,
)
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.selection import Selection
from mbxtui.core.sync import store as sync_store
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party
from mbxtui.core.transfer import COPIED_TABLES, TransferError, copy_installation, secrets_note
from tests.backends import ON_POSTGRES, Databases, dump, execute, query, tables
from tests.core.support import EXCHANGE_ONLINE_PROFILE, IMAP_PROFILE

PEOPLE = 40
MAILBOX_PASSWORD = "pässword of ann"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretStore]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        env.delenv("MBXTUI_KEYRING", raising=False)
        env.setenv("MBXTUI_MASTER_PASSWORD", "master of the transfer keyring")
        yield SecretStore.open(tmp_path_factory.mktemp("transfer-secrets"))


def populate(location: Path | str, store: SecretStore) -> None:
    """An organisation with a row in every table: users, queues, profiles, mailboxes in every
    state, changed settings, alerts, the audit log and Test & Enable jobs."""
    opened = db.open_database(location)
    admin = operators.initialise(login="alice")
    operators.add(admin, "vic", "viewer")
    profiles.create(admin, **IMAP_PROFILE)
    profiles.create(admin, **EXCHANGE_ONLINE_PROFILE)
    settings.update(admin, default_profile="imap", retry_attempts=3)
    for number in range(PEOPLE):
        users.add_user(admin, f"Person {number:02}", f"p{number:02}@corp.test")
    users.add_queue(admin, "Support", "support@corp.test", "p00@corp.test")
    mailboxes.create_forward_mailbox(admin, name="Forward", email="fwd@corp.test", profile="imap")
    bulk.approve(admin, Selection.of_emails([f"p{n:02}@corp.test" for n in range(0, PEOPLE, 2)]))
    bulk.reject(admin, Selection.of_emails(["p01@corp.test"]))
    users.deactivate_user(admin, "p03@corp.test")
    credentials.set_mailbox_secret(admin, "p00@corp.test", MAILBOX_PASSWORD, store)
    with db.write_transaction():
        raise_alert(AlertLevel.ERROR, "AUTH_FAILED", "refused", mailbox=mailboxes.get("p02@corp.test"))
        raise_alert(AlertLevel.WARNING, "TIMEOUT", "slow", mailbox=mailboxes.get("p04@corp.test"))
    enablement.schedule(admin, Selection.of_emails(["p00@corp.test", "p02@corp.test"]))
    processed = mailboxes.get("support@corp.test")
    with db.write_transaction():
        database.execute_sql("INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, "
                             "unresolved_total) VALUES (?, 'idle', 0, 0, 0)", [processed.id])
    message = ParsedMessage(message_id="<copied@corp.test>", sender="a@outside.test", to=["support@corp.test"],
                            subject="Copied", size=120, attachments=[("a.pdf", 99)], preview="text")
    sync_store.record_batch(processed.id, "INBOX", 4_000_000_000, 3, [sync_store.Fetched(3, utcnow(), message)],
                            Party(None, processed.queue_id, "all"), None, utcnow())
    sync_store.record_pop3_batch(processed.id, "INBOX", [], ["uidl-seen-1"], Party(None, processed.queue_id, "all"),
                                 None, utcnow())
    with db.write_transaction():
        database.execute_sql("INSERT INTO owner_notice (record_kind, record_id, sent_on) VALUES ('mailbox', ?, ?)",
                             [processed.id, utcnow()])
        failing_profiles.failed(processed.id, processed.profile_id, ["incoming"], failing_profiles.PROCESSING, utcnow())
        database.execute_sql("INSERT INTO oauth_token_state (profile_id, provider, obtained_on) VALUES (?, 'generic', ?)",
                             [processed.profile_id, utcnow()])
        database.execute_sql("INSERT INTO mailbox_authorization (mailbox_id, authorized_on, authorized_by) "
                             "VALUES (?, ?, 'alice')", [processed.id, utcnow()])
    opened.close()


def change_source(path: Path, sql: str, params: tuple = ()) -> None:
    """The source is always a SQLite file, whichever backend the suite runs on."""
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)
    conn.close()


def answers(actor_login: str = "alice") -> dict[str, Any]:
    """What the services say about the bound database."""
    admin = operators.current_actor(login=actor_login)
    seen: dict[str, Any] = {
        "users": [u.as_dict() for u in users.list_users(admin)],
        "queues": [q.as_dict() for q in users.list_queues(admin)],
        "profiles": [p.as_dict() for p in profiles.list_profiles(admin)], "settings": settings.show(admin).as_dict(),
        "operators": [o.as_dict() for o in operators.list_operators(admin)], "alerts": alerts.list_alerts(admin),
        "audit": audit.list_entries(admin, limit=1000), "queued": jobs.queued_count(),
        "ann": mailboxes.show(admin, "p00@corp.test").as_dict(),
    }
    for view in ("all", "active", "pending", "forward", "disabled"):
        seen[f"view {view}"] = mailbox_views.list_mailboxes(admin, view=view, sort="name", limit=1000)
    seen["filter"] = mailbox_views.list_mailboxes(admin, view="all", filter_text="son 1", limit=1000)
    return seen


@pytest.fixture
def source(tmp_path: Path, store: SecretStore) -> Path:
    path = tmp_path / "source" / "mbxtui.db"
    path.parent.mkdir()
    populate(path, store)
    return path


@pytest.fixture
def target(databases: Databases, tmp_path: Path) -> Iterator[Path | str]:
    location = databases.new(tmp_path / "target", "transfer_target")
    yield location
    database.close()
    databases.drop(location)


def holds_data(location: Path | str) -> dict[str, int]:
    """Rows per table beyond what a new database holds (its install id and settings row); a
    SQLite file that was never created holds none."""
    if not ON_POSTGRES and not Path(location).exists():
        return {}
    present = set(tables(location))
    counts = {table: query(location, f'SELECT count(*) FROM "{table}"')[0][0]
              for table in COPIED_TABLES if table in present}
    return {table: rows for table, rows in counts.items()
            if rows > (1 if table in ("meta", "org_settings") else 0)}


def test_a_copy_answers_as_the_source_did_and_takes_new_rows(source, target, store):
    db.open_database(source)
    before = answers()
    source_install = db.install_id()
    database.close()

    summary = copy_installation(source, target, batch_size=7)  # several batches per table

    assert [table.name for table in summary.tables] == list(COPIED_TABLES)
    assert all(table.rows > 0 for table in summary.tables), summary.tables
    assert summary.install_id == source_install
    assert summary.mailbox_secrets == 1
    db.open_database(target)
    assert db.install_id() == source_install
    assert answers() == before
    admin = operators.current_actor(login="alice")
    # The keyring entry made for the source is the target's too.
    assert credentials.mailbox_secret(store, mailboxes.get("p00@corp.test").id).reveal() == MAILBOX_PASSWORD
    # New rows get ids after the copied ones (PostgreSQL's sequences were moved past them).
    largest = database.execute_sql("SELECT max(id) FROM mailbox").fetchone()[0]
    users.add_user(admin, "After Copy", "after@corp.test")
    assert mailboxes.get("after@corp.test").id > largest
    profiles.create(admin, **{**IMAP_PROFILE, "name": "third"})
    queued = jobs.queued_count()
    enablement.schedule(admin, Selection.of_emails(["after@corp.test"]))
    assert jobs.queued_count() == queued + 1


@pytest.mark.skipif(not ON_POSTGRES, reason="copies out of PostgreSQL")
def test_a_postgresql_installation_copies_back_into_sqlite(source, target, tmp_path):
    db.open_database(source)
    before = answers()
    database.close()
    copy_installation(source, target)
    back = tmp_path / "back" / "mbxtui.db"
    back.parent.mkdir()

    copy_installation(target, back)

    db.open_database(back)
    try:
        assert answers() == before
        # The full-text index was filled by the copy's inserts.
        assert [r["email"] for r in mailbox_views.list_mailboxes(
            operators.current_actor(login="alice"), view="all", filter_text="p1", limit=100).rows]
    finally:
        database.close()


def test_a_target_holding_data_is_refused_and_left_as_it_was(source, target):
    db.open_database(target)
    admin = operators.initialise(login="bob")
    users.add_user(admin, "Already Here", "here@corp.test")
    database.close()
    before = dump(target)

    with pytest.raises(TransferError, match=r"already holds data \(in user, operator, mailbox"):
        copy_installation(source, target)

    assert dump(target) == before


def test_changed_settings_count_as_data(source, target):
    db.open_database(target)
    settings.update(operators.initialise(login="bob"), retry_attempts=2)
    execute(target, "DELETE FROM operator")
    execute(target, "DELETE FROM audit_record")
    execute(target, "DELETE FROM audit_entry")
    database.close()

    with pytest.raises(TransferError, match=r"already holds data \(in org_settings\)"):
        copy_installation(source, target)


def test_a_source_that_is_not_an_installation_is_refused_and_not_created(target, tmp_path):
    missing = tmp_path / "missing.db"
    with pytest.raises(db.DatabaseError, match="does not exist"):
        copy_installation(missing, target)
    assert not missing.exists()

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    with pytest.raises(db.DatabaseError, match="is not an mbxtui database"):
        copy_installation(other, target)
    with sqlite3.connect(other) as conn:
        assert [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(db.DatabaseError, match="as an mbxtui database"):
        copy_installation(garbage, target)
    assert holds_data(target) == {}


def test_a_source_at_another_schema_version_is_refused(source, target):
    db.open_database(target).close()
    if ON_POSTGRES:
        execute(target, "UPDATE schema_version SET version = version + 1")
    else:
        execute(target, f"PRAGMA user_version = {db.LATEST_VERSION + 1}")

    with pytest.raises(db.DatabaseError, match="newer than this mbxtui understands"):
        copy_installation(source, target)


def test_a_source_with_tables_this_version_does_not_know_is_refused(source, target):
    change_source(source, "CREATE TABLE later_feature (id INTEGER PRIMARY KEY)")

    with pytest.raises(TransferError, match=r"tables this mbxtui does not know \(later_feature\)"):
        copy_installation(source, target)
    assert holds_data(target) == {}


def test_a_failure_midway_leaves_the_target_without_data(source, target):
    # SQLite keeps any text in a VARCHAR(255) column; PostgreSQL refuses it, and SQLite is made to
    # refuse it here by a trigger on the target: either way the mailbox table fails after the
    # users, queues and profiles went in.
    long_name = "x" * 300
    change_source(source, "UPDATE mailbox SET name = ? WHERE email = 'p39@corp.test'", (long_name,))
    db.open_database(target).close()
    if not ON_POSTGRES:
        execute(target, "CREATE TRIGGER refuse_long_names BEFORE INSERT ON mailbox WHEN length(new.name) > 255 "
                        "BEGIN SELECT RAISE(ABORT, 'value too long for type character varying(255)'); END")
    install_before = query(target, "SELECT value FROM meta")

    with pytest.raises(TransferError, match=r"copying mailbox .*too long.*nothing was written"):
        copy_installation(source, target, batch_size=10)

    assert holds_data(target) == {}
    assert query(target, "SELECT value FROM meta") == install_before


def test_the_same_database_is_not_both_source_and_target(source):
    with pytest.raises(TransferError, match="both the source and the target"):
        copy_installation(source, f"sqlite://{source}")


def test_the_secrets_note_names_the_keyring_entries_and_how_to_move_them(source, target):
    summary = copy_installation(source, target)
    note = secrets_note(summary)
    assert f"'{summary.install_id}/'" in note
    assert "service 'mbxtui'" in note
    assert "secrets.cfg" in note and "master password" in note
    assert "1 mailboxes" in note


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: its server enforces the operators' roles (R35)")
def test_a_copy_into_postgresql_gives_each_operator_its_database_role(source, target):
    viewer = "vic_" + str(target).rsplit("/", 1)[-1]  # roles are the cluster's: a name of this test's own
    change_source(source, "UPDATE operator SET login = ? WHERE login = 'vic'", (viewer,))
    copy_installation(source, target)
    members = query(target, "SELECT r.rolname, g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                            "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname IN (?, 'alice')", (viewer,))
    assert {tuple(row) for row in members} >= {(viewer, "mbxtui_viewer"), ("alice", "mbxtui_global_admin")}
    assert [row[1] for row in members if row[0] == viewer] == ["mbxtui_viewer"]
    execute(target, f'DROP ROLE "{viewer}"')
