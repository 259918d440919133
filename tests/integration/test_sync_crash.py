"""A worker killed (SIGKILL: no goodbye, no cleanup) at each point of an IMAP cycle and in the middle
of a send, then a restart once its lease has run out: no message lost, none recorded twice, none
deleted before its commit, none sent twice. The worker is a real ``mbxtui sync --once`` process;
the lab's IMAP front holds one chosen command unanswered, its SMTP front the answer to a message
already delivered, so the process is stopped exactly there (tests/lab/proxies.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mbxtui.core.db import write_transaction
from mbxtui.core.models import Profile, database
from mbxtui.core.services import mailboxes
from mbxtui.core.services.outgoing import queue_email
from mbxtui.core.sync.outgoing import OutgoingRunner, OutgoingSummary
from mbxtui.core.sync.runner import DEFAULT_LEASE_SECONDS, MailboxCycled, SyncRunner
from tests.backends import query
from tests.integration.conftest import Org
from tests.integration.test_sync_incoming import (  # noqa: F401 (lab_profile: a fixture)
    deliver, enable, imap, lab_profile, listed, message, queue_mailbox, server_message_ids, sync,
)
from tests.integration.test_sync_outgoing import from_outside, sender_mailbox, stored
from tests.lab.proxies import ImapFront

pytestmark = pytest.mark.servers

HELD_WITHIN_SECONDS = 30
MESSAGES = 3


def kill_when_held(org: Org, front: ImapFront, login: str, *, commit_held: bool = False) -> None:
    """Run ``sync --once`` for ``login`` and SIGKILL it as soon as the front holds its command; with
    ``commit_held``, only once the server has answered that command, while the test holds the
    database's write lock (the worker has read everything and waits to commit)."""
    worker = org.cli_start("sync", "--once", "--now", login)
    try:
        held = front.held.wait(HELD_WITHIN_SECONDS)
        assert held, f"the cycle never sent {front.hold} (sent {front.commands}): {worker.poll()}"
        assert worker.poll() is None, "the worker ended by itself"
        if commit_held:
            with write_transaction():
                front.release()
                assert front.answered.wait(HELD_WITHIN_SECONDS), "the server never answered the released command"
                worker.kill()
                worker.wait(10)
        worker.kill()
    finally:
        worker.wait(10)
        worker.stdout.close()
        worker.stderr.close()


def restart_after_the_lease(org: Org) -> MailboxCycled:
    """Another cycle, first while the dead worker's lease still runs (it must not take the mailbox
    over), then once it has run out."""
    assert sync(org).mailboxes == [], "the dead worker's lease has not run out: nobody takes its mailbox"
    org.clock.advance(seconds=DEFAULT_LEASE_SECONDS + 60)
    [cycled] = sync(org).mailboxes
    assert cycled.ok, cycled
    return cycled


