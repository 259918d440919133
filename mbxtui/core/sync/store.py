"""What a cycle writes: the activities of a batch of messages with the checkpoint past them, in one
transaction (R24, R25): for IMAP the folder's UIDVALIDITY and last UID, for POP3 the UIDL values
seen; and the reads a cycle needs before it starts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mbxtui.core.db import write_transaction
from mbxtui.core.enums import ActivityDirection, ActivityState
from mbxtui.core.jobs.queue import row_by_name, rows_by_name
from mbxtui.core.models import database
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party, effective_tracking, route, tracked

INCOMING = ActivityDirection.INCOMING.value
RECEIVED, UNRESOLVED, UNPARSEABLE = (ActivityState.RECEIVED.value, ActivityState.UNRESOLVED.value,
                                    ActivityState.UNPARSEABLE.value)


@dataclass(frozen=True)
class Fetched:
    """One message read from a folder: where it lay and what it says."""

    uid: int  # IMAP: its UID; POP3: its number in the session that read it (UIDLs are kept apart)
    received_on: datetime
    message: ParsedMessage


@dataclass(frozen=True)
class Checkpoint:
    uidvalidity: int
    last_uid: int


@dataclass
class BatchWritten:
    processed_uids: list[int] = field(default_factory=list)  # may be deleted now (R28), when asked
    recorded: int = 0  # activities created or given a new party
    unresolved: int = 0


def checkpoint(mailbox_id: int, folder: str) -> Checkpoint | None:
    row = row_by_name(database.execute_sql(
        "SELECT uidvalidity, last_uid FROM sync_checkpoint WHERE mailbox_id = ? AND folder = ?", [mailbox_id, folder]))
    return None if row is None else Checkpoint(row["uidvalidity"], row["last_uid"])


def forward_candidates(profile_id: int, users_default: str, queues_default: str) -> dict[str, Party]:
    """R26: address -> party of the users and queues a forward mailbox on this profile serves (incoming
    method ``forward_mailbox``, active and enabled for incoming)."""
    rows = rows_by_name(database.execute_sql(
        "SELECT email, regarding, user_id, queue_id, tracking FROM mailbox WHERE profile_id = ? AND "
        "incoming_method = 'forward_mailbox' AND active = 1 AND incoming_enabled = 1 AND is_forward = 0",
        [profile_id]))
    return {row["email"].lower(): Party(row["user_id"], row["queue_id"],
                                        effective_tracking(row["tracking"], row["regarding"], users_default,
                                                           queues_default))
            for row in rows}


def record_batch(mailbox_id: int, folder: str, uidvalidity: int, last_uid: int, items: list[Fetched],
                 own: Party | None, candidates: dict[str, Party] | None, now: datetime) -> BatchWritten:
    """One transaction: each message's activity (see ``_record``), then the checkpoint at
    ``last_uid``."""
    with write_transaction():
        written = _record(mailbox_id, folder, items, own, candidates, now)
        _save_checkpoint(mailbox_id, folder, uidvalidity, last_uid, now)
    return written


def save_checkpoint(mailbox_id: int, folder: str, uidvalidity: int, last_uid: int, now: datetime) -> None:
    """A checkpoint alone, in a transaction of its own."""
    with write_transaction():
        _save_checkpoint(mailbox_id, folder, uidvalidity, last_uid, now)


def _save_checkpoint(mailbox_id: int, folder: str, uidvalidity: int, last_uid: int, now: datetime) -> None:
    database.execute_sql(
        "INSERT INTO sync_checkpoint (mailbox_id, folder, uidvalidity, last_uid, updated_on) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (mailbox_id, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
        "last_uid = excluded.last_uid, updated_on = excluded.updated_on",
        [mailbox_id, folder, uidvalidity, last_uid, now])


def record_pop3_batch(mailbox_id: int, folder: str, items: list[Fetched], seen: list[str], own: Party | None,
                      candidates: dict[str, Party] | None, now: datetime, *,
                      keys_of: Mapping[int, str] | None = None) -> BatchWritten:
    """One transaction: each message's activity (see ``_record``), then the keys of the messages
    this batch read or passed over (``seen``: their UIDLs, or Message-IDs where the server has no
    UIDL), so that no later cycle reads them again. ``keys_of``: the key of each item by its
    message number; the keys of the items processed are marked so (R28: a later cycle deletes
    what this one could not)."""
    with write_transaction():
        written = _record(mailbox_id, folder, items, own, candidates, now)
        processed = {keys_of[number] for number in written.processed_uids if number in keys_of} if keys_of else set()
        for start in range(0, len(seen), 200):  # four values a row: under SQLite's 999 at any version
            chunk = seen[start:start + 200]
            database.execute_sql(
                "INSERT INTO sync_seen_uidl (mailbox_id, uidl, seen_on, processed) VALUES "
                f"{','.join(['(?, ?, ?, ?)'] * len(chunk))} ON CONFLICT DO NOTHING",
                [value for key in chunk for value in (mailbox_id, key, now, int(key in processed))])
    return written


def seen_uidls(mailbox_id: int) -> dict[str, bool]:
    """The keys a mailbox has seen, each with whether its message was processed (not passed over)."""
    return {row[0]: bool(row[1]) for row in database.execute_sql(
        "SELECT uidl, processed FROM sync_seen_uidl WHERE mailbox_id = ?", [mailbox_id]).fetchall()}


def forget_uidls(mailbox_id: int, gone: set[str]) -> None:
    """Forget the keys of messages no longer on the server: the table holds what the maildrop
    holds, not every message it ever held."""
    if not gone:
        return
    listed = sorted(gone)
    with write_transaction():
        for start in range(0, len(listed), 500):
            chunk = listed[start:start + 500]
            database.execute_sql(
                f"DELETE FROM sync_seen_uidl WHERE mailbox_id = ? AND uidl IN ({','.join('?' * len(chunk))})",
                [mailbox_id, *chunk])


def _record(mailbox_id: int, folder: str, items: list[Fetched], own: Party | None,
            candidates: dict[str, Party] | None, now: datetime) -> BatchWritten:
    """Inside the caller's transaction: each message's activity (or a new receipt and parties on
    the one already recorded under its Message-ID) and the mailbox's totals. A message tracked for
    nobody is processed (status only) without an activity; a forward mailbox's message for nobody
    is ``unresolved``."""
    written = BatchWritten()
    references = [ref for item in items for ref in item.message.in_reply_to]
    tracked_ids = _known_message_ids(references)
    for item in items:
        message = item.message
        parties = route(message, own, candidates)
        if message.problem is not None:
            state, keep = UNPARSEABLE, parties
        elif candidates is not None and not parties:
            state, keep = UNRESOLVED, []
        else:
            state, keep = RECEIVED, [p for p in parties if tracked(p, message, tracked_ids)]
            if not keep:
                if candidates is not None:
                    written.processed_uids.append(item.uid)  # a forward mailbox deletes it all the same
                continue
        activity_id = _activity(message, state, mailbox_id, item.received_on, now)
        inserted = database.execute_sql(
            "INSERT INTO activity_receipt (activity_id, mailbox_id, folder, uid, received_on) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING", [activity_id, mailbox_id, folder, item.uid, item.received_on]).rowcount
        for party in keep:
            inserted += database.execute_sql(
                "INSERT INTO activity_party (activity_id, user_id, queue_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [activity_id, party.user_id, party.queue_id]).rowcount
        written.recorded += 1 if inserted else 0
        written.unresolved += state == UNRESOLVED
        tracked_ids.add(message.message_id)
        written.processed_uids.append(item.uid)
    database.execute_sql(
        "UPDATE sync_status SET items_total = items_total + ?, unresolved_total = unresolved_total + ? "
        "WHERE mailbox_id = ?", [len(items), written.unresolved, mailbox_id])
    return written


def _known_message_ids(message_ids: list[str]) -> set[str]:
    known: set[str] = set()
    unique = list(dict.fromkeys(message_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        marks = ",".join("?" * len(chunk))
        known.update(row[0] for row in database.execute_sql(
            f"SELECT message_id FROM email_activity WHERE message_id IN ({marks}) AND state <> ?",
            [*chunk, UNRESOLVED]).fetchall())
    return known


def _activity(message: ParsedMessage, state: str, mailbox_id: int, received_on: datetime, now: datetime) -> int:
    """The id of the incoming activity with this Message-ID, created if there is none (R25)."""
    row = database.execute_sql(
        "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, sent_on, received_on, "
        "size, attachments, preview, in_reply_to, problem, mailbox_id, created_on) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        [INCOMING, state, message.message_id, message.sender, json.dumps(message.to), json.dumps(message.cc),
         message.subject, message.sent_on, received_on, message.size,
         json.dumps([{"name": name, "size": size} for name, size in message.attachments]), message.preview,
         " ".join(message.in_reply_to), message.problem, mailbox_id, now]).fetchone()
    if row is not None:
        return row[0]
    existing = database.execute_sql(
        "SELECT id, state FROM email_activity WHERE direction = ? AND message_id = ?",
        [INCOMING, message.message_id]).fetchone()
    if existing[1] == UNRESOLVED and state == RECEIVED:  # another mailbox resolved it
        database.execute_sql("UPDATE email_activity SET state = ? WHERE id = ?", [RECEIVED, existing[0]])
    return existing[0]
