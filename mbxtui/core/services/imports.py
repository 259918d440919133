"""CSV import of users and queues: all rows or none. Every bad row is reported with its line
number; the good ones are inserted set-based with their mailboxes (R1), a chunk at a time while a
thread validates the chunks after it, all in one transaction."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import queue
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mbxtui.core import dialect, validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import Regarding
from mbxtui.core.errors import InvalidInput, InvalidRows, MbxError
from mbxtui.core.models import database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit, mailboxes
from mbxtui.core.services import settings as settings_service
from mbxtui.core.sql_lists import chunks

MAX_FILE_BYTES = 512 * 1024 * 1024
COLUMNS = {"users": ("name", "email"), "queues": ("name", "email", "owner")}
# The rows are validated a chunk at a time on a thread while this one writes the chunks before
# them: on PostgreSQL validating 100,000 addresses (2.7 s of CPU) and the server's writing (7 s)
# ran one after the other.
CHUNK_ROWS = 5_000
AHEAD_CHUNKS = 2


def _read_rows(path: Path, kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of the file as (first line, values by column), blank ones left out; what makes
    the whole file unreadable is raised before the first row, a CSV error at its row."""
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
    line = reader.line_num + 1  # a row is reported at its first line: a quoted field may span several
    try:
        for values in reader:
            first, line = line, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                spans_lines = line - first > 1
                hint = " (a quoted field runs over several lines: is a closing quote missing?)" if spans_lines else ""
                yield first, {"__error__": f"has {len(values)} fields, expected {len(names)}{hint}"}
                continue
            yield first, dict(zip(names, values))
    except csv.Error as exc:
        raise InvalidRows(f"import of {path.name}", [(line, f"unreadable CSV: {exc}")]) from None


def _existing(table: str, column: str = "email") -> set[str]:
    return {r[0] for r in database.execute_sql(f'SELECT {column} FROM "{table}"')}


def import_csv(actor: Actor, kind: str, path: Path) -> dict[str, Any]:
    """Import ``users`` (name,email) or ``queues`` (name,email,owner) from a CSV file."""
    require(actor, Permission.CONFIGURE)
    if kind not in COLUMNS:
        raise InvalidInput("kind", f"{kind!r} is not users or queues")
    table = "user" if kind == "users" else "queue"
    problems: list[tuple[int, str]] = []
    with _validated_ahead(kind, path) as validated:
        # The transaction starts once the first chunk is validated, and then waits for a chunk only
        # while the validating thread is behind the writes, at most one chunk's validation (5,000
        # addresses: 0.15-0.25 s of CPU), against the server ending a session idle in a transaction
        # after postgres.IDLE_IN_TRANSACTION_SECONDS (10 s). Importing 100,000 users at load 3, the
        # longest wait was 0.1 s on SQLite, none on PostgreSQL (its writes are the slower side).
        first = next(validated, None)
        if first is None:
            raise MbxError(f"{Path(path).name} has a header but no rows")
        every_chunk = itertools.chain([first], validated)
        try:
            with write_transaction():
                checks, writer = _Checks(kind, table), _Writer(kind, table)
                count = 0
                for chunk_problems, valid in every_chunk:
                    count += len(chunk_problems) + len(valid)
                    problems += chunk_problems
                    clean = checks.rows(valid, problems)
                    if problems:
                        raise _Refused  # rolled back at once: what was written goes, and nothing more is
                    writer.write(clean)
                writer.audit(actor, count)
        except _Refused:
            # The rest of the file is checked outside the transaction: it writes nothing more, and
            # would otherwise idle in it for as long as the validation of the rest takes.
            for chunk_problems, valid in every_chunk:
                problems += chunk_problems
                checks.rows(valid, problems)
            problems.sort(key=lambda problem: problem[0])
            raise InvalidRows(f"import of {Path(path).name}", problems) from None
    return {"imported": count, "kind": kind}


class _Refused(Exception):
    """A bad row was found: the import's transaction is rolled back."""


