"""Copying a whole installation from one database to another: SQLite to PostgreSQL when an
organisation outgrows one machine, or back, or between two servers.

Every table is copied in id order, a batch at a time, inside one transaction on the target that any
error rolls back whole, so a refused or failed copy leaves the target as it was. The source is read
in one snapshot. The install id (``meta``) is copied too: secret keys in the keyring carry it, so
the keyring that served the source serves the target. Secrets themselves are never in the database
and are not copied (``secrets_note`` says where they are and how to move them).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import peewee
import psycopg2

from mbxtui.core import db as databases
from mbxtui.core import dialect, server_roles
from mbxtui.core.errors import MbxError
from mbxtui.core.models import ALL_MODELS, OrgSettings
from mbxtui.core.paths import database_location, is_server_url
from mbxtui.core.secrets import SECRETS_FILE_NAME, SERVICE

BATCH_SIZE = 5000
META_TABLE = "meta"
# Tables the first migration fills by itself; the copy replaces their rows.
SEEDED_TABLES = (META_TABLE, OrgSettings._meta.table_name)
# Parents before children, so every foreign key finds its row.
COPIED_TABLES = (META_TABLE, *(model._meta.table_name for model in ALL_MODELS))
# The connection slots running workers lease: state of the processes running now, not of the
# installation; the target starts with none.
NOT_COPIED_TABLES = ("connection_lease",)


DATABASE_ERRORS = (sqlite3.Error, psycopg2.Error, peewee.DatabaseError)


class TransferError(MbxError):
    pass


@dataclass(frozen=True)
class CopiedTable:
    name: str
    rows: int


@dataclass
class TransferSummary:
    source: str
    target: str
    install_id: str
    schema_version: int
    tables: list[CopiedTable] = field(default_factory=list)
    mailbox_secrets: int = 0  # mailboxes with a password or token in the keyring
    profile_secrets: int = 0

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)

    def as_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "install_id": self.install_id,
                "schema_version": self.schema_version, "rows": self.rows,
                "tables": {table.name: table.rows for table in self.tables},
                "mailbox_secrets": self.mailbox_secrets, "profile_secrets": self.profile_secrets}


def shown(location: Path | str) -> str:
    """A database location for messages (a URL without its password)."""
    if is_server_url(location):
        from mbxtui.core.postgres import shown_url

        return shown_url(str(location))
    return str(Path(location).expanduser().resolve())


def copy_installation(source: Path | str, target: Path | str, *, batch_size: int = BATCH_SIZE) -> TransferSummary:
    """Copy the installation at ``source`` (which must be one) into ``target`` (created and migrated
    when needed, and refused unless it holds no data). Both are brought to the latest schema first."""
    source, target = database_location(source), database_location(target)
    if shown(source) == shown(target):
        raise TransferError(f"{shown(source)} is both the source and the target")
    source_db = databases.connect_database(source, existing_only=True)
    try:
        target_db = databases.connect_database(target)
        try:
            return _copy(source_db, target_db, shown(source), shown(target), batch_size)
        finally:
            target_db.close()
    finally:
        source_db.close()


def _copy(source_db: peewee.Database, target_db: peewee.Database, source: str, target: str,
          batch_size: int) -> TransferSummary:
    source_version, target_version = databases.schema_version(source_db), databases.schema_version(target_db)
    if source_version != target_version:
        raise TransferError(f"{source} is at schema version {source_version} and {target} at {target_version}: "
                            "open both with the same mbxtui version first")
    source_dialect, target_dialect = dialect.of(source_db), dialect.of(target_db)
    reader = source_dialect.reader(source_db.connection())
    unknown = sorted(set(source_dialect.schema_tables(reader)) - set(COPIED_TABLES) - set(NOT_COPIED_TABLES))
    if unknown:
        raise TransferError(f"{source} has tables this mbxtui does not know ({', '.join(unknown)}): "
                            "copy it with the mbxtui version that made them")
    summary = TransferSummary(source, target, install_id="", schema_version=source_version)
    try:
        with source_dialect.read_snapshot(source_db), target_dialect.write_transaction(target_db):
            target_reader = target_dialect.reader(target_db.connection())
            _require_empty(target_reader, target)
            for table in SEEDED_TABLES:
                target_db.execute_sql(f'DELETE FROM "{table}"')
            for table in COPIED_TABLES:
                columns = source_dialect.column_names(reader, table)
                if set(columns) != set(target_dialect.column_names(target_reader, table)):
                    raise TransferError(f"the table {table} has other columns in {source} than in {target}")
                copied = _copy_table(reader, target_db, target_dialect, table, columns, batch_size)
                reset = target_dialect.reset_ids(table) if "id" in columns else None
                if reset is not None:
                    target_db.execute_sql(reset)
                _verify_count(reader, target_reader, table, copied, source, target)
                summary.tables.append(CopiedTable(table, copied))
            server_roles.grant_every_operator(target_db)  # R35: the server enforces the copied roles
            summary.install_id = _one(target_reader, "SELECT value FROM meta WHERE key = 'install_id'")
            summary.mailbox_secrets = _one(target_reader, "SELECT count(*) FROM mailbox "
                                                          "WHERE password_set = 1 OR token_set = 1")
            summary.profile_secrets = _one(target_reader, "SELECT count(*) FROM profile "
                                                          "WHERE password_set = 1 OR token_set = 1")
    except TransferError as exc:
        raise TransferError(f"{exc}; nothing was written to {target}") from None
    except DATABASE_ERRORS as exc:
        raise TransferError(f"copying into {target} failed: {' '.join(str(exc).split())}; "
                            f"nothing was written to {target}") from None
    return summary


def _one(reader, sql: str, params: tuple = ()):
    return reader.execute(sql, params).fetchone()[0]


def _require_empty(reader, target: str) -> None:
    holding = [table for table in COPIED_TABLES if table not in SEEDED_TABLES
               and reader.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is not None]
    # The organisation settings row exists from the start; changed settings count as data.
    if _one(reader, "SELECT count(*) FROM org_settings WHERE row_version <> 1") or \
            _one(reader, "SELECT count(*) FROM org_settings") != 1:
        holding.append("org_settings")
    if holding:
        raise TransferError(f"{target} already holds data (in {', '.join(holding)}): copy only into a new, "
                            "empty database")


def _copy_table(reader, target_db: peewee.Database, target_dialect, table: str, columns: list[str],
                batch_size: int) -> int:
    key = "id" if "id" in columns else columns[0]
    columns = [key, *(c for c in columns if c != key)]
    names = ", ".join(f'"{c}"' for c in columns)
    copied, last = 0, None
    while True:
        after = "" if last is None else f'WHERE "{key}" > ? '
        rows = reader.execute(f'SELECT {names} FROM "{table}" {after}ORDER BY "{key}" LIMIT {int(batch_size)}',
                              () if last is None else (last,)).fetchall()
        if not rows:
            return copied
        try:
            target_dialect.insert_rows(target_db.connection(), table, columns, [tuple(row) for row in rows])
        except DATABASE_ERRORS as exc:
            raise TransferError(f"copying {table} (rows after {key} {last if last is not None else 'start'}) "
                                f"failed: {' '.join(str(exc).split())}") from None
        copied += len(rows)
        last = rows[-1][0]


def _verify_count(reader, target_reader, table: str, copied: int, source: str, target: str) -> None:
    in_source = _one(reader, f'SELECT count(*) FROM "{table}"')
    in_target = _one(target_reader, f'SELECT count(*) FROM "{table}"')
    if not in_source == in_target == copied:
        raise TransferError(f"{table}: {in_source} rows in {source}, {copied} copied, {in_target} in {target}")


def secrets_note(summary: TransferSummary) -> str:
    """Where the secrets of the copied installation are, and how to move them to another host."""
    prefix = f"{summary.install_id}/"
    return (
        f"Secrets were not copied: passwords and tokens ({summary.mailbox_secrets} mailboxes, "
        f"{summary.profile_secrets} profiles) stay in the keyring of each host, under the service "
        f"'{SERVICE}' with keys beginning '{prefix}' (e.g. {prefix}mailbox/42/password). The install "
        "id was copied, so this host's keyring keeps working with the new database. To use them on "
        f"another host: copy the encrypted-file keyring ({SECRETS_FILE_NAME} in the data directory, "
        "owner-only) there and unlock it with the same master password, or move the OS keyring's "
        f"'{SERVICE}' entries with its own tools, or set them again there with "
        "`mbxtui mailbox set-password` / `mbxtui profile set-password`."
    )
