"""What a cycle writes: the activities of a batch of messages with the checkpoint past them, in one
transaction (R24, R25): for IMAP the folder's UIDVALIDITY and last UID, for POP3 the UIDL values
seen; and the reads a cycle needs before it starts."""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator, TypeVar

from mbxtui.core.db import drop_connection, write_transaction
from mbxtui.core.enums import ActivityDirection, ActivityState
from mbxtui.core.jobs.queue import row_by_name, rows_by_name
from mbxtui.core.models import database
from mbxtui.core.sql_lists import chunks, in_list_chunks, row_placeholders
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party, effective_tracking, route, tracked

INCOMING = ActivityDirection.INCOMING.value
RECEIVED, UNRESOLVED, UNPARSEABLE = (ActivityState.RECEIVED.value, ActivityState.UNRESOLVED.value,
                                    ActivityState.UNPARSEABLE.value)


Returned = TypeVar("Returned")
_routing = threading.local()


@contextmanager
def on_database_thread(executor: Executor | None) -> Iterator[None]:
    """Within: this thread's reads and writes of a cycle (the functions below) run on ``executor``,
    one thread with one database connection, and this thread waits for each. The writes queue for
    one write lock whatever thread sends them; sent from one thread, the pool's threads need no
    connection of their own (PostgreSQL: one connection a pass instead of one a pool thread)."""
    _routing.executor = executor
    try:
        yield
    finally:
        _routing.executor = None


def _routed(function: Callable[..., Returned]) -> Callable[..., Returned]:
    @functools.wraps(function)
    def routed(*args: Any, **kwargs: Any) -> Returned:
        executor = getattr(_routing, "executor", None)
        if executor is None:
            return function(*args, **kwargs)
        return executor.submit(_dropping_on_error, function, args, kwargs).result()

    return routed


def on_thread(executor: Executor, function: Callable[..., Returned], *args: Any) -> Returned:
    """``function(*args)`` run on ``executor``'s thread (a pass's database thread), waited for."""
    return executor.submit(_dropping_on_error, function, args, {}).result()


def _dropping_on_error(function: Callable[..., Returned], args: tuple, kwargs: dict) -> Returned:
    try:
        return function(*args, **kwargs)
    except ClaimLost:
        raise
    except Exception:
        drop_connection()  # it may be broken: the next call connects anew
        raise


class ClaimLost(Exception):
    """The mailbox is no longer claimed by the worker writing for it: its lease ran out while it was
    cut off or paused, and another worker may have claimed and processed it since."""


def _still_held(mailbox_id: int, holder: str | None) -> None:
    """Inside the caller's write transaction: raise ClaimLost unless ``holder`` still claims the
    mailbox (None: a write outside any worker's claim). Every claim is taken under the same write
    lock, so no other worker can claim it between this check and the commit."""
    if holder is None:
        return
    row = database.execute_sql("SELECT worker FROM sync_status WHERE mailbox_id = ?", [mailbox_id]).fetchone()
    if row is None or row[0] != holder:
        raise ClaimLost(f"mailbox {mailbox_id} is no longer claimed by {holder}")


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
    # R28: what the last commit recorded as processed and no cycle has deleted yet; not part of where
    # reading stands, so two checkpoints at the same place are equal whatever is pending.
    delete_pending: tuple[int, ...] = field(default=(), compare=False)


@dataclass
class BatchWritten:
    processed_uids: list[int] = field(default_factory=list)  # may be deleted now (R28), when asked
    recorded: int = 0  # activities created or given a new party
    unresolved: int = 0


@_routed
def checkpoint(mailbox_id: int, folder: str) -> Checkpoint | None:
    row = row_by_name(database.execute_sql(
        "SELECT uidvalidity, last_uid, delete_pending FROM sync_checkpoint WHERE mailbox_id = ? AND folder = ?",
        [mailbox_id, folder]))
    return None if row is None else _checkpoint(row)


