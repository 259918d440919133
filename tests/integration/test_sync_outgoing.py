"""Outgoing processing (R29) against the lab: mailboxes enabled by a real Test & Enable, email queued
through the service or `mbxtui email send`, sent by the outgoing pass through the lab's SMTP server
(which delivers into Dovecot), and read back from the recipients' inboxes over IMAP."""

from __future__ import annotations

import email
import email.policy
import functools
import json
import signal
import ssl
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient

from mbxtui.core.models import database
from mbxtui.core.services import activities, bulk, credentials, profiles, settings
from mbxtui.core.services.selection import Selection
from mbxtui.core.services.outgoing import queue_email
from mbxtui.core.sync.outgoing import OutgoingRunner
from mbxtui.core.sync.runner import SyncRunner
from tests.backends import query
from tests.hardening.hostile import ABSENT, Conversation, ConversationOver, HostileServer, Plan, smtp_dialogue
from tests.integration.conftest import Org

pytestmark = pytest.mark.servers


# -- the lab ---------------------------------------------------------------------------------------

def inbox(org: Org, login: str) -> list[EmailMessage]:
    """The messages in the lab user's INBOX, read over IMAP, oldest first."""
    client = IMAPClient(org.lab.host, port=org.lab.ports["imaps"],
                        ssl_context=ssl.create_default_context(cafile=org.lab.ca_file), timeout=10)
    with client:
        client.login(login, org.lab.users[login])
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        answers = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
    return [email.message_from_bytes(answers[uid][b"BODY[]"], policy=email.policy.default) for uid in uids]


def sender_mailbox(org: Org, login: str, profile: str = "lab") -> str:
    """A user mailbox on ``profile`` that sends (and, as Test & Enable does, receives), enabled."""
    org.mailbox(login, profile, incoming_method="none")
    summary = org.test_enable(login)
    assert summary.passed == 1, org.row(login).last_error_text
    assert org.row(login).outgoing_enabled
    return login


def send(org: Org, *emails: str):
    return OutgoingRunner(org.store, clock=org.clock).run_once(list(emails) or None)


def stored(org: Org, activity_id: int) -> dict:
    cursor = database.execute_sql("SELECT * FROM email_activity WHERE id = ?", [activity_id])
    return dict(zip([c[0] for c in cursor.description], cursor.fetchone()))


def from_outside(org: Org, login: str) -> list[EmailMessage]:
    """The inbox without Test & Enable's own test message."""
    return [m for m in inbox(org, login) if not m["Message-ID"].startswith("<mbxtui-test-")]


@pytest.fixture
def lab_profile(org: Org) -> str:
    org.profile("lab", verify_delivery=False)
    return "lab"


# -- sending once ----------------------------------------------------------------------------------

