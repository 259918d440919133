"""Incoming processing over POP3 (R24–R28) against the lab's Dovecot, which serves the same Maildirs
over IMAP and POP3: mail put in with IMAP APPEND, read by the sync runner over POP3 (UIDL, TOP,
DELE), and what lands in the database read back. A server without UIDL is Dovecot behind the lab's
POP3 front that refuses UIDL (tests/lab/proxies.py)."""

from __future__ import annotations

import base64
import itertools
import time
import tracemalloc
from typing import Callable

import pytest

from mbxtui.core.models import Profile, database
from mbxtui.core.services import activities, bulk, credentials, mailboxes
from mbxtui.core.services.selection import Selection
from tests.backends import query
from tests.core.support import inserts_refused
from tests.hardening.hostile import Conversation, ConversationOver, HostileServer
from tests.integration.conftest import Org
from tests.integration.test_sync_incoming import (
    BROKEN, deliver, enable, imap, listed, message, queue_mailbox, server_message_ids, sync,
)

pytestmark = pytest.mark.servers

# The lab's messages carry a fixed Date; POP3 has no INTERNALDATE, so the mailboxes here read
# everything received after this.
SINCE = "2026-01-01T00:00:00"


@pytest.fixture
def pop_profile(org: Org) -> str:
    org.profile("pop", type="pop3_smtp", incoming_port=org.lab.ports["pop3s"], verify_delivery=False)
    return "pop"


def pop_queue(org: Org, login: str, profile: str = "pop", **edits: object) -> str:
    edits.setdefault("process_email_after", SINCE)
    return queue_mailbox(org, login, profile=profile, **edits)


def seen_count(org: Org) -> int:
    return query(org.db_path, "SELECT count(*) FROM sync_seen_uidl")[0][0]


def test_pop3_reads_new_mail_once_across_cycles_with_top_never_retr(org):
    front = org.lab.pop3_front()
    org.profile("pop", type="pop3_smtp", incoming_port=front.port, verify_delivery=False)
    [login] = org.lab.add_users(1, "popq")
    enable(org, pop_queue(org, login))
    big_text = "All work and no play. " * 5000  # 110 KB: only the first lines are read
    deliver(org, login, message("Ann <ann@outside.test>", login, "Invoice 42", extra="Cc: cc@outside.test\r\n",
                                body=big_text))
    deliver(org, login, message("bob@outside.test", login, "Second"))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.messages, cycled.recorded, cycled.deleted) == (True, 2, 2, 0), cycled
    rows = {row["subject"]: row for row in listed(org, mailbox=login)["rows"]}
    assert set(rows) == {"Invoice 42", "Second"}
    invoice = rows["Invoice 42"]
    assert invoice["sender"] == "ann@outside.test" and invoice["cc"] == ["cc@outside.test"]
    assert invoice["parties"] == [login] and invoice["state"] == "received" and invoice["size"] > 110_000
    preview = activities.show_activity(org.admin, invoice["id"])["preview"]
    assert preview.startswith("All work and no play.") and len(preview) == 4000
    assert "RETR" not in front.commands and "TOP" in front.commands and "UIDL" in front.commands
    assert seen_count(org) == 2

    again = sync(org)
    assert [(m.ok, m.messages, m.recorded) for m in again.mailboxes] == [(True, 0, 0)]
    assert front.commands.count("TOP") == 4, "the next cycle reads no header again: UIDL says it was seen"
    deliver(org, login, message("c@outside.test", login, "Third"))
    assert [m.messages for m in sync(org).mailboxes] == [1]
    assert listed(org)["total"] == 3
    assert len(server_message_ids(org, login)) == 3, "this queue does not delete after processing"
    assert tuple(query(org.db_path, "SELECT state, items_total FROM sync_status")[0]) == ("idle", 3)


