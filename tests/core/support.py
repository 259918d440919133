"""Shared pieces of the core and CLI tests: valid profile fields, the whole database as plain data
(to prove that a refusal wrote nothing), and direct reads and writes of the tables."""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mbxtui.core.models import database
from tests.backends import ON_POSTGRES, dump

LOGINS = {"admin": "alice", "service": "sam", "system": "syd", "viewer": "vic"}

IMAP_PROFILE: dict[str, Any] = {
    "name": "imap",
    "type": "imap_smtp",
    "incoming_host": "imap.corp.test",
    "incoming_port": 993,
    "incoming_tls": "implicit",
    "incoming_auth": "mailbox",
    "outgoing_host": "smtp.corp.test",
    "outgoing_port": 587,
    "outgoing_tls": "starttls",
    "outgoing_auth": "mailbox",
}

EXCHANGE_ONLINE_PROFILE: dict[str, Any] = {
    **IMAP_PROFILE,
    "name": "exo",
    "type": "exchange_online",
    "incoming_host": "outlook.office365.com",
    "outgoing_host": "smtp.office365.com",
}


def unused_uid() -> int:
    """A uid that no account has: the owner of another user's files."""
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def profile_fields(**overrides: Any) -> dict[str, Any]:
    return {**IMAP_PROFILE, **overrides}


def tables() -> list[str]:
    if ON_POSTGRES:
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    return [r[0] for r in database.execute_sql(sql)]


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table, to compare before and after a refused change."""
    return {name: sorted(database.execute_sql(f'SELECT * FROM "{name}"').fetchall(), key=repr) for name in tables()}


def count(table: str, where: str = "TRUE", params: tuple = ()) -> int:
    return database.execute_sql(f'SELECT count(*) FROM "{table}" WHERE {where}', params).fetchone()[0]


def mailbox(email: str) -> dict[str, Any]:
    """The mailbox row as stored, with the profile's name."""
    cursor = database.execute_sql(
        "SELECT m.*, p.name AS profile_name FROM mailbox m LEFT JOIN profile p ON p.id = m.profile_id "
        "WHERE m.email = ?", (email,))
    row = cursor.fetchone()
    assert row is not None, f"no mailbox {email}"
    return dict(zip([d[0] for d in cursor.description], row))


def audit_actions(since_id: int = 0) -> list[str]:
    return [r[0] for r in database.execute_sql(
        "SELECT action FROM audit_entry WHERE id > ? ORDER BY id", (since_id,))]


def last_audit_id() -> int:
    return database.execute_sql("SELECT coalesce(max(id), 0) FROM audit_entry").fetchone()[0]


def set_test_results(email: str, **columns: Any) -> None:
    """Write test outcomes directly, as Test & Enable would leave them."""
    assignments = ", ".join(f"{name} = ?" for name in columns)
    database.execute_sql(f"UPDATE mailbox SET {assignments} WHERE email = ?", (*columns.values(), email))


def file_bytes(db_path: Path | str) -> bytes:
    """What the database holds: the SQLite file and its WAL as they are on disk, or on PostgreSQL
    every row of every table."""
    if ON_POSTGRES:
        return "\n".join(dump(db_path)).encode()
    data = b""
    for suffix in ("", "-wal"):
        path = Path(f"{db_path}{suffix}")
        if path.exists():
            data += path.read_bytes()
    return data


@contextmanager
def inserts_refused(table: str, *, once_it_holds: int = 0) -> Iterator[None]:
    """Inside the block the database refuses every new row of ``table`` once the table holds
    ``once_it_holds`` rows, raising "TABLE refused by the test": a write failing as a constraint or
    a full disk fails it, at a chosen point of a transaction."""
    refused = f"{table} refused by the test"
    if ON_POSTGRES:
        database.execute_sql("CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$ "
                             f"BEGIN IF (SELECT count(*) FROM {table}) >= {once_it_holds} THEN "
                             f"RAISE EXCEPTION '{refused}'; END IF; RETURN NEW; END $$")
        database.execute_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                             "FOR EACH ROW EXECUTE FUNCTION refuse_insert()")
    else:
        database.execute_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                             f"WHEN (SELECT count(*) FROM {table}) >= {once_it_holds} "
                             f"BEGIN SELECT RAISE(ABORT, '{refused}'); END")
    try:
        yield
    finally:
        database.execute_sql(f"DROP TRIGGER refuse ON {table}" if ON_POSTGRES else "DROP TRIGGER refuse")
