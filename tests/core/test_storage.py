"""The SQLite file: pragmas, owner-only files, schema version and migrations, refusals."""

from __future__ import annotations

import os
import pwd
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
from peewee import IntegrityError

from mbxtui.core import db, paths
from mbxtui.core.migrations import LATEST_VERSION, MIGRATIONS
from mbxtui.core.models import Mailbox, User, database
from mbxtui.core.secret_file import EncryptedSecretFile
from mbxtui.core.services import mailbox_views, operators, users
from mbxtui.core.sync import store
from tests.core.support import unused_uid


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
    assert paths.storage_warnings(fresh, fresh.parent) == []


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
    assert paths.storage_warnings(fresh, fresh.parent) == [f"{fresh} can be read by other users; run: chmod 600 {fresh}"]


# --- directories, owners and modes --------------------------------------------------------------

@pytest.fixture
def umask():
    """Sets the process's umask for one test and puts the old one back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277], ids=["umask-000", "umask-022", "umask-277"])
def test_every_directory_made_for_the_database_is_0700_whatever_the_umask(tmp_path: Path, umask, mask: int):
    umask(mask)
    path = tmp_path / "a" / "b" / "c" / "mbxtui.db"
    opened = db.open_database(path)
    operators.initialise(login="alice")
    opened.close()
    for directory in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert mode(directory) == 0o700, f"{directory} has mode {oct(mode(directory))}"
    assert mode(path) == 0o600


@pytest.mark.parametrize("mask", [0o000, 0o277], ids=["umask-000", "umask-277"])
def test_the_secrets_file_directories_are_0700_whatever_the_umask(tmp_path: Path, umask, mask: int):
    umask(mask)
    secrets = EncryptedSecretFile(tmp_path / "x" / "y" / "secrets.cfg")
    secrets.unlock("a master password")
    secrets.set("mbxtui", "k", "v")
    assert mode(tmp_path / "x") == 0o700 and mode(tmp_path / "x" / "y") == 0o700


def test_an_existing_directory_keeps_its_mode(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o750)
    paths.ensure_private_dir(shared / "mine")
    assert mode(shared) == 0o750 and mode(shared / "mine") == 0o700


def test_directories_are_made_only_through_the_one_helper():
    """Every directory mbxtui makes goes through paths.ensure_private_dir (0700 whatever the umask)."""
    package = Path(db.__file__).resolve().parents[1]
    found = [f"{source.relative_to(package)}:{number}"
             for source in package.rglob("*.py") if source != Path(paths.__file__).resolve()
             for number, line in enumerate(source.read_text().splitlines(), 1)
             if ".mkdir(" in line or "makedirs(" in line]
    assert found == []


def test_a_database_owned_by_another_user_is_refused_and_left_alone(fresh: Path):
    database.close()
    other = unused_uid()
    os.chown(fresh, other, -1)
    before = fresh.read_bytes()
    with pytest.raises(db.DatabaseError) as refused:
        db.open_database(fresh)
    me = owner_name(os.geteuid())
    assert str(refused.value) == (
        f"{fresh} is owned by uid {other}, not by {me}: mbxtui opens only databases of the user it runs as; "
        f"run it as uid {other}")
    assert fresh.read_bytes() == before
    assert not Path(f"{fresh}-wal").exists() and not Path(f"{fresh}-shm").exists()


def test_a_data_directory_owned_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    other = unused_uid()
    os.chown(data_dir, other, -1)
    monkeypatch.setenv("MBXTUI_DATA_DIR", str(data_dir))
    with pytest.raises(paths.ForeignOwner) as refused:
        paths.private_data_dir()
    assert str(refused.value) == (
        f"the data directory {data_dir} is owned by uid {other}, not by {owner_name(os.geteuid())}: "
        f"run mbxtui as uid {other}, or choose a directory of your own with MBXTUI_DATA_DIR")


def test_a_private_data_directory_is_made_0700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask):
    umask(0)
    monkeypatch.setenv("MBXTUI_DATA_DIR", str(tmp_path / "new" / "data"))
    assert paths.private_data_dir() == tmp_path / "new" / "data"
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "data") == 0o700


def test_a_database_made_owner_only_gets_no_warnings(fresh: Path):
    operators.initialise(login="alice")
    assert paths.storage_warnings(fresh, fresh.parent) == []


@pytest.mark.parametrize("file_mode, problem", [
    (0o620, "can be written by other users"),
    (0o602, "can be written by other users"),
    (0o666, "can be read and written by other users"),
    (0o640, "can be read by other users"),
])
def test_a_database_others_can_write_gets_one_warning(fresh: Path, file_mode: int, problem: str):
    os.chmod(fresh, file_mode)
    assert paths.storage_warnings(fresh, fresh.parent) == [f"{fresh} {problem}; run: chmod 600 {fresh}"]


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_wal_or_shared_memory_file_others_can_write_gets_a_warning(fresh: Path, suffix: str):
    operators.initialise(login="alice")  # a write, so the WAL and shared-memory files exist
    companion = Path(f"{fresh}{suffix}")
    os.chmod(companion, 0o622)
    assert paths.storage_warnings(fresh, fresh.parent) == [
        f"{companion} can be written by other users; run: chmod 600 {companion}"]


@pytest.mark.parametrize("directory_mode", [0o770, 0o707, 0o777])
def test_a_data_directory_others_can_write_gets_a_warning(fresh: Path, directory_mode: int):
    os.chmod(fresh.parent, directory_mode)
    try:
        assert paths.storage_warnings(fresh, fresh.parent) == [
            f"the data directory {fresh.parent} can be written by other users; run: chmod 700 {fresh.parent}"]
    finally:
        os.chmod(fresh.parent, 0o700)


def test_a_database_in_a_directory_others_can_write_gets_a_warning(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # as /tmp: others may not delete the file, but may plant its -wal
    data_dir = paths.ensure_private_dir(tmp_path / "data")
    opened = db.open_database(shared / "mbxtui.db")
    try:
        assert paths.storage_warnings(shared / "mbxtui.db", data_dir) == [
            f"the directory {shared} of the database can be written by other users, who could replace or "
            f"plant files beside it; move the database to a directory only you can write to"]
    finally:
        opened.close()


def test_a_server_database_is_checked_for_its_data_directory_only(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o777)
    assert paths.storage_warnings("postgresql://u@db.example.test/mbxtui", data_dir) == [
        f"the data directory {data_dir} can be written by other users; run: chmod 700 {data_dir}"]
    assert paths.storage_warnings("postgresql://u@db.example.test/mbxtui", tmp_path / "missing") == []


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


def _database_at_step(path: Path, step: int, *statements: str) -> None:
    """A SQLite file made by the steps up to ``step``, with ``statements`` run in the same
    transaction (rows written as that version wrote them)."""
    conn = sqlite3.connect(path)
    conn.isolation_level = None
    conn.execute("BEGIN")
    for version, script in MIGRATIONS[:step]:
        for statement in db._statements(script):
            conn.execute(statement)
    for statement in statements:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {step}")
    conn.execute("COMMIT")
    conn.close()


def test_a_database_at_schema_9_gets_the_mailbox_indexes_of_step_10_with_its_data(tmp_path: Path):
    """Step 10 drops the index on postponed_until, which no query reads; the rows stay."""
    path = tmp_path / "v9.db"
    _database_at_step(
        path, 9,
        "INSERT INTO meta (key, value) VALUES ('install_id', 'v9-install')",
        "INSERT INTO \"user\" (id, name, email, active, created_on) VALUES (1, 'Ann', 'ann@example.test', 1, '2026-01-01 00:00:00')",
        "INSERT INTO mailbox (id, name, email, regarding, user_id, owner_id, is_forward, incoming_method, "
        "outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
        "delete_after_processing, approval, incoming_status, outgoing_status, act_status, overall_status, "
        "incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, transient_failures, postponed_until, active, "
        "created_on, modified_on, row_version) VALUES (1, 'Ann', 'ann@example.test', 'user', 1, 1, 0, "
        "'server_side_sync', 'server_side_sync', 'none', 0, '', 0, 0, 0, 'pending', 'not_run', 'not_run', 'not_run', "
        "'not_run', 0, 0, 0, 0, 1, '2030-01-01 00:00:00', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)")
    with closing(sqlite3.connect(path)) as at_step_9:
        assert "mailbox_postponed_until" in {r[0] for r in at_step_9.execute("SELECT name FROM sqlite_master")}

    opened = db.open_database(path)
    assert opened.execute_sql("PRAGMA user_version").fetchone()[0] == LATEST_VERSION >= 10
    assert opened.execute_sql("SELECT email, postponed_until FROM mailbox").fetchall() == [
        ("ann@example.test", "2030-01-01 00:00:00")]
    indexes = {r[0] for r in opened.execute_sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "mailbox_postponed_until" not in indexes
    assert set(mailbox_views.SORT_INDEXES.values()) | {"mailbox_approval_active", "mailbox_enabled"} <= indexes
    opened.close()


def test_a_database_at_schema_13_gets_the_checkpoints_delete_pending_of_step_14_with_its_data(tmp_path: Path):
    """Step 14 adds what a deleting mailbox's last commit left to delete (R28): none for a checkpoint
    saved before it, whose place in the folder stays."""
    path = tmp_path / "v13.db"
    _database_at_step(
        path, 13,
        "INSERT INTO \"user\" (id, name, email, active, created_on) VALUES (1, 'Ann', 'ann@example.test', 1, '2026-01-01 00:00:00')",
        "INSERT INTO mailbox (id, name, email, regarding, user_id, owner_id, is_forward, incoming_method, "
        "outgoing_method, act_method, use_own_credentials, username, password_set, token_set, "
        "delete_after_processing, approval, incoming_status, outgoing_status, act_status, overall_status, "
        "incoming_enabled, outgoing_enabled, act_enabled, test_scheduled, transient_failures, active, "
        "created_on, modified_on, row_version) VALUES (1, 'Ann', 'ann@example.test', 'user', 1, 1, 0, "
        "'server_side_sync', 'server_side_sync', 'none', 0, '', 0, 0, 0, 'pending', 'not_run', 'not_run', 'not_run', "
        "'not_run', 0, 0, 0, 0, 1, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)",
        "INSERT INTO sync_checkpoint (mailbox_id, folder, uidvalidity, last_uid, updated_on) "
        "VALUES (1, 'INBOX', 77, 3, '2026-01-01 00:00:00')")

    opened = db.open_database(path)
    assert opened.execute_sql("PRAGMA user_version").fetchone()[0] == LATEST_VERSION >= 14
    assert opened.execute_sql("SELECT uidvalidity, last_uid, delete_pending FROM sync_checkpoint").fetchall() == [
        (77, 3, None)]
    saved = store.checkpoint(1, "INBOX")
    assert (saved, saved.delete_pending) == (store.Checkpoint(77, 3), ())
    opened.close()