def test_delete_after_processing_deletes_only_what_was_committed(org, pop_profile):
    [login] = org.lab.add_users(1, "popdel")
    enable(org, pop_queue(org, login, delete_after_processing=True))
    deliver(org, login, message("j@outside.test", login, "Delete me", message_id="<pop-del-1@lab.test>"))
    deliver(org, login, message("k@outside.test", login, "Me too", message_id="<pop-del-2@lab.test>"))

    with inserts_refused("sync_seen_uidl"):
        failed = sync(org)
    assert [(m.ok, m.deleted) for m in failed.mailboxes] == [(False, 0)]
    assert sorted(server_message_ids(org, login)) == ["<pop-del-1@lab.test>", "<pop-del-2@lab.test>"], \
        "nothing committed: nothing deleted"
    assert listed(org)["total"] == 0, "the activities roll back with the UIDLs seen"

    org.clock.advance(hours=1)
    done = sync(org)
    assert [(m.ok, m.recorded, m.deleted) for m in done.mailboxes] == [(True, 2, 2)]
    assert server_message_ids(org, login) == []
    assert listed(org)["total"] == 2
    assert sync(org).mailboxes[0].messages == 0
    assert seen_count(org) == 0, "the UIDLs of messages gone from the server are forgotten"


def test_many_messages_are_read_in_batches_and_deleted_by_the_one_quit(org, pop_profile):
    [login] = org.lab.add_users(1, "popmany")
    enable(org, pop_queue(org, login, delete_after_processing=True))
    with imap(org, login) as client:
        for number in range(30):
            client.append("INBOX", message("n@outside.test", login, f"Many {number:02}"))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.messages, cycled.recorded, cycled.deleted) == (True, 30, 30, 30), cycled
    assert server_message_ids(org, login) == []
    assert listed(org, limit=100)["total"] == 30
    assert seen_count(org) == 30, "forgotten by the next cycle, once the server no longer lists them"
    assert [m.messages for m in sync(org).mailboxes] == [0]
    assert seen_count(org) == 0


def test_profile_credentials_read_each_mailbox_acting_for_it_over_pop3(org):
    front = org.lab.pop3_front()
    org.profile("popmaster", type="pop3_smtp", incoming_port=front.port, incoming_auth="profile",
                outgoing_auth="profile", username=org.lab.master_login, verify_delivery=False)
    first, second = org.lab.add_users(2, "popmaster")
    org.bulk_mailboxes([first, second], "popmaster", outgoing="none")
    for login in (first, second):
        mailboxes.edit(org.admin, login, process_email_after=SINCE)
    enable(org, first, second)
    deliver(org, first, message("a@outside.test", first, "For the first"))
    deliver(org, second, message("b@outside.test", second, "For the second"))

    summary = sync(org)
    assert sorted((m.email, m.ok, m.messages) for m in summary.mailboxes) == [(first, True, 1), (second, True, 1)]
    assert "AUTH" in front.commands and "USER" not in front.commands, "AUTH PLAIN with the mailbox as authzid"


def test_a_batch_that_fails_still_lets_the_server_delete_the_batches_committed_before_it(org, pop_profile):
    [login] = org.lab.add_users(1, "poppart")
    enable(org, pop_queue(org, login, delete_after_processing=True))
    with imap(org, login) as client:
        for number in range(15):  # a batch of 12, then one of 3
            client.append("INBOX", message("p@outside.test", login, f"Part {number:02}"))

    with inserts_refused("sync_seen_uidl", once_it_holds=12):
        [failed] = sync(org).mailboxes
    assert not failed.ok, failed
    assert len(server_message_ids(org, login)) == 3, "the first batch's 12, committed, are deleted all the same"
    assert listed(org, limit=100)["total"] == 12

    org.clock.advance(hours=1)
    assert [(m.ok, m.messages, m.deleted) for m in sync(org).mailboxes] == [(True, 3, 3)]
    assert server_message_ids(org, login) == [] and listed(org, limit=100)["total"] == 15


@pytest.mark.parametrize("killed_at", ["UIDL", "TOP", "DELE", "QUIT"],
                         ids=["before fetch", "mid-fetch", "after commit mid-delete", "before QUIT"])