def checkpoints(mailbox_ids: list[int]) -> dict[int, dict[str, Checkpoint]]:
    """The checkpoints of ``mailbox_ids`` by mailbox and folder, read in one query a few hundred
    mailboxes (the runner, once it holds their claims: no other worker writes them meanwhile)."""
    found: dict[int, dict[str, Checkpoint]] = {}
    for marks, chunk in in_list_chunks(mailbox_ids):
        for row in rows_by_name(database.execute_sql(
                "SELECT mailbox_id, folder, uidvalidity, last_uid, delete_pending FROM sync_checkpoint "
                f"WHERE mailbox_id IN ({marks})", chunk)):
            found.setdefault(row["mailbox_id"], {})[row["folder"]] = _checkpoint(row)
    return found


def _checkpoint(row: Mapping[str, Any]) -> Checkpoint:
    pending = tuple(json.loads(row["delete_pending"])) if row["delete_pending"] else ()
    return Checkpoint(row["uidvalidity"], row["last_uid"], pending)


@_routed
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


@dataclass
class _Batch:
    """One ``record_batch`` call, and where its outcome goes when a database thread records it."""

    mailbox_id: int
    folder: str
    uidvalidity: int
    last_uid: int
    items: list[Fetched]
    own: Party | None
    candidates: dict[str, Party] | None
    now: datetime
    deleting: bool
    holder: str | None
    done: Future = field(default_factory=Future)


class _Waiting:
    """The batches sent to one database thread and not yet taken up by it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[_Batch] = []


_waiting_by_thread: weakref.WeakKeyDictionary[Executor, _Waiting] = weakref.WeakKeyDictionary()
_waiting_lock = threading.Lock()


def record_batch(mailbox_id: int, folder: str, uidvalidity: int, last_uid: int, items: list[Fetched],
                 own: Party | None, candidates: dict[str, Party] | None, now: datetime, *,
                 deleting: bool = False, holder: str | None = None) -> BatchWritten:
    """One transaction: each message's activity (see ``_record``), then the checkpoint at
    ``last_uid``; ``deleting`` (the mailbox deletes after processing, R28): with the UIDs this batch
    processed as the ones to delete (those of the batch before were deleted, or the cycle failed
    before reading this one). ``holder``: the worker that must still claim the mailbox (ClaimLost
    otherwise, nothing written), as in every write below.

    On a database thread (``on_database_thread``), the batches of other cycles waiting for it when
    it comes to this one share its transaction (each with its own checkpoint, R24): the cycles of a
    pass end together and queued one transaction each behind the write lock (bench/sync.py).
    Returns once the transaction holding this batch is committed (R28)."""
    batch = _Batch(mailbox_id, folder, uidvalidity, last_uid, items, own, candidates, now, deleting, holder)
    executor = getattr(_routing, "executor", None)
    if executor is None:
        return _record_alone(batch)
    with _waiting_lock:
        waiting = _waiting_by_thread.setdefault(executor, _Waiting())
    with waiting.lock:
        waiting.batches.append(batch)
    executor.submit(_record_waiting, waiting)
    return batch.done.result()


def _record_alone(batch: _Batch) -> BatchWritten:
    with write_transaction():
        _still_held(batch.mailbox_id, batch.holder)
        return _write(batch)


def _write(batch: _Batch) -> BatchWritten:
    written = _record(batch.mailbox_id, batch.folder, batch.items, batch.own, batch.candidates, batch.now)
    pending = written.processed_uids if batch.deleting else []
    _save_checkpoint(batch.mailbox_id, batch.folder, batch.uidvalidity, batch.last_uid, batch.now,
                     json.dumps(pending) if pending else None)
    return written


class _CommitUncertain(Exception):
    """The transaction of several batches failed once all of them were written: it may have been
    committed, so none is written again."""


def _record_waiting(waiting: _Waiting) -> None:
    """On the database thread: every batch waiting, in one transaction. Should it fail before its
    commit (nothing written), each batch is written alone, so that one batch's error stays its own."""
    with waiting.lock:
        batches, waiting.batches = waiting.batches, []
    try:
        _record_each_way(batches)
    finally:  # whatever stopped this thread, no cycle waits for ever
        for batch in batches:
            if not batch.done.done():
                batch.done.set_exception(RuntimeError("the database thread stopped before recording the batch"))