@contextmanager
def _validated_ahead(kind: str, path: Path) -> Iterator[Iterator[tuple[list, list]]]:
    """The file's rows read and validated (``_validate``) CHUNK_ROWS at a time, in order, on a
    thread that works up to AHEAD_CHUNKS ahead of the reader: it computes while the reader waits
    for the database (psycopg2 and sqlite3 let go of the GIL meanwhile). What the thread raises is
    raised to the reader; the thread has ended when the block ends."""
    handed: queue.Queue = queue.Queue(maxsize=AHEAD_CHUNKS)
    done = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not done.is_set():
            with contextlib.suppress(queue.Full):
                handed.put(item, timeout=0.05)
                return True
        return False

    def validate() -> None:
        try:
            for chunk in chunks(_read_rows(path, kind), CHUNK_ROWS):
                if not put(("chunk", _validate(kind, chunk))):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001  (raised in the reader's thread)
            put(("raised", exc))

    def validated() -> Iterator[tuple[list, list]]:
        while True:
            what, value = handed.get()
            if what == "end":
                return
            if what == "raised":
                raise value
            yield value

    thread = threading.Thread(target=validate, name="import-validation", daemon=True)
    thread.start()
    try:
        yield validated()
    finally:
        done.set()  # the thread stops within 0.05 s if it waits to put, else after the chunk it validates
        thread.join()


class _Checks:
    """What needs the database, row by row in file order: the address taken by another record or a
    mailbox, or earlier in the file; a queue's owner unknown."""

    def __init__(self, kind: str, table: str):
        self.kind, self.table = kind, table
        self.taken_records = _existing(table)
        self.taken_mailboxes = _existing("mailbox")
        self.owners = dict(database.execute_sql('SELECT email, id FROM "user"').fetchall()) if kind == "queues" else {}
        self.seen: dict[str, int] = {}

    def rows(self, valid: list[tuple], problems: list[tuple[int, str]]) -> list[tuple[str, str, int | None]]:
        """The rows as they are written; each problem is added to ``problems``."""
        clean: list[tuple[str, str, int | None]] = []
        for line, name, address, owner_address in valid:
            owner_id = None
            if self.kind == "queues":
                owner_id = self.owners.get(owner_address)
                if owner_id is None:
                    problems.append((line, str(InvalidInput("owner", f"no user with email {owner_address}"))))
                    continue
            if address in self.seen:
                problems.append((line, f"email: {address} is also on line {self.seen[address]}"))
            elif address in self.taken_records:
                problems.append((line, f"email: a {self.table} with email {address} already exists"))
            elif address in self.taken_mailboxes:
                problems.append((line, f"email: {address} is already the address of a mailbox"))
            self.seen.setdefault(address, line)
            clean.append((name, address, owner_id))
        return clean


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


class _Writer:
    """Writes the rows a chunk at a time, each with its mailbox, then one audit entry for them all."""

    def __init__(self, kind: str, table: str):
        self.kind, self.table, self.now = kind, table, utcnow()
        self.regarding = Regarding.USER if kind == "users" else Regarding.QUEUE
        self.template = mailboxes.new_mailbox_values(settings_service.load(), name="", email="",
                                                     regarding=self.regarding, owner_id=None)
        self.first_id: int | None = None

    def write(self, rows: list[tuple[str, str, int | None]]) -> None:
        table, now, template = self.table, self.now, self.template
        first_new = database.execute_sql(f'SELECT coalesce(max(id), 0) + 1 FROM "{table}"').fetchone()[0]
        self.first_id = self.first_id or first_new
        if self.kind == "users":
            columns, values = ("name", "email", "active", "created_on"), [(n, e, 1, now) for n, e, _ in rows]
        else:
            columns = ("name", "email", "owner_id", "active", "created_on")
            values = [(n, e, o, 1, now) for n, e, o in rows]
        dialect.current().copy_rows(database.connection(), table, columns, values)
        owner = "r.id" if self.kind == "users" else "r.owner_id"
        database.execute_sql(
            f"""{dialect.current().bulk_insert("mailbox")} (name, email, regarding, {table}_id, owner_id, profile_id,
                  is_forward, incoming_method, outgoing_method, act_method, use_own_credentials, username,
                  password_set, token_set, delete_after_processing, approval, approved_by, approved_on,
                  incoming_status, outgoing_status, act_status, overall_status, incoming_enabled, outgoing_enabled,
                  act_enabled, test_scheduled, transient_failures, active, created_on, modified_on, row_version)
                SELECT r.name, r.email, ?, r.id, {owner}, ?, 0, ?, ?, ?, 0, '', 0, 0, 0, ?, ?, ?,
                       'not_run', 'not_run', 'not_run', 'not_run', 0, 0, 0, 0, 0, 1, ?, ?, 1
                FROM "{table}" r WHERE r.id >= ?""",
            (self.regarding.value, template["profile"], template["incoming_method"], template["outgoing_method"],
             template["act_method"], template["approval"], template["approved_by"], template["approved_on"],
             now, now, first_new),
        )

    def audit(self, actor: Actor, count: int) -> None:
        """One entry for every row written, once its count is known."""
        audit.record_inserted(actor, f"{self.table}.import", self.table,
                              f"imported {count} {self.kind} with their mailboxes", count, ["name", "email"],
                              self.first_id)