def test_a_worker_killed_at_any_point_of_a_cycle_loses_nothing_and_records_nothing_twice(org, killed_at):
    front = org.lab.pop3_front()
    org.profile("pop", type="pop3_smtp", incoming_port=front.port, verify_delivery=False, timeout_seconds=30)
    [login] = org.lab.add_users(1, "popkill")
    enable(org, pop_queue(org, login, delete_after_processing=True))
    for number in range(3):
        deliver(org, login, message("k@outside.test", login, f"Kill {number}", message_id=f"<kill-{number}@lab.test>"))

    front.commands.clear()  # Test & Enable's own conversation
    front.hold = killed_at
    worker = org.cli_start("sync", "--once", "--now", login)
    try:
        deadline = time.monotonic() + 20
        while killed_at not in front.commands and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert killed_at in front.commands, f"the cycle never sent {killed_at}: {front.commands}"
        worker.kill()  # SIGKILL: no goodbye, no cleanup
    finally:
        worker.wait(10)
        worker.stdout.close()
        worker.stderr.close()
    committed = listed(org)["total"]
    assert committed == (3 if killed_at in ("DELE", "QUIT") else 0)

    front.hold = None
    database.execute_sql("UPDATE sync_status SET worker = NULL, lease_until = NULL")  # its lease, run out
    [cycled] = sync(org).mailboxes
    assert cycled.ok, cycled
    assert listed(org)["total"] == 3, "every message recorded"
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == 3, "none twice"
    assert query(org.db_path, "SELECT items_total FROM sync_status")[0][0] == 3
    assert cycled.deleted == 3, cycled
    assert server_message_ids(org, login) == [], (
        "read and deleted by the cycle after the restart" if committed == 0 else
        "committed but not deleted before the kill: deleted by the cycle after the restart (R28)")
    assert [(m.ok, m.messages, m.deleted) for m in sync(org).mailboxes] == [(True, 0, 0)]


@pytest.mark.parametrize("uidl", [True, False], ids=["by UIDL", "without UIDL"])
def test_what_a_pop3_cycle_processed_is_deleted_later_and_what_it_passed_over_stays(org, uidl):
    """R28 over POP3 as over IMAP: the seen keys say which messages were processed, so a later cycle
    deletes those left on the server (here: processed before delete-after-processing was turned on,
    as a cycle cut short before its QUIT leaves them) and never one received before the reading date."""
    front = org.lab.pop3_front(uidl=uidl)
    org.profile("pop", type="pop3_smtp", incoming_port=front.port, verify_delivery=False)
    [login] = org.lab.add_users(1, "popleft")
    enable(org, pop_queue(org, login, process_email_after="2026-06-01T00:00:00"))
    deliver(org, login, message("a@outside.test", login, "Before", message_id="<pop-before@lab.test>").replace(
        b"Date: Sun, 06 Dec 2026", b"Date: Fri, 01 May 2026"))
    deliver(org, login, message("b@outside.test", login, "After", message_id="<pop-after@lab.test>"))
    [kept] = sync(org).mailboxes
    assert (kept.ok, kept.messages, kept.deleted) == (True, 1, 0), kept
    assert sorted(server_message_ids(org, login)) == ["<pop-after@lab.test>", "<pop-before@lab.test>"]

    mailboxes.edit(org.admin, login, delete_after_processing=True)
    org.clock.advance(hours=1)
    [cleaned] = sync(org).mailboxes
    assert (cleaned.ok, cleaned.messages, cleaned.deleted) == (True, 0, 1), cleaned
    assert server_message_ids(org, login) == ["<pop-before@lab.test>"], "passed over: never read, kept"
    assert [row["subject"] for row in listed(org)["rows"]] == ["After"]
    org.clock.advance(hours=1)
    assert [(m.ok, m.deleted) for m in sync(org).mailboxes] == [(True, 0)]
    assert server_message_ids(org, login) == ["<pop-before@lab.test>"]
    assert "RETR" not in front.commands