def _record_each_way(batches: list[_Batch]) -> None:
    if len(batches) > 1:
        try:
            outcomes = _record_together(batches)
        except _CommitUncertain as uncertain:
            drop_connection()
            for batch in batches:
                batch.done.set_exception(uncertain.__cause__ or uncertain)
            return
        except Exception:
            drop_connection()  # it may be broken: the batches alone connect anew
        else:
            for batch, outcome in zip(batches, outcomes):
                if isinstance(outcome, ClaimLost):
                    batch.done.set_exception(outcome)
                else:
                    batch.done.set_result(outcome)
            return
    for batch in batches:  # none when an earlier call took this one up
        try:
            batch.done.set_result(_record_alone(batch))
        except ClaimLost as lost:
            batch.done.set_exception(lost)
        except BaseException as exc:
            drop_connection()
            batch.done.set_exception(exc)


def _record_together(batches: list[_Batch]) -> list[BatchWritten | ClaimLost]:
    """One transaction: the batches of mailbox still claimed by their holder, in order (the
    others: ClaimLost, nothing of theirs written)."""
    ids = list(dict.fromkeys(batch.mailbox_id for batch in batches))
    written_all = False
    try:
        with write_transaction():
            holders: dict[int, str | None] = {}
            for marks, chunk in in_list_chunks(ids):
                holders.update(database.execute_sql(
                    f"SELECT mailbox_id, worker FROM sync_status WHERE mailbox_id IN ({marks})", chunk).fetchall())
            outcomes: list[BatchWritten | ClaimLost] = []
            for batch in batches:
                if batch.holder is not None and holders.get(batch.mailbox_id) != batch.holder:
                    outcomes.append(ClaimLost(f"mailbox {batch.mailbox_id} is no longer claimed by {batch.holder}"))
                else:
                    outcomes.append(_write(batch))
            written_all = True
    except Exception as exc:
        if written_all:
            raise _CommitUncertain(str(exc)) from exc
        raise
    return outcomes


@_routed
def clear_delete_pending(mailbox_id: int, folder: str, *, holder: str | None = None) -> None:
    """R28: the UIDs the last commit left to delete are deleted (or no longer the folder's)."""
    with write_transaction():
        _still_held(mailbox_id, holder)
        database.execute_sql("UPDATE sync_checkpoint SET delete_pending = NULL WHERE mailbox_id = ? AND folder = ?",
                             [mailbox_id, folder])


@_routed
def save_checkpoint(mailbox_id: int, folder: str, uidvalidity: int, last_uid: int, now: datetime, *,
                    holder: str | None = None) -> None:
    """A checkpoint alone, in a transaction of its own."""
    with write_transaction():
        _still_held(mailbox_id, holder)
        _save_checkpoint(mailbox_id, folder, uidvalidity, last_uid, now)


def _save_checkpoint(mailbox_id: int, folder: str, uidvalidity: int, last_uid: int, now: datetime,
                     delete_pending: str | None = None) -> None:
    database.execute_sql(
        "INSERT INTO sync_checkpoint (mailbox_id, folder, uidvalidity, last_uid, updated_on, delete_pending) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (mailbox_id, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
        "last_uid = excluded.last_uid, updated_on = excluded.updated_on, delete_pending = excluded.delete_pending",
        [mailbox_id, folder, uidvalidity, last_uid, now, delete_pending])