def test_an_email_is_sent_once_with_its_headers_and_a_reply_threads(org, lab_profile):
    sender, recipient, copied = org.lab.add_users(3, "sendonce")
    sender_mailbox(org, sender)
    first = queue_email(org.admin, sender, [recipient], [copied], "Grüße, quarterly figures",
                        "Hello,\nthe figures: 42 €.\n.\nA line with a dot alone above.")
    activity = stored(org, first)

    summary = send(org)
    assert (summary.sent, summary.failed, [m.ok for m in summary.mailboxes]) == (1, 0, [True])
    [received] = from_outside(org, recipient)
    assert received["Message-ID"] == activity["message_id"]
    assert (received["From"], received["To"], received["Cc"]) == (sender, recipient, copied)
    assert received["Subject"] == "Grüße, quarterly figures" and received["Date"] is not None
    # Over IMAP lines end in CRLF, which the parser keeps in a decoded body.
    assert received.get_content().replace("\r\n", "\n") == (
        "Hello,\nthe figures: 42 €.\n.\nA line with a dot alone above.\n")
    assert [m["Message-ID"] for m in from_outside(org, copied)] == [activity["message_id"]]
    after = stored(org, first)
    assert (after["state"], after["attempts"], after["last_error_code"]) == ("sent", 0, None)
    assert after["sent_on"] is not None and after["size"] > 0
    status = query(org.db_path, "SELECT last_outgoing_success IS NOT NULL, worker FROM sync_status")
    assert [tuple(row) for row in status] == [(True, None)]

    assert send(org).mailboxes == [], "nothing is due: nothing is sent again"
    assert len(from_outside(org, recipient)) == 1

    reply = queue_email(org.admin, sender, [recipient], [], "Re: quarterly figures", "And more.",
                        reply_to_activity_id=first)
    send(org)
    answered = [m for m in from_outside(org, recipient) if m["Subject"] == "Re: quarterly figures"]
    assert len(answered) == 1
    assert answered[0]["Message-ID"] == stored(org, reply)["message_id"]
    assert answered[0]["In-Reply-To"] == activity["message_id"]
    assert answered[0]["References"] == activity["message_id"]
    rows = activities.list_activities(org.admin, direction="outgoing", state="sent")["rows"]
    assert [row["id"] for row in rows] == [reply, first] and rows[1]["sent_on"] is not None


