"""The demo's trickle of mail (issue 12, the demo): deterministic for a seed, realistic enough to
show every path of processing (queues, staff in copy, the forward mailbox, attachments, replies),
and delivered into the sandbox's inboxes where a sync pass records it."""

from __future__ import annotations

import sqlite3
import time

from mbxtui.core.sync.runner import SyncRunner
from mbxtui.demo import Demo, seed
from mbxtui.demo.trickle import plan

DELIVERED_WITHIN = 20.0


def test_the_same_seed_gives_the_same_mail_and_each_run_its_own_message_ids():
    organisation = seed.plan()
    first, again = plan(organisation, 60, run="one"), plan(organisation, 60, run="one")
    other_run, other_seed = plan(organisation, 60, run="two"), plan(organisation, 60, run="one", seed_value=7)

    assert first == again
    assert [d.subject for d in other_run] == [d.subject for d in first]
    assert [d.body for d in other_run] == [d.body for d in first]
    assert {d.headers for d in other_run}.isdisjoint(d.headers for d in first), "new Message-IDs every run"
    assert [d.subject for d in other_seed] != [d.subject for d in first]

    kinds = {d.kind for d in first}
    assert kinds == {"new", "attachment", "reply"}
    forwarded = [(inbox, to) for d in first for inbox, to in d.inboxes if inbox == organisation.forward_mailbox]
    assert forwarded and {to for _, to in forwarded} <= set(organisation.forwarded), \
        "staff on forward_mailbox get their copy through the forward mailbox, named by Delivered-To"
    ids = set()
    for delivery in first:
        if delivery.kind == "reply":
            in_reply_to = next(line for line in delivery.headers.splitlines() if line.startswith("In-Reply-To: "))
            assert in_reply_to.split(": ", 1)[1] in ids, "a reply answers an earlier message of the trickle"
        ids.add(next(line for line in delivery.headers.splitlines() if line.startswith("Message-ID: ")).split(": ")[1])
        assert delivery.inboxes[0][0] in organisation.queues.values()


def test_the_trickle_delivers_mail_into_the_sandbox_that_a_sync_pass_records(restarted_demo: Demo):
    count = 16
    trickle = restarted_demo.start_trickle(count, interval=0.05, first_delay=0, run="test")
    deadline = time.monotonic() + DELIVERED_WITHIN
    while trickle.delivered < count:
        assert time.monotonic() < deadline, f"{trickle.delivered} of {count} delivered in time"
        time.sleep(0.05)
    inboxes = sorted({inbox for delivery in trickle.deliveries for inbox, _ in delivery.inboxes})
    landed = sum(b"<trickle.test." in message.data for inbox in inboxes
                 for message in restarted_demo.sandbox.mail.messages(inbox)[1])
    assert landed == sum(len(delivery.inboxes) for delivery in trickle.deliveries)

    summary = SyncRunner(restarted_demo.store).run_once(inboxes, ignore_interval=True)

    assert summary.failed == 0, [m for m in summary.mailboxes if not m.ok]
    with sqlite3.connect(restarted_demo.db_path) as connection:
        recorded = dict(connection.execute("SELECT message_id, subject FROM email_activity "
                                           "WHERE message_id LIKE '<trickle.test.%'").fetchall())
        attachments = [row[0] for row in connection.execute(
            "SELECT attachments FROM email_activity WHERE message_id LIKE '<trickle.test.%'")]
    sent = {line.split(": ", 1)[1]: delivery for delivery in trickle.deliveries
            for line in delivery.headers.splitlines() if line.startswith("Message-ID: ")}
    assert set(recorded) == set(sent), "every message reached a queue, which tracks all of its mail (R27)"
    assert all(recorded[mid] == delivery.subject for mid, delivery in sent.items())
    with_attachment = sum(delivery.kind == "attachment" for delivery in sent.values())
    assert with_attachment and sum(bool(a) and a not in ("[]", "") for a in attachments) == with_attachment
    forward = seed.plan().forward_mailbox
    assert forward in inboxes
    assert not [m for m in restarted_demo.sandbox.mail.messages(forward)[1] if b"<trickle.test." in m.data], \
        "the forward mailbox deleted what it processed (R26, R28), through the sandbox's STORE and EXPUNGE"
    again = SyncRunner(restarted_demo.store).run_once(inboxes, ignore_interval=True)
    assert sum(m.messages for m in again.mailboxes) == 0, "read once"