@_routed
def record_pop3_batch(mailbox_id: int, folder: str, items: list[Fetched], seen: list[str], own: Party | None,
                      candidates: dict[str, Party] | None, now: datetime, *,
                      keys_of: Mapping[int, str] | None = None, holder: str | None = None) -> BatchWritten:
    """One transaction: each message's activity (see ``_record``), then the keys of the messages
    this batch read or passed over (``seen``: their UIDLs, or Message-IDs where the server has no
    UIDL), so that no later cycle reads them again. ``keys_of``: the key of each item by its
    message number; the keys of the items processed are marked so (R28: a later cycle deletes
    what this one could not)."""
    with write_transaction():
        _still_held(mailbox_id, holder)
        written = _record(mailbox_id, folder, items, own, candidates, now)
        processed = {keys_of[number] for number in written.processed_uids if number in keys_of} if keys_of else set()
        for chunk in chunks(seen, 200):  # four values a row: under SQLite's 999 at any version
            database.execute_sql(
                "INSERT INTO sync_seen_uidl (mailbox_id, uidl, seen_on, processed) VALUES "
                f"{row_placeholders(4, chunk)} ON CONFLICT DO NOTHING",
                [value for key in chunk for value in (mailbox_id, key, now, int(key in processed))])
    return written


@_routed
def seen_uidls(mailbox_id: int) -> dict[str, bool]:
    """The keys a mailbox has seen, each with whether its message was processed (not passed over)."""
    return {row[0]: bool(row[1]) for row in database.execute_sql(
        "SELECT uidl, processed FROM sync_seen_uidl WHERE mailbox_id = ?", [mailbox_id]).fetchall()}


@_routed
def forget_uidls(mailbox_id: int, gone: set[str], *, holder: str | None = None) -> None:
    """Forget the keys of messages no longer on the server: the table holds what the maildrop
    holds, not every message it ever held."""
    if not gone:
        return
    listed = sorted(gone)
    with write_transaction():
        _still_held(mailbox_id, holder)
        for marks, chunk in in_list_chunks(listed):
            database.execute_sql(
                f"DELETE FROM sync_seen_uidl WHERE mailbox_id = ? AND uidl IN ({marks})",
                [mailbox_id, *chunk])


def _record(mailbox_id: int, folder: str, items: list[Fetched], own: Party | None,
            candidates: dict[str, Party] | None, now: datetime) -> BatchWritten:
    """Inside the caller's transaction: each message's activity (or a new receipt and parties on
    the one already recorded under its Message-ID) and the mailbox's totals. A message tracked for
    nobody is processed (status only) without an activity; a forward mailbox's message for nobody
    is ``unresolved``. A few multi-row statements for the whole batch: the transaction holds the
    write lock that every cycle waits for."""
    written = BatchWritten()
    references = [ref for item in items for ref in item.message.in_reply_to]
    tracked_ids = _known_message_ids(references)
    kept: list[tuple[Fetched, str, list[Party]]] = []
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
        kept.append((item, state, keep))
        written.unresolved += state == UNRESOLVED
        tracked_ids.add(message.message_id)
        written.processed_uids.append(item.uid)
    ids = _activities(kept, mailbox_id, now)
    receipts: dict[int, tuple] = {}
    for item, _, _ in kept:  # the first message of each activity; its copies conflict all the same
        activity_id = ids[item.message.message_id]
        receipts.setdefault(activity_id, (activity_id, mailbox_id, folder, item.uid, item.received_on))
    parties = list(dict.fromkeys((ids[item.message.message_id], party.user_id, party.queue_id)
                                 for item, _, keep in kept for party in keep))
    new_receipts = {row[0] for row in _insert_returning(
        "activity_receipt", ("activity_id", "mailbox_id", "folder", "uid", "received_on"), list(receipts.values()),
        "activity_id")}
    new_parties = set(_insert_returning("activity_party", ("activity_id", "user_id", "queue_id"), parties,
                                        "activity_id, user_id, queue_id"))
    for item, _, keep in kept:  # recorded: a message that gave its activity a receipt or a party
        activity_id = ids[item.message.message_id]
        recorded = activity_id in new_receipts
        new_receipts.discard(activity_id)
        for party in keep:
            key = (activity_id, party.user_id, party.queue_id)
            if key in new_parties:
                new_parties.discard(key)
                recorded = True
        written.recorded += recorded
    database.execute_sql(
        "UPDATE sync_status SET items_total = items_total + ?, unresolved_total = unresolved_total + ? "
        "WHERE mailbox_id = ?", [len(items), written.unresolved, mailbox_id])
    return written


