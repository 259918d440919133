"""The audit log (R22): who did what to which records, when, with before and after values.

Entries are written inside the same transaction as the change they describe. Values are plain
JSON of non-secret fields; secrets are recorded only as "set"."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from mbxtui.core import dialect, validation
from mbxtui.core.models import AuditEntry, AuditRecord, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require


def _dump(values: dict[str, Any] | None) -> str | None:
    if values is None:
        return None
    return json.dumps(values, default=str, ensure_ascii=False, sort_keys=True)


def record(
    actor: Actor,
    action: str,
    record_kind: str,
    summary: str,
    changes: Iterable[tuple[int, dict[str, Any] | None, dict[str, Any] | None]] = (),
) -> AuditEntry:
    """One entry with a (record id, before, after) triple for each record it touched."""
    changes = list(changes)
    entry = _entry(actor, action, record_kind, len(changes), summary)
    if changes:
        AuditRecord.insert_many(
            [
                {"entry": entry.id, "record_kind": record_kind, "record_id": rid, "before": _dump(b), "after": _dump(a)}
                for rid, b, a in changes
            ]
        ).execute()
    return entry


def _entry(actor: Actor, action: str, record_kind: str, count: int, summary: str) -> AuditEntry:
    """The entry, written once, whole: on PostgreSQL nobody but the owner may update it."""
    return AuditEntry.create(at=utcnow(), login=actor.login, by_login=actor.by_login, action=action,
                             record_kind=record_kind, record_count=count, summary=summary)


def record_inserted(actor: Actor, action: str, table: str, summary: str, count: int,
                    columns: Sequence[str], first_id: int) -> None:
    """An entry for the ``count`` rows just inserted set-based into ``table``, from id ``first_id``
    on, with each row's ``columns`` as its after values, by one INSERT ... SELECT."""
    entry = _entry(actor, action, table, count, summary)
    database.execute_sql(
        f'{dialect.current().bulk_insert("audit_record")} (entry_id, record_kind, record_id, before, after) '
        f'SELECT ?, ?, id, NULL, {dialect.current().json_object(columns)} FROM "{table}" WHERE id >= ?',
        (entry.id, table, first_id),
    )


def record_selection(
    actor: Actor,
    action: str,
    summary: str,
    columns: Sequence[str],
    after: dict[str, Any],
    where_sql: str,
    params: Sequence[Any] = (),
    count: int | None = None,
) -> int:
    """An entry for a set-based change of mailboxes: the before values of ``columns`` are read from
    every row matching ``where_sql`` by one INSERT ... SELECT, before the UPDATE runs.
    ``summary`` may hold ``{count}``, replaced by the number of records. The rows are counted
    first (``count``, when the caller knows it), so the entry is written once, whole: on PostgreSQL
    nobody but the owner may update it."""
    if count is None:
        count = database.execute_sql(f"SELECT count(*) FROM mailbox WHERE {where_sql}", tuple(params)).fetchone()[0]
    entry = _entry(actor, action, "mailbox", count, summary.replace("{count}", str(count)))
    before = dialect.current().json_object(columns)
    cursor = database.execute_sql(
        f'INSERT INTO audit_record (entry_id, record_kind, record_id, before, after) '
        f'SELECT ?, \'mailbox\', id, {before}, ? FROM mailbox WHERE {where_sql}',
        (entry.id, _dump(after), *params),
    )
    if cursor.rowcount != count:  # the caller holds the write lock: nothing may change in between
        raise RuntimeError(f"audit: {count} mailboxes matched, then {cursor.rowcount}")
    return count


def list_entries(
    actor: Actor, *, record_kind: str | None = None, record_id: int | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    require(actor, Permission.READ)
    limit, offset = validation.paging(limit, offset)
    query = AuditEntry.select().order_by(AuditEntry.id.desc())
    if record_kind and record_id is not None:
        ids = AuditRecord.select(AuditRecord.entry).where(
            (AuditRecord.record_kind == record_kind) & (AuditRecord.record_id == record_id)
        )
        query = query.where(AuditEntry.id.in_(ids))
    elif record_kind:
        query = query.where(AuditEntry.record_kind == record_kind)
    entries = []
    for entry in query.limit(limit).offset(offset):
        item = {
            "id": entry.id,
            "at": entry.at.isoformat(sep=" "),
            "login": entry.login,
            "by_login": entry.by_login,
            "action": entry.action,
            "record_kind": entry.record_kind,
            "record_count": entry.record_count,
            "summary": entry.summary,
        }
        if record_id is not None:
            rec = entry.records.where(AuditRecord.record_id == record_id).first()
            if rec is not None:
                item["before"] = json.loads(rec.before) if rec.before else None
                item["after"] = json.loads(rec.after) if rec.after else None
        entries.append(item)
    return entries