# (command held, how many of that command pass first, the commit held too, activities committed when killed)
POINTS = {
    "before fetch": ("UID SEARCH", 0, False, 0),
    "mid-fetch, the headers read": ("UID FETCH", 1, False, 0),
    "after the fetch, before the commit": ("UID FETCH", 1, True, 0),
    "after the commit, before delete": ("UID STORE", 0, False, MESSAGES),
    "mid-delete, flagged but not expunged": ("UID EXPUNGE", 0, False, MESSAGES),
    "mid-move to the processed folder": ("UID MOVE", 0, False, MESSAGES),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_an_imap_worker_killed_at_any_point_loses_nothing_records_nothing_twice_deletes_nothing_early(org, point):
    held_command, passing, commit_held, committed = POINTS[point]
    front = held_profile(org)
    moves_to = "Processed" if held_command == "UID MOVE" else None
    Profile.update(processed_folder=moves_to).where(Profile.name == "held").execute()
    [login] = org.lab.add_users(1, "imapkill")
    enable(org, queue_mailbox(org, login, profile="held", delete_after_processing=True))
    ids = [f"<imap-kill-{number}@lab.test>" for number in range(MESSAGES)]
    for number, message_id in enumerate(ids):
        deliver(org, login, message("k@outside.test", login, f"Kill {number}", message_id=message_id))

    front.holding(held_command, after=passing)
    kill_when_held(org, front, login, commit_held=commit_held)
    assert listed(org)["total"] == committed
    assert sorted(server_message_ids(org, login)) == ids, "nothing deleted by the killed worker"

    front.hold = None
    cycled = restart_after_the_lease(org)
    assert cycled.messages == MESSAGES - committed
    assert sorted(row["message_id"] for row in listed(org)["rows"]) == ids, "every message recorded"
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == MESSAGES, "none twice"
    assert query(org.db_path, "SELECT items_total FROM sync_status")[0][0] == MESSAGES
    assert server_message_ids(org, login) == [], "deleted once committed, by the cycle after the restart"
    if moves_to:
        with imap(org, login) as client:
            client.select_folder(moves_to, readonly=True)
            assert len(client.search(["ALL"])) == MESSAGES, "moved there once each"
    assert tuple(query(org.db_path, "SELECT worker, state FROM sync_status")[0]) == (None, "idle")

    org.clock.advance(minutes=1)
    [again] = sync(org).mailboxes
    assert (again.ok, again.messages, again.deleted) == (True, 0, 0), again
    assert listed(org)["total"] == MESSAGES


def test_a_worker_killed_mid_send_leaves_the_email_uncertain_and_it_is_never_sent_twice(org):
    front = org.lab.smtp_front()
    org.profile("heldsend", outgoing_port=front.port, outgoing_tls="implicit", verify_delivery=False,
                timeout_seconds=30)
    sender, recipient = org.lab.add_users(2, "sendkill")
    sender_mailbox(org, sender, "heldsend")
    activity_id = queue_email(org.admin, sender, [recipient], [], "Killed mid-send", "Sent at most once.")

    front.hold_data_answer = True  # delivered, but the sender never hears so
    worker = org.cli_start("sync", "--once", "--now", sender)
    try:
        assert front.held.wait(HELD_WITHIN_SECONDS), "the worker never finished sending the message"
        assert worker.poll() is None, "the worker ended by itself"
        worker.kill()
    finally:
        worker.wait(10)
        worker.stdout.close()
        worker.stderr.close()
    front.hold_data_answer = False
    assert stored(org, activity_id)["state"] == "sending"
    assert [m["Subject"] for m in from_outside(org, recipient)] == ["Killed mid-send"]

    def restart() -> OutgoingSummary:
        SyncRunner(org.store, clock=org.clock).run_once([sender], ignore_interval=True)
        return OutgoingRunner(org.store, clock=org.clock).run_once([sender])

    assert restart().recovered_uncertain == 0, "the dead worker's lease has not run out: it may be alive"
    assert stored(org, activity_id)["state"] == "sending"
    org.clock.advance(seconds=DEFAULT_LEASE_SECONDS + 60)
    assert restart().recovered_uncertain == 1
    row = stored(org, activity_id)
    assert row["state"] == "uncertain" and "may have been sent" in row["last_error_text"]
    org.clock.advance(hours=1)
    again = restart()
    assert (again.sent, again.recovered_uncertain) == (0, 0), "an uncertain email is never sent by itself"
    assert stored(org, activity_id)["state"] == "uncertain"
    assert [m["Subject"] for m in from_outside(org, recipient)] == ["Killed mid-send"], "sent once, never twice"


def held_profile(org: Org) -> ImapFront:
    """A profile whose IMAP server is reached through a front that can hold a command."""
    front = org.lab.imap_front()
    org.profile("held", incoming_port=front.port, verify_delivery=False, timeout_seconds=30)
    return front


def cut_short_after_the_commit(org: Org, front: ImapFront, login: str) -> None:
    """A cycle of ``login`` killed once it has committed, before it deletes anything (R28)."""
    front.holding("UID STORE")
    kill_when_held(org, front, login)
    front.hold = None


def test_processed_mail_left_in_the_inbox_is_deleted_by_the_next_cycle_and_mail_never_read_stays(org):
    front = held_profile(org)
    [login] = org.lab.add_users(1, "leftover")
    enable(org, queue_mailbox(org, login, profile="held", process_email_after="2026-06-01T00:00:00",
                              delete_after_processing=True))
    with imap(org, login) as client:
        client.append("INBOX", message("a@outside.test", login, "Before", message_id="<before@lab.test>"),
                      msg_time=datetime(2026, 5, 31, 23, 0, tzinfo=timezone.utc))
        client.append("INBOX", message("b@outside.test", login, "After", message_id="<after@lab.test>"),
                      msg_time=datetime(2026, 6, 1, 1, 0, tzinfo=timezone.utc))
    cut_short_after_the_commit(org, front, login)
    assert [row["subject"] for row in listed(org)["rows"]] == ["After"], "committed before the kill"
    assert sorted(server_message_ids(org, login)) == ["<after@lab.test>", "<before@lab.test>"]

    cleaned = restart_after_the_lease(org)
    assert (cleaned.ok, cleaned.messages, cleaned.deleted) == (True, 0, 1), cleaned
    assert server_message_ids(org, login) == ["<before@lab.test>"], "received before the reading date: never read, kept"
    assert [row["subject"] for row in listed(org)["rows"]] == ["After"]


def test_a_cycle_cut_short_has_only_what_it_recorded_deleted_and_mail_tracked_for_nobody_stays(org):
    front = held_profile(org)
    [login] = org.lab.add_users(1, "leftreplies")
    enable(org, queue_mailbox(org, login, profile="held", delete_after_processing=True))
    deliver(org, login, message("e@outside.test", login, "Question", message_id="<left-q@lab.test>"))
    [first] = sync(org).mailboxes
    assert (first.ok, first.messages, first.deleted) == (True, 1, 1), first

    mailboxes.edit(org.admin, login, tracking="replies")
    deliver(org, login, message("e@outside.test", login, "Re: Question", message_id="<left-re@lab.test>",
                                extra="In-Reply-To: <left-q@lab.test>\r\n"))
    deliver(org, login, message("f@outside.test", login, "Newsletter", message_id="<left-news@lab.test>"))
    cut_short_after_the_commit(org, front, login)
    assert sorted(server_message_ids(org, login)) == ["<left-news@lab.test>", "<left-re@lab.test>"]

    cycled = restart_after_the_lease(org)
    assert (cycled.messages, cycled.deleted) == (0, 1), cycled
    assert server_message_ids(org, login) == ["<left-news@lab.test>"], "tracked for nobody: never recorded, kept"
    assert sorted(row["subject"] for row in listed(org)["rows"]) == ["Question", "Re: Question"]
    assert query(org.db_path, "SELECT delete_pending FROM sync_checkpoint")[0][0] is None

    org.clock.advance(minutes=1)
    [again] = sync(org).mailboxes
    assert (again.ok, again.messages, again.deleted) == (True, 0, 0), again
    assert server_message_ids(org, login) == ["<left-news@lab.test>"]


@pytest.mark.parametrize("moves_to", [None, "Processed"])
def test_left_behind_uids_already_gone_from_the_server_are_passed_over(org, lab_profile, moves_to):
    """The cycle cut short may have expunged or moved its messages before it died (or someone else
    did): deleting or moving them again is a no-op, and the mail after them is read as always."""
    Profile.update(processed_folder=moves_to).where(Profile.name == "lab").execute()
    [login] = org.lab.add_users(1, "leftgone")
    enable(org, queue_mailbox(org, login, delete_after_processing=True))
    deliver(org, login, message("a@outside.test", login, "First", message_id="<gone-1@lab.test>"))
    [first] = sync(org).mailboxes
    assert (first.ok, first.deleted) == (True, 1), first
    deliver(org, login, message("b@outside.test", login, "Second", message_id="<gone-2@lab.test>"))
    with write_transaction():
        database.execute_sql("UPDATE sync_checkpoint SET delete_pending = '[1, 999]'")

    org.clock.advance(minutes=1)
    [again] = sync(org).mailboxes
    assert (again.ok, again.messages) == (True, 1), again
    assert server_message_ids(org, login) == []
    assert [row["subject"] for row in listed(org)["rows"]] == ["Second", "First"]
    assert query(org.db_path, "SELECT delete_pending FROM sync_checkpoint")[0][0] is None