_ACTIVITY_COLUMNS = ("direction", "state", "message_id", "sender", '"to"', "cc", "subject", "sent_on", "received_on",
                     "size", "attachments", "preview", "in_reply_to", "problem", "mailbox_id", "created_on")
_MOST_VALUES = 900  # bound parameters per statement: under SQLite's 999 at any version


def _activities(kept: list[tuple[Fetched, str, list[Party]]], mailbox_id: int, now: datetime) -> dict[str, int]:
    """Message-ID -> id of its incoming activity, created where there is none (R25). A message
    received here resolves an unresolved activity of the same Message-ID, recorded before or
    earlier in this batch."""
    first: dict[str, tuple[Fetched, str]] = {}
    resolving: set[str] = set()
    for item, state, _ in kept:
        message_id = item.message.message_id
        first.setdefault(message_id, (item, state))
        if state == RECEIVED:
            resolving.add(message_id)
    rows = []
    for message_id, (item, state) in first.items():
        message = item.message
        if state == UNRESOLVED and message_id in resolving:
            state = RECEIVED
        rows.append((INCOMING, state, message_id, message.sender, json.dumps(message.to), json.dumps(message.cc),
                     message.subject, message.sent_on, item.received_on, message.size,
                     json.dumps([{"name": name, "size": size} for name, size in message.attachments]),
                     message.preview, " ".join(message.in_reply_to), message.problem, mailbox_id, now))
    ids: dict[str, int] = {}
    for chunk in chunks(rows, _MOST_VALUES // len(_ACTIVITY_COLUMNS)):
        ids.update((row[1], row[0]) for row in database.execute_sql(
            f"INSERT INTO email_activity ({', '.join(_ACTIVITY_COLUMNS)}) VALUES "
            f"{row_placeholders(len(_ACTIVITY_COLUMNS), chunk)} "
            "ON CONFLICT DO NOTHING RETURNING id, message_id", [value for row in chunk for value in row]).fetchall())
    existing = [message_id for message_id in first if message_id not in ids]
    for marks, chunk in in_list_chunks(existing, _MOST_VALUES - 1):
        for activity_id, message_id, state in database.execute_sql(
                f"SELECT id, message_id, state FROM email_activity WHERE direction = ? AND message_id IN ({marks})",
                [INCOMING, *chunk]).fetchall():
            ids[message_id] = activity_id
            if state == UNRESOLVED and message_id in resolving:  # another mailbox's message, resolved here
                database.execute_sql("UPDATE email_activity SET state = ? WHERE id = ?", [RECEIVED, activity_id])
    return ids


def _insert_returning(table: str, columns: tuple[str, ...], rows: list[tuple], returned: str) -> list[tuple]:
    """Insert ``rows``, those already there left alone; the ``returned`` columns of those inserted."""
    found: list[tuple] = []
    for chunk in chunks(rows, _MOST_VALUES // len(columns)):
        found.extend(tuple(row) for row in database.execute_sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {row_placeholders(len(columns), chunk)} "
            f"ON CONFLICT DO NOTHING RETURNING {returned}", [value for row in chunk for value in row]).fetchall())
    return found


def _known_message_ids(message_ids: list[str]) -> set[str]:
    known: set[str] = set()
    unique = list(dict.fromkeys(message_ids))
    for marks, chunk in in_list_chunks(unique):
        known.update(row[0] for row in database.execute_sql(
            f"SELECT message_id FROM email_activity WHERE message_id IN ({marks}) AND state <> ?",
            [*chunk, UNRESOLVED]).fetchall())
    return known
