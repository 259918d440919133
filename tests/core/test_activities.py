"""Email activities as recorded by a cycle's transaction (R24, R25) and as the faces list and show
them, on the real database of the suite's backend."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import peewee
import psycopg2
import pytest

from mbxtui.core.errors import InvalidInput, NotFound
from mbxtui.core.models import database
from mbxtui.core.services import activities, mailboxes, users
from mbxtui.core.sync import store
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party

WHEN = datetime(2026, 12, 6, 8, 0, 0)
INTEGRITY_ERRORS = (peewee.IntegrityError, sqlite3.IntegrityError, psycopg2.IntegrityError)


@pytest.fixture
def support(admin) -> int:
    """The queue support@corp.test and its mailbox's id, with a sync status row."""
    users.add_user(admin, "Owner", "owner@corp.test")
    users.add_queue(admin, "Support", "support@corp.test", "owner@corp.test")
    mailbox_id = mailboxes.get("support@corp.test").id
    database.execute_sql("INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, "
                         "unresolved_total) VALUES (?, 'idle', 0, 0, 0)", [mailbox_id])
    return mailbox_id


def received(uid: int, subject: str, **fields) -> store.Fetched:
    return store.Fetched(uid, WHEN, ParsedMessage(message_id=f"<{uid}@corp.test>", subject=subject,
                                                   sender="ann@outside.test", to=["support@corp.test"], **fields))


def record(mailbox_id: int, last_uid: int, items: list[store.Fetched], party: Party | None = None) -> store.BatchWritten:
    queue_id = mailboxes.get("support@corp.test").queue_id
    return store.record_batch(mailbox_id, "INBOX", 77, last_uid, items, party or Party(None, queue_id, "all"),
                              None, WHEN)


def test_a_batch_writes_activities_receipts_parties_and_the_checkpoint_together(admin, support):
    written = record(support, 3, [received(1, "One"), received(3, "Three")])
    assert (written.recorded, written.processed_uids) == (2, [1, 3])
    assert store.checkpoint(support, "INBOX") == store.Checkpoint(77, 3)
    assert database.execute_sql("SELECT items_total FROM sync_status").fetchone()[0] == 2
    again = record(support, 4, [received(1, "One again")])  # the same Message-ID read once more
    assert again.recorded == 0
    assert activities.list_activities(admin)["total"] == 2


def test_a_batch_that_fails_leaves_neither_activities_nor_checkpoint(admin, support):
    with pytest.raises(INTEGRITY_ERRORS):
        record(support, 5, [received(1, "One"), received(2, "Two", size=None)])  # NOT NULL: refused
    assert store.checkpoint(support, "INBOX") is None
    assert activities.list_activities(admin)["total"] == 0


def test_the_listing_filters_and_orders_newest_first(admin, support):
    record(support, 3, [received(1, "Invoice March"), received(2, "Hello"),
                        received(3, "Re: invoice", in_reply_to=["<1@corp.test>"])])
    assert [row["subject"] for row in activities.list_activities(admin)["rows"]] == [
        "Re: invoice", "Hello", "Invoice March"]
    found = activities.list_activities(admin, text="INVOICE", limit=1)
    assert found["total"] == 2 and [row["subject"] for row in found["rows"]] == ["Re: invoice"]
    assert activities.list_activities(admin, mailbox="support@corp.test")["total"] == 3
    assert activities.list_activities(admin, regarding="Support@corp.test")["total"] == 3
    assert activities.list_activities(admin, regarding="owner@corp.test")["total"] == 0
    assert activities.list_activities(admin, direction="outgoing")["total"] == 0
    assert activities.list_activities(admin, state="received")["total"] == 3
    row = activities.list_activities(admin, text="hello")["rows"][0]
    assert set(row) == {"id", "message_id", "direction", "state", "subject", "sender", "to", "cc", "parties",
                        "received_on", "sent_on", "size", "attachments"}
    assert row["parties"] == ["support@corp.test"] and row["received_on"] == "2026-12-06 08:00:00"


def test_bad_filters_are_refused_with_a_sentence(admin, support):
    with pytest.raises(InvalidInput, match="state"):
        activities.list_activities(admin, state="lost")
    with pytest.raises(InvalidInput, match="limit"):
        activities.list_activities(admin, limit=-1)
    with pytest.raises(NotFound, match="no mailbox has the address nobody@corp.test"):
        activities.list_activities(admin, mailbox="nobody@corp.test")
    with pytest.raises(NotFound, match="no email activity has the id 99"):
        activities.show_activity(admin, 99)


def test_show_gives_the_preview_the_mailboxes_and_why_a_message_was_unparseable(admin, support):
    record(support, 2, [received(1, "Text", preview="line one\nline two", attachments=[("a.pdf", 10)]),
                        store.Fetched(2, WHEN, ParsedMessage(message_id="<d@digest.mbxtui.invalid>", size=9,
                                                             problem="the message has no headers"))])
    text, broken = sorted(activities.list_activities(admin)["rows"], key=lambda row: row["id"])
    shown = activities.show_activity(admin, text["id"])
    assert shown["preview"] == "line one\nline two" and shown["mailboxes"] == ["support@corp.test"]
    assert shown["attachments"] == [{"name": "a.pdf", "size": 10}]
    assert broken["state"] == "unparseable"
    assert activities.show_activity(admin, broken["id"])["problem"] == "the message has no headers"


def test_a_viewer_may_read_activities(actors, support):
    record(support, 1, [received(1, "Seen by all")])
    assert activities.list_activities(actors.viewer)["total"] == 1