def test_process_email_received_after_is_read_from_the_received_header_else_the_date(org, pop_profile):
    [login] = org.lab.add_users(1, "popafter")
    enable(org, pop_queue(org, login, process_email_after="2026-06-01T00:00:00"))

    def received(when: str) -> str:
        return f"Received: from relay.outside.test by mail.example.test; {when}\r\n"

    deliver(org, login, message("a@outside.test", login, "Received late, written early",
                                extra=received("Tue, 02 Jun 2026 10:00:00 +0000")).replace(
        b"Date: Sun, 06 Dec 2026", b"Date: Sun, 01 Mar 2026"))
    deliver(org, login, message("b@outside.test", login, "Received early",
                                extra=received("Sun, 31 May 2026 23:59:00 +0000")))
    deliver(org, login, message("c@outside.test", login, "Dated late, no Received"))
    deliver(org, login, message("d@outside.test", login, "Dated early, no Received").replace(
        b"Date: Sun, 06 Dec 2026", b"Date: Fri, 01 May 2026"))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.messages) == (True, 2), cycled
    assert sorted(row["subject"] for row in listed(org)["rows"]) == ["Dated late, no Received",
                                                                     "Received late, written early"]
    received_on = {row["subject"]: row["received_on"] for row in listed(org)["rows"]}
    assert str(received_on["Received late, written early"]).startswith("2026-06-02")
    assert seen_count(org) == 4, "the older ones are passed over for good"
    assert sync(org).mailboxes[0].messages == 0


def test_mail_received_in_the_same_second_as_process_email_received_after_is_read_over_pop3(org, pop_profile):
    """The Received header's date has whole seconds: a boundary within a second reads what arrived
    in that second (R24); the second before is not read."""
    [login] = org.lab.add_users(1, "popsecond")
    enable(org, pop_queue(org, login, process_email_after="2026-06-02T10:00:00.500"))
    for subject, second in (("Second before", "09:59:59"), ("Same second", "10:00:00"), ("Second after", "10:00:01")):
        deliver(org, login, message("a@outside.test", login, subject, extra=(
            f"Received: from relay.outside.test by mail.example.test; Tue, 02 Jun 2026 {second} +0000\r\n")))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.recorded) == (True, 2), cycled
    assert sorted((row["subject"], str(row["received_on"])) for row in listed(org)["rows"]) == [
        ("Same second", "2026-06-02 10:00:00"), ("Second after", "2026-06-02 10:00:01")]


def test_a_forward_mailbox_over_pop3_routes_by_recipient_and_deletes_everything_it_processed(org, pop_profile):
    forward, routed = org.lab.add_users(2, "popfwd")
    mailboxes.create_forward_mailbox(org.admin, name="Forward", email=forward, profile="pop")
    mailboxes.edit(org.admin, forward, process_email_after=SINCE)
    bulk.approve(org.admin, Selection.of_emails([forward]))
    credentials.set_mailbox_secret(org.admin, forward, org.lab.users[forward], org.store)
    enable(org, forward)
    enable(org, queue_mailbox(org, routed, profile="pop", incoming_method="forward_mailbox"))
    deliver(org, forward, message("g@outside.test", routed, "For the queue"))
    deliver(org, forward, message("h@outside.test", "someone@else.test", "For nobody"))
    deliver(org, forward, message("i@outside.test", "list@outside.test", "Via X-Original-To",
                                  extra=f"X-Original-To: {routed}\r\n"))

    summary = sync(org)
    assert [m.email for m in summary.mailboxes] == [forward]
    [cycled] = summary.mailboxes
    assert (cycled.ok, cycled.messages, cycled.unresolved, cycled.deleted) == (True, 3, 1, 3), cycled
    rows = {row["subject"]: row for row in listed(org)["rows"]}
    assert rows["For the queue"]["parties"] == [routed] and rows["For the queue"]["state"] == "received"
    assert rows["Via X-Original-To"]["parties"] == [routed]
    assert rows["For nobody"]["state"] == "unresolved" and rows["For nobody"]["parties"] == []
    assert server_message_ids(org, forward) == [], "R26: a forward mailbox deletes what it processed"
    assert len(org.alerts(forward, code="UNRESOLVED_MESSAGES")) == 1


