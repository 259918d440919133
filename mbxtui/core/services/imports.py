"""CSV import of users and queues: all rows or none. Every bad row is reported with its line
number; the good ones are inserted set-based with their mailboxes (R1)."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import Any

from mbxtui.core import dialect, validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import Regarding
from mbxtui.core.errors import InvalidInput, InvalidRows, MbxError
from mbxtui.core.models import database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit, mailboxes
from mbxtui.core.services import settings as settings_service

MAX_FILE_BYTES = 512 * 1024 * 1024
COLUMNS = {"users": ("name", "email"), "queues": ("name", "email", "owner")}


def _read_rows(path: Path, kind: str) -> list[tuple[int, dict[str, str]]]:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MbxError(f"{path}: {size} bytes is more than the {MAX_FILE_BYTES} bytes an import may hold")
        raw = path.read_bytes()
    except OSError as exc:
        raise MbxError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:  # a NUL byte or an unencodable character in the path
        raise MbxError(f"cannot read {validation.shown(str(path))}: not a valid file name") from None
    body = raw.removeprefix(codecs.BOM_UTF8)  # decoded apart: the error's offset is then one into ``body``
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise InvalidRows(f"import of {path.name}", [(line, "is not UTF-8 text (save the file as UTF-8 CSV)")]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise MbxError(f"{path.name} is empty: expected a header line {','.join(COLUMNS[kind])}") from None
    except csv.Error as exc:
        raise InvalidRows(f"import of {path.name}", [(1, f"unreadable CSV: {exc}")]) from None
    names = [h.strip().lower() for h in header]
    expected = COLUMNS[kind]
    missing = [c for c in expected if c not in names]
    unknown = [h for h in names if h not in expected]
    if missing or unknown or len(set(names)) != len(names):
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(validation.shown(u) for u in unknown)}")
        if len(set(names)) != len(names):
            problems.append("a column appears twice")
        raise InvalidRows(f"import of {path.name}", [(1, "; ".join(problems) + f" (expected: {','.join(expected)})")])
    rows = []
    line = reader.line_num + 1  # a row is reported at its first line: a quoted field may span several
    try:
        for values in reader:
            first, line = line, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                spans_lines = line - first > 1
                hint = " (a quoted field runs over several lines: is a closing quote missing?)" if spans_lines else ""
                rows.append((first, {"__error__": f"has {len(values)} fields, expected {len(names)}{hint}"}))
                continue
            rows.append((first, dict(zip(names, values))))
    except csv.Error as exc:
        raise InvalidRows(f"import of {path.name}", [(line, f"unreadable CSV: {exc}")]) from None
    return rows


def _existing(table: str, column: str = "email") -> set[str]:
    return {r[0] for r in database.execute_sql(f'SELECT {column} FROM "{table}"')}


def import_csv(actor: Actor, kind: str, path: Path) -> dict[str, Any]:
    """Import ``users`` (name,email) or ``queues`` (name,email,owner) from a CSV file."""
    require(actor, Permission.CONFIGURE)
    if kind not in COLUMNS:
        raise InvalidInput("kind", f"{kind!r} is not users or queues")
    problems, valid = _validate(kind, _read_rows(path, kind))
    table = "user" if kind == "users" else "queue"
    # The transaction starts once every address is validated: on PostgreSQL a session idle in a
    # transaction for postgres.IDLE_IN_TRANSACTION_SECONDS is ended by the server, and validating
    # 100,000 addresses takes 5 s of CPU (more on a busy machine) with no statement sent.
    with write_transaction():
        taken_records = _existing(table)
        taken_mailboxes = _existing("mailbox")
        owners = dict(database.execute_sql('SELECT email, id FROM "user"').fetchall()) if kind == "queues" else {}
        clean: list[tuple[str, str, int | None]] = []
        seen: dict[str, int] = {}
        for line, name, address, owner_address in valid:
            owner_id = None
            if kind == "queues":
                owner_id = owners.get(owner_address)
                if owner_id is None:
                    problems.append((line, str(InvalidInput("owner", f"no user with email {owner_address}"))))
                    continue
            if address in seen:
                problems.append((line, f"email: {address} is also on line {seen[address]}"))
            elif address in taken_records:
                problems.append((line, f"email: a {table} with email {address} already exists"))
            elif address in taken_mailboxes:
                problems.append((line, f"email: {address} is already the address of a mailbox"))
            seen.setdefault(address, line)
            clean.append((name, address, owner_id))
        if problems:
            raise InvalidRows(f"import of {Path(path).name}", sorted(problems, key=lambda problem: problem[0]))
        if not clean:
            raise MbxError(f"{Path(path).name} has a header but no rows")
        imported = _insert(actor, kind, table, clean)
    return {"imported": imported, "kind": kind}


def _validate(kind: str, rows: list[tuple[int, dict[str, str]]]) -> tuple[list[tuple[int, str]], list[tuple]]:
    """The problems of the rows that are bad by themselves, and the others as (line, name,
    address, owner's address or None); what needs the database is checked by the caller."""
    problems: list[tuple[int, str]] = []
    valid: list[tuple[int, str, str, str | None]] = []
    for line, row in rows:
        if "__error__" in row:
            problems.append((line, row["__error__"]))
            continue
        try:
            name = validation.text("name", row["name"])
            address = validation.email("email", row["email"])
            owner_address = validation.email("owner", row["owner"]) if kind == "queues" else None
        except InvalidInput as exc:
            problems.append((line, str(exc)))
            continue
        valid.append((line, name, address, owner_address))
    return problems, valid


def _insert(actor: Actor, kind: str, table: str, rows: list[tuple[str, str, int | None]]) -> int:
    now = utcnow()
    first_new = database.execute_sql(f'SELECT coalesce(max(id), 0) + 1 FROM "{table}"').fetchone()[0]
    if kind == "users":
        columns, values = ("name", "email", "active", "created_on"), [(n, e, 1, now) for n, e, _ in rows]
    else:
        columns, values = ("name", "email", "owner_id", "active", "created_on"), [(n, e, o, 1, now) for n, e, o in rows]
    # Every row in one statement (PostgreSQL: COPY), in the caller's transaction: every row was
    # validated before it is written.
    dialect.current().copy_rows(database.connection(), table, columns, values)
    settings = settings_service.load()
    regarding = Regarding.USER if kind == "users" else Regarding.QUEUE
    template = mailboxes.new_mailbox_values(settings, name="", email="", regarding=regarding, owner_id=None)
    owner = "r.id" if kind == "users" else "r.owner_id"
    database.execute_sql(
        f"""INSERT INTO mailbox (name, email, regarding, {table}_id, owner_id, profile_id, is_forward,
              incoming_method, outgoing_method, act_method, use_own_credentials, username, password_set, token_set,
              delete_after_processing, approval, approved_by, approved_on, incoming_status, outgoing_status,
              act_status, overall_status, incoming_enabled, outgoing_enabled, act_enabled, test_scheduled,
              transient_failures, active, created_on, modified_on, row_version)
            SELECT r.name, r.email, ?, r.id, {owner}, ?, 0, ?, ?, ?, 0, '', 0, 0, 0, ?, ?, ?,
                   'not_run', 'not_run', 'not_run', 'not_run', 0, 0, 0, 0, 0, 1, ?, ?, 1
            FROM "{table}" r WHERE r.id >= ?""",
        (regarding.value, template["profile"], template["incoming_method"], template["outgoing_method"],
         template["act_method"], template["approval"], template["approved_by"], template["approved_on"],
         now, now, first_new),
    )
    entry = audit.record(actor, f"{table}.import", table, f"imported {len(rows)} {kind} with their mailboxes")
    database.execute_sql(
        f"""INSERT INTO audit_record (entry_id, record_kind, record_id, before, after)
            SELECT ?, ?, id, NULL, {dialect.current().json_object(["name", "email"])} FROM "{table}" WHERE id >= ?""",
        (entry.id, table, first_new),
    )
    database.execute_sql("UPDATE audit_entry SET record_count = ? WHERE id = ?", (len(rows), entry.id))
    return len(rows)