def test_email_waits_until_its_mailbox_is_enabled_for_outgoing(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendwait")
    org.mailbox(sender, "lab", incoming_method="none", approve=False)
    activity_id = queue_email(org.admin, sender, [recipient], [], "Patience", "Body")
    assert send(org).mailboxes == [] and stored(org, activity_id)["state"] == "pending"
    org.test_enable(sender)
    assert not org.row(sender).outgoing_enabled, "R9: not approved, not enabled"
    assert send(org).mailboxes == []
    bulk.approve(org.admin, Selection.of_emails([sender]))
    assert org.test_enable(sender).passed == 1
    assert send(org).sent == 1 and stored(org, activity_id)["state"] == "sent"
    assert [m["Subject"] for m in from_outside(org, recipient)] == ["Patience"]


def test_a_reply_to_a_received_email_carries_its_references(org, lab_profile):
    sender, outsider = org.lab.add_users(2, "sendreply")
    sender_mailbox(org, sender)
    database.execute_sql(
        "INSERT INTO email_activity (direction, state, message_id, sender, \"to\", cc, subject, size, attachments, "
        "preview, in_reply_to, created_on) VALUES ('incoming', 'received', '<q-2@lab.test>', ?, '[]', '[]', "
        "'Question', 0, '[]', '', '<q-1@lab.test> <q-0@lab.test> <q-1@lab.test>', CURRENT_TIMESTAMP)", [outsider])
    question = query(org.db_path, "SELECT id FROM email_activity WHERE message_id = '<q-2@lab.test>'")[0][0]
    queue_email(org.admin, sender, [outsider], [], "Re: Question", "Yes.", reply_to_activity_id=question)
    send(org)
    [answer] = from_outside(org, outsider)
    assert answer["In-Reply-To"] == "<q-2@lab.test>"
    assert answer["References"].split() == ["<q-0@lab.test>", "<q-1@lab.test>", "<q-2@lab.test>"]


def test_an_internationalised_address_goes_out_with_smtputf8_and_fails_clearly_without_it(org):
    org.profile("utf8", verify_delivery=False, outgoing_port=org.lab.ports["smtp_utf8"])
    org.profile("ascii", verify_delivery=False)
    on_utf8, on_ascii, recipient = org.lab.add_users(3, "sendutf")
    sender_mailbox(org, on_utf8, "utf8")
    sender_mailbox(org, on_ascii, "ascii")
    # The lab has no mailbox for jörg: the server refuses that recipient alone, and delivers the rest.
    sent = queue_email(org.admin, on_utf8, [recipient], ["jörg@example.test"], "Für dich", "Grüße")
    refused = queue_email(org.admin, on_ascii, [recipient], ["jörg@example.test"], "Für dich", "Grüße")

    summary = send(org)
    assert sorted((m.email, m.ok, m.sent, m.failed) for m in summary.mailboxes) == sorted(
        [(on_utf8, True, 1, 0), (on_ascii, True, 0, 1)]), "an email refused alone does not fail its mailbox"
    [received] = from_outside(org, recipient)
    assert received["Cc"] == "jörg@example.test" and received["Subject"] == "Für dich"
    assert received["Message-ID"] == stored(org, sent)["message_id"]
    partly = stored(org, sent)
    assert partly["state"] == "sent" and partly["last_error_code"] == "RECIPIENT_REJECTED"
    assert "'jörg@example.test': 550" in partly["last_error_text"]
    failed = stored(org, refused)
    assert (failed["state"], failed["last_error_code"]) == ("failed", "MESSAGE_REJECTED")
    assert failed["last_error_text"].startswith("the SMTP server at 127.0.0.1:")
    assert "does not offer SMTPUTF8, which the address 'jörg@example.test' needs" in failed["last_error_text"]


# -- failures ----------------------------------------------------------------------------------------

def point_outgoing_at(org: Org, login: str, profile: str, port: int, tls: str = "starttls") -> None:
    """Move the profile's SMTP endpoint and confirm the mailbox's password for it again (R34)."""
    profiles.update(org.admin, profile, outgoing_port=port, outgoing_tls=tls)
    credentials.set_mailbox_secret(org.admin, login, org.lab.users[login], org.store)


def test_a_transient_failure_retries_per_the_policy_then_fails(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendretry")
    sender_mailbox(org, sender)
    settings.update(org.admin, retry_attempts=2, retry_interval_minutes=5)
    point_outgoing_at(org, sender, "lab", org.lab.ports["refused"])
    activity_id = queue_email(org.admin, sender, [recipient], [], "Hello", "Body")

    first = send(org)
    assert [(m.ok, m.retrying, m.error_code) for m in first.mailboxes] == [(False, 1, "CONNECTION_REFUSED")]
    row = stored(org, activity_id)
    assert (row["state"], row["attempts"], row["last_error_code"]) == ("pending", 1, "CONNECTION_REFUSED")
    # R30: the outgoing direction waits too, with one warning.
    assert tuple(query(org.db_path, "SELECT state, outgoing_failures FROM sync_status")[0]) == ("waiting", 1)
    [warning] = org.alerts(sender, code="CONNECTION_REFUSED")
    assert warning.level == "warning"
    later = queue_email(org.admin, sender, [recipient], [], "Queued while waiting", "Body")
    assert send(org).mailboxes == [], "not due before the retry interval, nor is the mailbox's next email"
    org.clock.advance(minutes=5)
    assert [m.retrying for m in send(org).mailboxes] == [1]
    org.clock.advance(minutes=5)
    last = send(org)
    assert [(m.failed, m.retrying) for m in last.mailboxes] == [(1, 0)]
    row = stored(org, activity_id)
    assert (row["state"], row["attempts"], row["next_attempt"]) == ("failed", 3, None)
    assert "nothing accepts connections" in row["last_error_text"]
    assert not org.row(sender).outgoing_enabled, "R30: out of retries, outgoing is disabled"
    assert [a.level for a in org.alerts(sender, code="CONNECTION_REFUSED")] == ["warning", "error"]
    assert stored(org, later)["state"] == "pending", "it waits for Test & Enable to enable outgoing again"
    org.clock.advance(hours=1)
    assert send(org).mailboxes == [], "a failed email is not tried again by itself"
    assert from_outside(org, recipient) == []


def test_bad_credentials_fail_the_email_for_good(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendauth")
    sender_mailbox(org, sender)
    credentials.set_mailbox_secret(org.admin, sender, "not the password", org.store)
    activity_id = queue_email(org.admin, sender, [recipient], [], "Hello", "Body")
    other = queue_email(org.admin, sender, [recipient], [], "Second", "Body")

    [result] = send(org).mailboxes
    assert (result.ok, result.failed, result.error_code) == (False, 1, "AUTH_FAILED")
    row = stored(org, activity_id)
    assert (row["state"], row["attempts"], row["last_error_code"]) == ("failed", 1, "AUTH_FAILED")
    assert "not the password" not in row["last_error_text"]
    assert stored(org, other)["state"] == "pending", "only the email being sent takes the failure"
    assert not org.row(sender).outgoing_enabled and org.row(sender).outgoing_status == "failure", "R30: disabled"
    [alert] = org.alerts(sender, code="AUTH_FAILED")
    assert alert.level == "error" and "outgoing processing of" in alert.text
    assert send(org).mailboxes == [], "nothing more is tried until Test & Enable enables it again"

    credentials.set_mailbox_secret(org.admin, sender, org.lab.users[sender], org.store)
    assert org.test_enable(sender).passed == 1
    assert send(org).sent == 1 and stored(org, other)["state"] == "sent"


def test_most_of_a_profiles_mailboxes_failing_to_send_alerts_the_profile_owner_once(org, lab_profile):
    """R16 holds for the outgoing pass too (R30)."""
    *senders, recipient = org.lab.add_users(4, "sendr16")
    for sender in senders:
        sender_mailbox(org, sender)
    for sender in senders[:2]:
        credentials.set_mailbox_secret(org.admin, sender, "not the password", org.store)
    for sender in senders:
        queue_email(org.admin, sender, [recipient], [], "Hello", "Body")

    summary = send(org)
    assert sorted((m.ok, m.error_code) for m in summary.mailboxes) == [(False, "AUTH_FAILED")] * 2 + [(True, None)]
    [alert] = [a for a in org.alerts(code="PROFILE_FAILING") if a.mailbox_id is None]
    assert alert.level == "error" and alert.profile_id == profiles.get("lab").id
    assert "2 of 3 mailboxes of profile 'lab' failed while being processed within the last hour" in alert.text
    queue_email(org.admin, senders[2], [recipient], [], "Again", "Body")
    credentials.set_mailbox_secret(org.admin, senders[2], "wrong too", org.store)
    send(org)
    assert len(org.alerts(code="PROFILE_FAILING")) == 1, "at most one an hour"


def test_a_password_not_confirmed_for_a_moved_endpoint_is_not_sent(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendbind")
    sender_mailbox(org, sender)
    profiles.update(org.admin, "lab", outgoing_port=org.lab.ports["smtps"], outgoing_tls="implicit")
    activity_id = queue_email(org.admin, sender, [recipient], [], "Hello", "Body")
    attempts_before = org.lab.smtp_auth_attempts("smtps")

    [result] = send(org).mailboxes
    assert (result.ok, result.failed, result.error_code) == (False, 1, "NO_CREDENTIALS")
    assert org.lab.smtp_auth_attempts("smtps") == attempts_before, "R34: the password never left"
    row = stored(org, activity_id)
    assert (row["state"], row["last_error_code"]) == ("failed", "NO_CREDENTIALS")
    assert from_outside(org, recipient) == []
    assert not org.row(sender).outgoing_enabled, "R34, R30: the mailbox fails with NO_CREDENTIALS"


def test_sending_stays_within_the_profiles_connection_bound(org):
    senders = org.lab.add_users(5, "sendbound")
    [recipient] = org.lab.add_users(1, "sendboundr")
    with org.lab.connection_counter("smtp") as counter:
        org.profile("narrow", verify_delivery=False, max_connections=2, outgoing_port=counter.port)
        for login in senders:
            sender_mailbox(org, login, "narrow")
            queue_email(org.admin, login, [recipient], [], f"From {login}", "Body")
        before = counter.start_counting()
        summary = OutgoingRunner(org.store, clock=org.clock, threads=5).run_once()
    assert summary.sent == 5 and counter.total - before == 5
    assert counter.max_concurrent == 2, f"R23: at most the profile's max connections, never more: {counter!r}"
    assert len(from_outside(org, recipient)) == 5


def test_two_runners_at_once_send_each_email_once(org, lab_profile):
    senders = org.lab.add_users(3, "sendtwo")
    [recipient] = org.lab.add_users(1, "sendtwor")
    for login in senders:
        sender_mailbox(org, login)
        for number in range(2):
            queue_email(org.admin, login, [recipient], [], f"{login} {number}", "Body")
    results: list = []

    def run() -> None:
        try:
            results.append(OutgoingRunner(org.store, clock=org.clock, threads=2).run_once())
        finally:
            database.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(summary.sent for summary in results) == 6
    assert sorted(m["Subject"] for m in from_outside(org, recipient)) == sorted(
        f"{login} {number}" for login in senders for number in range(2)), "each email exactly once"


# -- at most once ----------------------------------------------------------------------------------

def test_an_email_left_sending_becomes_uncertain_and_is_sent_again_only_when_asked(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendcrash")
    sender_mailbox(org, sender)
    orphan = queue_email(org.admin, sender, [recipient], [], "Left sending", "Body")
    held = queue_email(org.admin, sender, [recipient], [], "Held by a live worker", "Body")
    database.execute_sql("UPDATE email_activity SET state = 'sending' WHERE id IN (?, ?)", [orphan, held])

    summary = send(org)
    assert summary.recovered_uncertain == 2 and summary.sent == 0
    assert stored(org, orphan)["state"] == "uncertain"
    assert from_outside(org, recipient) == [], "an uncertain email is never sent by itself"

    # One whose mailbox a live worker holds is that worker's: left alone.
    database.execute_sql("UPDATE email_activity SET state = 'sending' WHERE id = ?", [held])
    database.execute_sql("INSERT INTO sync_status (mailbox_id, state, worker, lease_until, items_last_cycle, "
                         "items_total, unresolved_total) VALUES (?, 'idle', 'elsewhere:send', ?, 0, 0, 0) "
                         "ON CONFLICT (mailbox_id) DO UPDATE SET worker = excluded.worker, "
                         "lease_until = excluded.lease_until",
                         [org.row(sender).id, org.clock.now.replace(year=org.clock.now.year + 1)])
    assert send(org).recovered_uncertain == 0 and stored(org, held)["state"] == "sending"
    database.execute_sql("UPDATE sync_status SET worker = NULL, lease_until = NULL")
    assert send(org).recovered_uncertain == 1, "once nobody holds it, it is uncertain too"

    resent = org.cli("activity", "resend", str(orphan))
    assert resent.returncode == 0, resent.stderr
    assert f"email activity {orphan} is pending again" in resent.stdout
    again = org.cli("activity", "resend", str(orphan))
    assert again.returncode == 1
    assert again.stderr.strip() == (f"mbxtui: the email activity {orphan} is pending: only an uncertain or failed "
                                    "email can be sent again")
    assert send(org).sent == 1
    assert [m["Subject"] for m in from_outside(org, recipient)] == ["Left sending"]
    assert send(org).sent == 0 and len(from_outside(org, recipient)) == 1


def hang_after_the_message(taken: threading.Event) -> Callable[[Conversation], None]:
    """A server that takes the whole message (then sets ``taken``) and never answers it."""
    return functools.partial(_hang_after_the_message, taken)


def _hang_after_the_message(taken: threading.Event, conversation: Conversation) -> None:
    conversation.send_line("220 hang.test ESMTP")
    while True:
        line = conversation.read_line()
        command = line.split(b" ", 1)[0].strip().upper()
        if command in (b"EHLO", b"HELO"):
            conversation.send_line("250-hang.test")
            conversation.send_line("250 AUTH PLAIN")
        elif command == b"AUTH":
            conversation.send_line("235 2.7.0 authenticated")
        elif command in (b"MAIL", b"RCPT"):
            conversation.send_line("250 2.0.0 ok")
        elif command == b"DATA":
            conversation.send_line("354 go ahead")
            while conversation.read_line() not in (b".\r\n", b".\n"):
                pass
            taken.set()
            while not conversation.over:
                time.sleep(0.05)
            raise ConversationOver("never answered the message")
        else:
            conversation.send_line("250 ok")


def test_a_worker_killed_in_the_middle_of_a_send_leaves_it_uncertain(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendkill")
    sender_mailbox(org, sender)
    activity_id = queue_email(org.admin, sender, [recipient], [], "Mid-send", "Body")
    profiles.update(org.admin, "lab", timeout_seconds=30)
    taken = threading.Event()
    with HostileServer(hang_after_the_message(taken), conversation_limit=60) as server:
        point_outgoing_at(org, sender, "lab", server.port, tls="none")
        worker = org.cli_start("sync", "--once", "--now", sender)
        deadline = time.monotonic() + 30
        while not taken.wait(0.05):
            assert time.monotonic() < deadline and worker.poll() is None, worker.communicate()
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    assert stored(org, activity_id)["state"] == "sending"
    assert send(org).recovered_uncertain == 0, "its lease has not run out yet: the worker may be alive"
    org.clock.advance(minutes=10)  # past the dead worker's claim, renewed for 2 minutes at a time
    assert send(org).recovered_uncertain == 1
    row = stored(org, activity_id)
    assert row["state"] == "uncertain" and "may have been sent" in row["last_error_text"]
    shown = json.loads(org.cli("activity", "show", str(activity_id), "--json").stdout)
    assert shown["state"] == "uncertain" and "may have been sent" in shown["last_error_text"]


def test_a_connection_cut_while_the_message_is_on_its_way_leaves_it_uncertain(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendcut")
    sender_mailbox(org, sender)
    activity_id = queue_email(org.admin, sender, [recipient], [], "Cut", "Body")
    with HostileServer(smtp_dialogue(Plan(starttls=ABSENT, data="cut"))) as server:
        point_outgoing_at(org, sender, "lab", server.port, tls="none")
        [result] = send(org).mailboxes
    assert (result.ok, result.uncertain, result.retrying) == (False, 1, 0)
    row = stored(org, activity_id)
    assert row["state"] == "uncertain" and "may have been sent" in row["last_error_text"]


def test_a_pass_asked_to_stop_sends_from_no_more_mailboxes(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendstop")
    sender_mailbox(org, sender)
    activity_id = queue_email(org.admin, sender, [recipient], [], "Not yet", "Body")
    stop = threading.Event()
    stop.set()
    assert OutgoingRunner(org.store, clock=org.clock, stop=stop).run_once().mailboxes == []
    assert stored(org, activity_id)["state"] == "pending"
    assert [tuple(row) for row in query(org.db_path, "SELECT worker, lease_until FROM sync_status")] == [
        (None, None)], "the mailbox it claimed is given back"
    assert send(org).sent == 1


# -- the command line ----------------------------------------------------------------------------------

def test_email_send_queues_and_sync_once_sends_both_directions(org, lab_profile):
    sender, recipient = org.lab.add_users(2, "sendcli")
    sender_mailbox(org, sender)
    body_file = org.workdir / "body.txt"
    body_file.write_text("From a file,\nwith ümlauts.\n", encoding="utf-8")

    queued = org.cli("email", "send", "--from", sender, "--to", recipient, "--subject", "By the CLI",
                     "--body-file", str(body_file))
    assert queued.returncode == 0, queued.stderr
    activity_id = int(queued.stdout.strip())
    as_json = org.cli("email", "send", "--from", sender, "--to", recipient, "--subject", "Second", "--body", "Hi",
                      "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["id"] == activity_id + 1
    pending = json.loads(org.cli("activity", "list", "--state", "pending", "--json").stdout)
    assert [row["id"] for row in pending["rows"]] == [activity_id + 1, activity_id]
    assert pending["rows"][0]["direction"] == "outgoing" and pending["rows"][0]["to"] == [recipient]

    ran = org.cli("sync", "--once", "--now", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert (result["sent"], result["send_failed"], result["failed"]) == (2, 0, 0)
    assert [(m["email"], m["sent"]) for m in result["outgoing"]] == [(sender, 2)]
    assert sorted(m["Subject"] for m in from_outside(org, recipient)) == ["By the CLI", "Second"]
    shown = json.loads(org.cli("activity", "show", str(activity_id), "--json").stdout)
    assert (shown["state"], shown["direction"], shown["attempts"]) == ("sent", "outgoing", 0)
    assert shown["preview"] == "From a file,\nwith ümlauts.\n" and shown["created_by"] == org.admin.login
    text = org.cli("sync", "--once", "--now")
    assert text.returncode == 0 and "0 email(s) sent" in text.stdout
    listing = org.cli("activity", "list", "--state", "sent")
    assert listing.returncode == 0 and "By the CLI" in listing.stdout and "2 activities" in listing.stdout

    credentials.set_mailbox_secret(org.admin, sender, "not the password", org.store)
    org.cli("email", "send", "--from", sender, "--to", recipient, "--subject", "Fails", "--body", "x")
    failing = org.cli("sync", "--once", "--now", "--json")
    assert failing.returncode == 3, "a mailbox whose sending failed is a failed mailbox"
    assert json.loads(failing.stdout)["send_failed"] == 1


@pytest.mark.parametrize("arguments, words", [
    (["--to", "bob@outside.test", "--subject", "S"], "give the text of the email with exactly one of --body"),
    (["--to", "bob@outside.test", "--subject", "S", "--body", "x", "--body-file", "-"], "exactly one of --body"),
    (["--to", "not an address", "--subject", "S", "--body", "x"], "to: 'not an address' is not a valid email address"),
    (["--to", "bob@outside.test", "--cc", "@x", "--subject", "S", "--body", "x"], "cc: '@x' is not a valid email"),
    (["--to", "bob@outside.test", "--subject", "", "--body", "x"], "subject: is required"),
    (["--to", "bob@outside.test", "--subject", "S", "--body-file", "/nonexistent/body.txt"],
     "body file: cannot read /nonexistent/body.txt: No such file or directory"),
    (["--to", "bob@outside.test", "--subject", "S", "--body", "x", "--reply-to-activity", "777"],
     "no email activity has the id 777 to reply to"),
])
def test_bad_input_to_email_send_is_one_sentence_and_nothing_is_queued(org, lab_profile, arguments, words):
    [sender] = org.lab.add_users(1, "sendbad")
    org.mailbox(sender, "lab", incoming_method="none")
    ran = org.cli("email", "send", "--from", sender, *arguments)
    assert ran.returncode == (2 if "--body" in words else 1), ran.stderr
    assert words in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
    assert ran.stdout == ""
    assert query(org.db_path, "SELECT count(*) FROM email_activity")[0][0] == 0


def test_a_viewer_cannot_send(org, lab_profile):
    [sender] = org.lab.add_users(1, "sendview")
    org.mailbox(sender, "lab", incoming_method="none")
    assert org.cli("operator", "add", "vic", "--role", "viewer").returncode == 0
    ran = org.cli("--as", "vic", "email", "send", "--from", sender, "--to", "bob@outside.test", "--subject", "S",
                  "--body", "x")
    assert ran.returncode == 1
    assert "vic is viewer and may not send email from a mailbox" in ran.stderr
    assert query(org.db_path, "SELECT count(*) FROM email_activity")[0][0] == 0