def test_a_server_without_uidl_is_read_by_message_id_without_duplicates(org):
    front = org.lab.pop3_front(uidl=False)
    org.profile("nouidl", type="pop3_smtp", incoming_port=front.port, verify_delivery=False)
    [login] = org.lab.add_users(1, "popnouidl")
    enable(org, pop_queue(org, login, profile="nouidl"))
    shared = message("a@outside.test", login, "Sent twice", message_id="<twice@lab.test>")
    deliver(org, login, shared)
    deliver(org, login, shared)
    deliver(org, login, message("b@outside.test", login, "No Message-ID").replace(
        b"Message-ID: ", b"X-Not-Message-ID: "))
    deliver(org, login, BROKEN["no headers at all"])

    [first] = sync(org).mailboxes
    assert "UIDL" in front.commands, "the product asked, and the server said no"
    assert (first.ok, first.messages, first.recorded) == (True, 3, 3), first
    states = sorted(row["state"] for row in listed(org)["rows"])
    assert states == ["received", "received", "unparseable"]

    for _ in range(2):
        [again] = sync(org).mailboxes
        assert (again.ok, again.messages, again.recorded) == (True, 0, 0), again
    assert listed(org)["total"] == 3
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == 3
    assert query(org.db_path, "SELECT count(*) FROM activity_party")[0][0] == 3
    assert query(org.db_path, "SELECT items_total FROM sync_status")[0][0] == 3, "nothing counted twice"
    assert "RETR" not in front.commands


def test_a_server_without_uidl_forgets_the_message_ids_of_messages_deleted(org):
    front = org.lab.pop3_front(uidl=False)
    org.profile("nouidl", type="pop3_smtp", incoming_port=front.port, verify_delivery=False)
    [login] = org.lab.add_users(1, "popnouidld")
    enable(org, pop_queue(org, login, profile="nouidl", delete_after_processing=True))
    deliver(org, login, message("a@outside.test", login, "Gone soon", message_id="<gone@lab.test>"))

    assert [(m.ok, m.deleted) for m in sync(org).mailboxes] == [(True, 1)]
    assert server_message_ids(org, login) == []
    assert [m.messages for m in sync(org).mailboxes] == [0]
    assert seen_count(org) == 0


def test_a_server_without_uidl_reads_only_new_headers_while_mail_only_arrives(org):
    front = org.lab.pop3_front(uidl=False)
    org.profile("nouidl", type="pop3_smtp", incoming_port=front.port, verify_delivery=False)
    [login] = org.lab.add_users(1, "popgrow")
    enable(org, pop_queue(org, login, profile="nouidl"))
    for number in range(3):
        deliver(org, login, message("a@outside.test", login, f"Grow {number}", message_id=f"<grow-{number}@lab.test>"))
    assert [(m.ok, m.messages) for m in sync(org).mailboxes] == [(True, 3)]

    front.commands.clear()
    assert [(m.ok, m.messages) for m in sync(org).mailboxes] == [(True, 0)]
    assert front.commands.count("TOP") == 1, "nothing new: one header read to check the head, not three"
    deliver(org, login, message("b@outside.test", login, "Grow 3", message_id="<grow-3@lab.test>"))
    front.commands.clear()
    assert [(m.ok, m.messages) for m in sync(org).mailboxes] == [(True, 1)]
    assert front.commands.count("TOP") == 3, "the check, then the new message's header and first lines"

    with imap(org, login) as client:  # another client deletes the first message; a new one arrives
        client.select_folder("INBOX")
        client.delete_messages(client.search(["HEADER", "Message-ID", "<grow-0@lab.test>"]))
        client.expunge()
    deliver(org, login, message("c@outside.test", login, "Grow 4", message_id="<grow-4@lab.test>"))
    front.commands.clear()
    assert [(m.ok, m.messages) for m in sync(org).mailboxes] == [(True, 1)]
    assert front.commands.count("TOP") == 6, "the head changed: every header read again (1 + 4), then the new lines"
    assert sorted(row["subject"] for row in listed(org)["rows"]) == [f"Grow {number}" for number in range(5)]
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == 5, "none twice"
    assert seen_count(org) == 4, "the deleted message's key forgotten once every header was read"
    front.commands.clear()
    assert [(m.ok, m.messages) for m in sync(org).mailboxes] == [(True, 0)]
    assert front.commands.count("TOP") == 1


