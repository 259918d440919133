"""Batches of several cycles waiting together for a pass's database thread share one transaction
(store.record_batch): each still gets its own checkpoint and outcome, a mailbox whose claim was lost
writes nothing, and one batch's error does not cost the others theirs (R24, R25)."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import peewee
import psycopg2
import pytest

from mbxtui.core.models import database
from mbxtui.core.services import mailboxes, users
from mbxtui.core.sync import store
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party

WHEN = datetime(2026, 12, 6, 8, 0, 0)
WORKER = "host:1:sync"
INTEGRITY_ERRORS = (peewee.IntegrityError, sqlite3.IntegrityError, psycopg2.IntegrityError)


@pytest.fixture
def queues(admin) -> dict[str, tuple[int, Party]]:
    """Two queue mailboxes claimed by WORKER: address -> (mailbox id, its party)."""
    users.add_user(admin, "Owner", "owner@corp.test")
    found = {}
    for name in ("support", "sales"):
        users.add_queue(admin, name.title(), f"{name}@corp.test", "owner@corp.test")
        box = mailboxes.get(f"{name}@corp.test")
        database.execute_sql("INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, "
                             "unresolved_total, worker) VALUES (?, 'processing', 0, 0, 0, ?)", [box.id, WORKER])
        found[name] = (box.id, Party(None, box.queue_id, "all"))
    return found


def message(uid: int, to: str, **fields) -> store.Fetched:
    return store.Fetched(uid, WHEN, ParsedMessage(message_id=f"<{uid}.{to}>", subject=f"Message {uid}",
                                                   sender="ann@outside.test", to=[to], **fields))


def record_together(calls: list[tuple]) -> list[object]:
    """Each call's record_batch from a thread of its own, all queued on one database thread before
    it takes any: the outcome of each (a BatchWritten or the exception raised)."""
    database_thread = ThreadPoolExecutor(1)
    gate = threading.Event()
    database_thread.submit(gate.wait, 10)
    outcomes: list[object] = [None] * len(calls)

    def call(index: int) -> None:
        mailbox_id, party, last_uid, items = calls[index]
        with store.on_database_thread(database_thread):
            try:
                outcomes[index] = store.record_batch(mailbox_id, "INBOX", 7, last_uid, items, party, None, WHEN,
                                                     holder=WORKER)
            except Exception as exc:
                outcomes[index] = exc

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    waiting = None
    for _ in range(200):  # bounded: 2 s
        waiting = store._waiting_by_thread.get(database_thread)
        if waiting is not None and len(waiting.batches) == len(calls):
            break
        time.sleep(0.01)
    assert waiting is not None and len(waiting.batches) == len(calls)
    gate.set()
    for thread in threads:
        thread.join(10)
    database_thread.submit(database.close).result()
    database_thread.shutdown()
    return outcomes


def test_batches_waiting_together_each_get_their_activities_and_checkpoint(admin, queues):
    (support, support_party), (sales, sales_party) = queues["support"], queues["sales"]
    outcomes = record_together([(support, support_party, 3, [message(1, "support@corp.test"),
                                                             message(3, "support@corp.test")]),
                                (sales, sales_party, 9, [message(9, "sales@corp.test")])])
    assert [(o.recorded, o.processed_uids) for o in outcomes] == [(2, [1, 3]), (1, [9])]
    assert store.checkpoint(support, "INBOX") == store.Checkpoint(7, 3)
    assert store.checkpoint(sales, "INBOX") == store.Checkpoint(7, 9)
    totals = dict(database.execute_sql("SELECT mailbox_id, items_total FROM sync_status").fetchall())
    assert totals == {support: 2, sales: 1}


def test_a_lost_claim_or_a_failing_batch_costs_the_others_nothing(admin, queues):
    (support, support_party), (sales, sales_party) = queues["support"], queues["sales"]
    database.execute_sql("UPDATE sync_status SET worker = 'another:2:sync' WHERE mailbox_id = ?", [sales])
    lost, kept = record_together([(sales, sales_party, 4, [message(4, "sales@corp.test")]),
                                  (support, support_party, 5, [message(5, "support@corp.test")])])
    assert isinstance(lost, store.ClaimLost) and kept.recorded == 1
    assert store.checkpoint(sales, "INBOX") is None and store.checkpoint(support, "INBOX") == store.Checkpoint(7, 5)

    database.execute_sql("UPDATE sync_status SET worker = ? WHERE mailbox_id = ?", [WORKER, sales])
    refused, kept = record_together([(sales, sales_party, 6, [message(6, "sales@corp.test", size=None)]),  # NOT NULL
                                     (support, support_party, 8, [message(8, "support@corp.test")])])
    assert isinstance(refused, INTEGRITY_ERRORS) and kept.recorded == 1
    assert store.checkpoint(sales, "INBOX") is None and store.checkpoint(support, "INBOX") == store.Checkpoint(7, 8)
    subjects = {row[0] for row in database.execute_sql("SELECT subject FROM email_activity").fetchall()}
    assert subjects == {"Message 5", "Message 8"}
