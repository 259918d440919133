"""The SQLite file: pragmas, owner-only files, schema version and migrations, refusals."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from peewee import IntegrityError

from mbxtui.core import db
from mbxtui.core.migrations import LATEST_VERSION, MIGRATIONS
from mbxtui.core.models import Mailbox, User, database
from mbxtui.core.services import mailbox_views, operators, users


# These open SQLite files of their own; tests/core/test_postgres_storage.py holds the same
# checks for a PostgreSQL database.
pytestmark = pytest.mark.sqlite_only("the SQLite file: pragmas, modes, WAL and old files")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fresh(tmp_path: Path):
    path = tmp_path / "new-dir" / "mbxtui.db"
    opened = db.open_database(path)
    yield path
    opened.close()


def test_new_database_uses_wal_foreign_keys_and_a_busy_timeout(fresh: Path):
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_SECONDS * 1000


def test_new_database_is_at_the_latest_schema_version(fresh: Path):
    assert database.execute_sql("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert len(db.install_id()) == 32


def test_created_files_and_directory_are_readable_by_the_owner_only(fresh: Path):
    operators.initialise(login="alice")  # a write, so the WAL and shared-memory files exist
    assert mode(fresh.parent) == 0o700
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{fresh}{suffix}")
        assert path.exists(), path
        assert mode(path) == 0o600, f"{path} has mode {oct(mode(path))}"
    assert db.world_readable_warning(fresh) is None


def test_foreign_keys_are_enforced(fresh: Path):
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        Mailbox.create(name="x", email="x@corp.test", regarding="user", profile=999)


def test_the_database_refuses_a_second_mailbox_for_one_user(fresh: Path):
    admin = operators.initialise(login="alice")
    users.add_user(admin, "Ann", "ann@corp.test")
    user = User.get(User.email == "ann@corp.test")
    with pytest.raises(IntegrityError, match="mailbox.user_id"):
        Mailbox.create(name="Ann 2", email="ann2@corp.test", regarding="user", user=user.id)


def test_reopening_keeps_the_data_and_the_install_id(fresh: Path):
    admin = operators.initialise(login="alice")
    users.add_user(admin, "Ann", "ann@corp.test")
    install_id = db.install_id()
    database.close()
    db.open_database(fresh)
    assert db.install_id() == install_id
    assert database.execute_sql("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert [u.email for u in User.select()] == ["ann@corp.test"]
    assert operators.current_actor(login="alice").role == "global_admin"


def test_migrating_twice_changes_nothing(fresh: Path):
    conn = database.connection()
    objects = conn.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
    assert db.migrate(conn) == LATEST_VERSION
    assert conn.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall() == objects
    assert conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 1


def test_a_database_from_a_newer_version_is_refused_and_left_alone(fresh: Path):
    database.close()
    conn = sqlite3.connect(fresh)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(db.DatabaseError) as refused:
        db.open_database(fresh)
    message = str(refused.value)
    assert f"schema version {LATEST_VERSION + 1}" in message and "upgrade mbxtui" in message
    conn = sqlite3.connect(fresh)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 1
    conn.close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path):
    path = tmp_path / "notes.db"
    path.write_text("these are not the tables you are looking for\n" * 10)
    with pytest.raises(db.DatabaseError, match="cannot open .* as an mbxtui database"):
        db.open_database(path)


def test_a_directory_is_refused(tmp_path: Path):
    with pytest.raises(db.DatabaseError, match="is a directory"):
        db.open_database(tmp_path)


def test_a_world_readable_database_gets_a_warning(fresh: Path):
    os.chmod(fresh, 0o644)
    warning = db.world_readable_warning(fresh)
    assert warning is not None and f"chmod 600 {fresh}" in warning


def _indexed_leading_columns(table: str) -> set[str]:
    columns = set()
    for (name,) in database.execute_sql(f'SELECT name FROM pragma_index_list("{table}")').fetchall():
        first = database.execute_sql(f'SELECT name FROM pragma_index_info("{name}") WHERE seqno = 0').fetchone()
        if first and first[0]:
            columns.add(first[0])
    return columns


SORTABLE_MAILBOX_COLUMNS = [
    (key, expression.removeprefix("m.").split()[0])
    for key, expression in mailbox_views.SORT_COLUMNS.items()
    if expression.startswith("m.")
]


@pytest.mark.parametrize("sort_key, column", SORTABLE_MAILBOX_COLUMNS)
def test_every_sortable_mailbox_column_has_an_index(fresh: Path, sort_key: str, column: str):
    assert column in _indexed_leading_columns("mailbox"), f"sorting by {sort_key} scans the table"


def test_a_database_made_by_the_first_version_is_migrated_with_its_data(tmp_path: Path):
    """A file at schema version 1, with a user and a mailbox in it, opens in this version: every
    later step is applied and nothing is lost."""
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.isolation_level = None
    version, script = MIGRATIONS[0]
    conn.execute("BEGIN")
    for statement in db._statements(script):
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('install_id', 'v1-install')")
    conn.execute("INSERT INTO \"user\" (id, name, email, active, created_on) VALUES (1, 'Ann', 'ann@example.test', 1, '2026-01-01 00:00:00')")
    conn.execute(
        "INSERT INTO mailbox (id, name, email, regarding, user_id, owner_id, is_forward, incoming_method, "
        "outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
        "delete_after_processing, approval, incoming_status, outgoing_status, act_status, overall_status, "
        "incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, transient_failures, active, created_on, "
        "modified_on, row_version) VALUES (1, 'Ann', 'ann@example.test', 'user', 1, 1, 0, 'server_side_sync', "
        "'server_side_sync', 'none', 0, '', 0, 0, 0, 'pending', 'not_run', 'not_run', 'not_run', 'not_run', "
        "0, 0, 0, 0, 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")
    conn.close()

    opened = db.open_database(path)
    assert opened.execute_sql("PRAGMA user_version").fetchone()[0] == LATEST_VERSION > 1
    assert opened.execute_sql("SELECT email, approval FROM mailbox").fetchall() == [("ann@example.test", "pending")]
    assert db.install_id() == "v1-install"
    indexes = {r[0] for r in opened.execute_sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"mailbox_created_on", "mailbox_approval_active"} <= indexes
    opened.close()