def test_broken_messages_over_pop3_each_end_as_an_activity_or_unparseable(org, pop_profile):
    [login] = org.lab.add_users(1, "popbroken")
    enable(org, pop_queue(org, login))
    for raw in BROKEN.values():
        deliver(org, login, raw.replace(b"{to}", login.encode()))

    [cycled] = sync(org).mailboxes
    assert cycled.ok, cycled
    assert cycled.messages == len(BROKEN)
    rows = listed(org)["rows"]
    assert len(rows) == len(BROKEN)
    by_subject = {row["subject"]: row for row in rows}
    assert by_subject["Grüße aus Köln"]["sender"] == "j@outside.test"
    assert by_subject["huge"]["sender"] == "a@outside.test", "a 1 MB header line is cut, the rest still read"
    assert [row["state"] for row in rows].count("unparseable") == 1
    assert "part one" in activities.show_activity(org.admin, by_subject["broken boundary"]["id"])["preview"]
    assert sync(org).mailboxes[0].messages == 0, "nothing stuck: the next cycle has nothing left"


def test_attachments_are_named_from_the_lines_read_and_a_large_one_is_never_read_whole(org):
    front = org.lab.pop3_front()
    org.profile("pop", type="pop3_smtp", incoming_port=front.port, verify_delivery=False)
    [login] = org.lab.add_users(1, "popattach")
    enable(org, pop_queue(org, login))
    payload = base64.encodebytes(bytes(range(256)) * 12_000).replace(b"\n", b"\r\n")  # 3 MB as base64 lines
    raw = (f"From: a@outside.test\r\nTo: {login}\r\nSubject: With a report\r\nMessage-ID: <att@lab.test>\r\n"
           "Date: Sun, 06 Dec 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
           "--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the report.\r\n"
           "--B\r\nContent-Type: application/pdf; name=\"small.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
           "Content-Disposition: attachment; filename=\"small.pdf\"\r\n\r\nJVBERi0xLjQK\r\n"
           "--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           "Content-Disposition: attachment; filename=\"large.bin\"\r\n\r\n").encode() + payload + b"--B--\r\n"
    with imap(org, login) as client:
        client.append("INBOX", raw)

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.messages) == (True, 1), cycled
    [row] = listed(org)["rows"]
    attachments = {item["name"]: item["size"] for item in row["attachments"]}
    assert attachments["small.pdf"] == len(b"JVBERi0xLjQK"), "encoded octets, as IMAP's BODYSTRUCTURE says"
    assert len(payload) <= attachments["large.bin"] <= len(raw), "the part cut short: the rest of the message"
    assert activities.show_activity(org.admin, row["id"])["preview"].startswith("See the report.")
    assert "RETR" not in front.commands


def _scripted_pop3_server(greeting: str, capabilities: bytes,
                          answer: Callable[[Conversation, bytes, list[bytes]], bool],
                          commands: int | None = None) -> Callable[[Conversation], None]:
    """A POP3 server that greets with ``greeting``, lists ``capabilities`` to CAPA, says +OK to
    USER, PASS, NOOP and RSET and goodbye to QUIT, and leaves every other command to ``answer``
    (given the command and its words; False: -ERR); it hangs up after ``commands`` (None: never)."""
    def play(conversation: Conversation) -> None:
        conversation.send_line(f"+OK {greeting}")
        for _ in range(commands) if commands is not None else itertools.count():
            words = conversation.read_line().strip().split(b" ")
            command = words[0].upper()
            if command == b"CAPA":
                conversation.send(b"+OK\r\n" + capabilities + b".\r\n")
            elif command in (b"USER", b"PASS", b"NOOP", b"RSET"):
                conversation.send_line("+OK")
            elif command == b"QUIT":
                conversation.send_line("+OK bye")
                raise ConversationOver("the client said goodbye")
            elif not answer(conversation, command, words):
                conversation.send_line("-ERR unknown command")
    return play


def _lying_pop3_server(top_answer: bytes) -> Callable[[Conversation], None]:
    """A POP3 server with one message of 100 octets, as it says, whose TOP answer is ``top_answer``
    then an endless flood."""
    def answer(conversation: Conversation, command: bytes, _words: list[bytes]) -> bool:
        if command == b"STAT":
            conversation.send_line("+OK 1 100")
        elif command == b"LIST":
            conversation.send(b"+OK\r\n1 100\r\n.\r\n")
        elif command == b"UIDL":
            conversation.send(b"+OK\r\n1 only-one\r\n.\r\n")
        elif command == b"TOP":
            conversation.flood(b"+OK\r\n" + top_answer, b"X" * 65536, 64 * 1024 * 1024)
        else:
            return False
        return True
    return _scripted_pop3_server("hostile POP3 server ready", b"USER\r\nUIDL\r\nTOP\r\n", answer, commands=64)


def test_a_server_sending_far_more_than_the_size_it_listed_is_cut_off_with_memory_bounded(org):
    with HostileServer(_lying_pop3_server(b"Subject: endless\r\nX-Long: ")) as server:
        org.profile("liar", type="pop3_smtp", incoming_port=server.port, incoming_tls="none",
                    verify_delivery=False, ca_file=None)
        [login] = org.lab.add_users(1, "popliar")
        enable(org, pop_queue(org, login, profile="liar"))
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            [cycled] = sync(org).mailboxes
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (cycled.ok, cycled.error_code) == (False, "PROTOCOL_ERROR"), cycled
    assert f"127.0.0.1:{server.port}" in cycled.error and "in answer to TOP" in cycled.error, cycled.error
    assert "sent more than 64 KiB" in cycled.error, "cut off near the size the server listed (100 octets)"
    assert peak - before < 5 * 1024 * 1024
    assert listed(org)["total"] == 0 and seen_count(org) == 0


def _slow_pop3_server_without_uidl(login: str, count: int, pause: float) -> Callable[[Conversation], None]:
    """A POP3 server without UIDL holding ``count`` messages, answering each TOP after ``pause``."""
    messages = [(f"From: a@outside.test\r\nTo: {login}\r\nSubject: Slow {number:02}\r\n"
                 f"Message-ID: <slow-{number}@lab.test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n").encode()
                for number in range(1, count + 1)]
    body = b"Slowly.\r\n"

    def answer(conversation: Conversation, command: bytes, words: list[bytes]) -> bool:
        if command == b"STAT":
            conversation.send_line(f"+OK {count} {count * 200}")
        elif command == b"LIST":
            listing = b"".join(b"%d %d\r\n" % (n, len(m) + 2 + len(body)) for n, m in enumerate(messages, 1))
            conversation.send(b"+OK\r\n" + listing + b".\r\n")
        elif command == b"TOP":
            time.sleep(pause)
            header = messages[int(words[1]) - 1]
            conversation.send(b"+OK\r\n" + header + b"\r\n" + (body if int(words[2]) else b"") + b".\r\n")
        else:
            return False
        return True
    return _scripted_pop3_server("slow POP3 server ready", b"USER\r\nTOP\r\n", answer)


def test_a_maildrop_without_uidl_too_large_for_one_cycle_is_read_on_by_the_next(org):
    [login] = org.lab.add_users(1, "popslow")
    with HostileServer(_slow_pop3_server_without_uidl(login, 30, 0.1)) as server:
        org.profile("slow", type="pop3_smtp", incoming_port=server.port, incoming_tls="none",
                    verify_delivery=False, ca_file=None, timeout_seconds=4)
        enable(org, pop_queue(org, login, profile="slow"))
        cycles, tops = [], []
        for _ in range(3):
            cycles.append(sync(org).mailboxes[0])
            tops.append(bytes(server.conversations[-1].in_clear).count(b"TOP "))
    assert all(cycle.ok for cycle in cycles), cycles
    assert [cycle.messages for cycle in cycles] == [12, 12, 6], "each cycle stops at the time bound"
    assert tops == [24, 1 + 24, 1 + 12], "each cycle goes on from the head the last one reached, read again by none"
    assert listed(org, limit=100)["total"] == 30
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == 30, "none twice"


def test_a_pop3_profile_with_a_processed_folder_deletes(org, pop_profile):
    Profile.update(processed_folder="Processed").where(Profile.name == "pop").execute()
    [login] = org.lab.add_users(1, "popfolder")
    enable(org, pop_queue(org, login, delete_after_processing=True))
    deliver(org, login, message("a@outside.test", login, "Delete", message_id="<pdel@lab.test>"))
    assert [(m.ok, m.deleted) for m in sync(org).mailboxes] == [(True, 1)]
    assert server_message_ids(org, login) == []
    with imap(org, login) as client:
        assert not client.folder_exists("Processed"), "POP3 has no folders: DELE"
