"""Incoming processing over IMAP (R23–R28) against the lab's Dovecot: mailboxes enabled by a real
Test & Enable, mail put into their inboxes with IMAP APPEND, cycles run by the sync runner, and what
lands in the database read back."""

from __future__ import annotations

import json
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import make_msgid

import pytest
from imapclient import IMAPClient

from mbxtui.core.models import database, utcnow
from mbxtui.core.services import activities, bulk, credentials, mailboxes, operators, profiles, settings, users
from mbxtui.core.services.selection import Selection
from mbxtui.core.errors import NotFound, PermissionDenied
from mbxtui.core.sync.runner import SyncRunner, sync_once
from tests.backends import ON_POSTGRES, query
from tests.core.support import inserts_refused
from tests.integration.conftest import PROFILE_OWNER, Org

pytestmark = pytest.mark.servers


# -- the lab's inboxes ---------------------------------------------------------------------------

def imap(org: Org, login: str) -> IMAPClient:
    client = IMAPClient(org.lab.host, port=org.lab.ports["imaps"],
                        ssl_context=ssl.create_default_context(cafile=org.lab.ca_file), timeout=10)
    client.login(login, org.lab.users[login])
    return client


def deliver(org: Org, login: str, raw: bytes) -> None:
    with imap(org, login) as client:
        client.append("INBOX", raw)


def server_message_ids(org: Org, login: str) -> list[str]:
    with imap(org, login) as client:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        answers = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    return [v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[1].strip() for v in answers.values()]


def message(sender: str, to: str, subject: str, *, message_id: str | None = None, extra: str = "",
            body: str = "Hello there.\r\n") -> bytes:
    message_id = message_id or make_msgid(domain="lab.test")
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
            f"Date: Sun, 06 Dec 2026 08:00:00 +0000\r\n{extra}MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


# -- enabled mailboxes -----------------------------------------------------------------------------

def enable(org: Org, *logins: str) -> None:
    summary = org.test_enable(*logins)
    assert summary.passed == len(logins), [org.row(login).last_error_text for login in logins]
    for login in logins:
        assert org.row(login).incoming_enabled


def queue_mailbox(org: Org, login: str, profile: str = "lab", **edits: object) -> str:
    users.add_queue(org.admin, login.split("@")[0], login, PROFILE_OWNER)
    mailboxes.edit(org.admin, login, profile=profile, outgoing_method="none", **edits)
    bulk.approve(org.admin, Selection.of_emails([login]))
    credentials.set_mailbox_secret(org.admin, login, org.lab.users[login], org.store)
    return login


def user_mailbox(org: Org, login: str, profile: str = "lab", *, approve: bool = True, **edits: object) -> str:
    org.mailbox(login, profile, outgoing_method="none", approve=approve, **edits)
    return login


def sync(org: Org, *emails: str, now: bool = True):
    return SyncRunner(org.store, clock=org.clock).run_once(list(emails) or None, ignore_interval=now)


def listed(org: Org, **filters: object) -> dict:
    return activities.list_activities(org.admin, **filters)


@pytest.fixture
def lab_profile(org: Org) -> str:
    org.profile("lab", verify_delivery=False)
    return "lab"


# -- reading once ------------------------------------------------------------------------------------

def test_a_cycle_records_new_mail_once_and_the_next_cycle_nothing(org, lab_profile):
    [login] = org.lab.add_users(1, "syncq")
    enable(org, queue_mailbox(org, login))
    first = message("Ann <ann@outside.test>", login, "Invoice 42", extra="Cc: cc@outside.test\r\n")
    deliver(org, login, first)
    deliver(org, login, message("bob@outside.test", login, "Second"))

    summary = sync(org)
    [cycled] = summary.mailboxes
    assert (cycled.ok, cycled.messages, cycled.recorded) == (True, 2, 2), cycled
    found = listed(org, mailbox=login)
    assert found["total"] == 2
    newest, oldest = found["rows"]
    assert (newest["subject"], oldest["subject"]) == ("Second", "Invoice 42"), "newest first"
    assert oldest["sender"] == "ann@outside.test" and oldest["to"] == [login] and oldest["cc"] == ["cc@outside.test"]
    assert oldest["parties"] == [login] and oldest["direction"] == "incoming" and oldest["state"] == "received"
    assert oldest["size"] > 0
    shown = activities.show_activity(org.admin, oldest["id"])
    assert "Hello there." in shown["preview"] and shown["mailboxes"] == [login]

    again = sync(org)
    assert [(m.messages, m.recorded) for m in again.mailboxes] == [(0, 0)]
    assert listed(org)["total"] == 2
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == 2
    status = query(org.db_path, "SELECT state, items_total, last_incoming_success IS NOT NULL, worker "
                                "FROM sync_status")[0]
    assert tuple(status) == ("idle", 2, True, None)


def test_mail_that_arrived_before_the_mailbox_was_enabled_is_not_read(org, lab_profile):
    [login] = org.lab.add_users(1, "syncold")
    queue_mailbox(org, login)
    deliver(org, login, message("old@outside.test", login, "Before enabling"))
    time.sleep(1.1)  # INTERNALDATE has whole seconds
    org.clock.now = utcnow()
    enable(org, login)
    deliver(org, login, message("new@outside.test", login, "After enabling"))

    sync(org)
    assert [row["subject"] for row in listed(org)["rows"]] == ["After enabling"]


def test_mail_received_in_the_same_second_as_process_email_received_after_is_read(org, lab_profile):
    """INTERNALDATE has whole seconds: a boundary within a second reads what arrived in that second,
    which may have come after it (R24); the second before is not read."""
    [login] = org.lab.add_users(1, "syncsecond")
    second = datetime(2026, 12, 6, 9, 30, 15, tzinfo=timezone.utc)
    enable(org, queue_mailbox(org, login, process_email_after=(second + timedelta(milliseconds=500)).isoformat()))
    with imap(org, login) as client:
        for subject, arrived in (("Second before", second - timedelta(seconds=1)), ("Same second", second),
                                 ("Second after", second + timedelta(seconds=1))):
            client.append("INBOX", message("a@outside.test", login, subject), msg_time=arrived)

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.recorded) == (True, 2), cycled
    assert [(row["subject"], str(row["received_on"])) for row in listed(org)["rows"]] == [
        ("Second after", "2026-12-06 09:30:16"), ("Same second", "2026-12-06 09:30:15")]


def test_only_enabled_approved_mailboxes_on_active_profiles_are_read(org, lab_profile):
    org.profile("retired", verify_delivery=False)
    enabled, not_enabled, on_retired = org.lab.add_users(3, "syncsel")
    [unapproved] = org.lab.add_users(1, "syncselu")
    queue_mailbox(org, enabled)
    queue_mailbox(org, not_enabled)
    queue_mailbox(org, on_retired, profile="retired")
    settings.update(org.admin, require_approval_users=False)
    user_mailbox(org, unapproved, approve=False)
    enable(org, enabled, on_retired, unapproved)
    for login in (enabled, not_enabled, on_retired, unapproved):
        deliver(org, login, message("x@outside.test", login, f"for {login}"))
    profiles.update(org.admin, "retired", active=False)
    settings.update(org.admin, require_approval_users=True)  # R23: approved where approval is required

    summary = sync(org)
    assert [m.email for m in summary.mailboxes] == [enabled]


# -- the checkpoint ------------------------------------------------------------------------------------

def test_a_new_uidvalidity_rereads_the_folder_without_duplicates(org, lab_profile):
    [login] = org.lab.add_users(1, "syncuv")
    enable(org, queue_mailbox(org, login))
    deliver(org, login, message("a@outside.test", login, "One"))
    sync(org)
    before = query(org.db_path, "SELECT uidvalidity FROM sync_checkpoint")[0][0]

    # Recreating the folder's UID list is how a server renumbers it: move the messages aside, let
    # Dovecot forget them, then put them back (new UIDVALIDITY, new UIDs).
    with imap(org, login) as client:
        client.create_folder("Aside")
        client.select_folder("INBOX")
        client.move(client.search(["ALL"]), "Aside")
    maildir = org.lab._accounts.home(login) / "Maildir"
    for name in ("dovecot-uidlist", "dovecot.index", "dovecot.index.log", "dovecot.index.cache"):
        (maildir / name).unlink(missing_ok=True)
    time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
    with imap(org, login) as client:
        client.select_folder("Aside")
        client.move(client.search(["ALL"]), "INBOX")
    deliver(org, login, message("b@outside.test", login, "Two"))

    summary = sync(org)
    after = query(org.db_path, "SELECT uidvalidity FROM sync_checkpoint")[0][0]
    assert after != before, "the lab did not renumber the folder"
    assert summary.mailboxes[0].messages == 2, "the renumbered folder is read again"
    assert sorted(row["subject"] for row in listed(org)["rows"]) == ["One", "Two"]
    assert query(org.db_path, "SELECT count(*) FROM activity_receipt")[0][0] == 2


def test_the_same_message_in_two_mailboxes_is_one_activity_with_two_parties(org, lab_profile):
    first, second = org.lab.add_users(2, "syncdup")
    enable(org, queue_mailbox(org, first), queue_mailbox(org, second))
    shared = message("c@outside.test", f"{first}, {second}", "To both", message_id="<shared-1@lab.test>")
    deliver(org, first, shared)
    deliver(org, second, shared)

    sync(org)
    found = listed(org)
    assert found["total"] == 1
    assert sorted(found["rows"][0]["parties"]) == sorted([first, second])
    assert sorted(activities.show_activity(org.admin, found["rows"][0]["id"])["mailboxes"]) == sorted([first, second])


def test_polling_interval_keeps_a_mailbox_from_being_read_again_too_soon(org):
    org.profile("slow", verify_delivery=False, min_polling_minutes=15)
    [login] = org.lab.add_users(1, "syncpoll")
    enable(org, queue_mailbox(org, login, profile="slow"))
    sync(org, now=False)
    deliver(org, login, message("d@outside.test", login, "Soon after"))

    assert sync(org, now=False).mailboxes == [], "R24: not due before its polling interval"
    assert listed(org)["total"] == 0
    org.clock.advance(minutes=15)
    assert [m.messages for m in sync(org, now=False).mailboxes] == [1]
    assert sync(org, now=True).mailboxes[0].messages == 0, "--now cycles it at once, and reads nothing twice"


# -- tracking and routing ------------------------------------------------------------------------------

def test_users_track_only_replies_to_tracked_email_by_default(org, lab_profile):
    queue_login, user_login = org.lab.add_users(2, "synctrack")
    enable(org, queue_mailbox(org, queue_login), user_mailbox(org, user_login))
    deliver(org, queue_login, message("e@outside.test", queue_login, "Question", message_id="<q-1@lab.test>"))
    sync(org)
    deliver(org, user_login, message("f@outside.test", user_login, "Newsletter"))
    deliver(org, user_login, message("e@outside.test", user_login, "Re: Question",
                                     extra="In-Reply-To: <q-1@lab.test>\r\n"))

    summary = sync(org, user_login)
    assert summary.mailboxes[0].messages == 2
    assert sorted(row["subject"] for row in listed(org, regarding=user_login)["rows"]) == ["Re: Question"]
    assert len(server_message_ids(org, user_login)) == 2, "R18: a user's mailbox never deletes"


def test_a_forward_mailbox_routes_by_recipient_keeps_the_unresolved_and_deletes_what_it_processed(org, lab_profile):
    forward, routed_user = org.lab.add_users(2, "syncfwd")
    [queue_login] = org.lab.add_users(1, "syncfwdq")
    mailboxes.create_forward_mailbox(org.admin, name="Forward", email=forward, profile="lab")
    bulk.approve(org.admin, Selection.of_emails([forward]))
    credentials.set_mailbox_secret(org.admin, forward, org.lab.users[forward], org.store)
    enable(org, forward)
    user_mailbox(org, routed_user, incoming_method="forward_mailbox")
    queue_mailbox(org, queue_login, incoming_method="forward_mailbox")
    enable(org, routed_user, queue_login)
    deliver(org, forward, message("g@outside.test", queue_login, "For the queue"))
    deliver(org, forward, message("h@outside.test", "someone@else.test", "For nobody",
                                  extra="Delivered-To: nobody@lab.test\r\n"))
    deliver(org, forward, message("i@outside.test", "list@outside.test", "Via Delivered-To",
                                  extra=f"Delivered-To: {queue_login}\r\n"))

    summary = sync(org)
    assert [m.email for m in summary.mailboxes] == [forward], "R23: forward_mailbox users are not read themselves"
    [cycled] = summary.mailboxes
    assert (cycled.messages, cycled.unresolved, cycled.deleted) == (3, 1, 3)
    rows = {row["subject"]: row for row in listed(org)["rows"]}
    assert rows["For the queue"]["parties"] == [queue_login] and rows["For the queue"]["state"] == "received"
    assert rows["Via Delivered-To"]["parties"] == [queue_login]
    assert rows["For nobody"]["state"] == "unresolved" and rows["For nobody"]["parties"] == []
    assert query(org.db_path, "SELECT unresolved_total FROM sync_status s JOIN mailbox m ON m.id = s.mailbox_id "
                              "WHERE m.email = ?", [forward])[0][0] == 1
    assert server_message_ids(org, forward) == [], "R26: a forward mailbox deletes what it processed"
    [alert] = org.alerts(forward, code="UNRESOLVED_MESSAGES")
    assert alert.level == "warning" and "1 message(s)" in alert.text


# -- delete after processing (R28) ------------------------------------------------------------------

def test_delete_after_processing_deletes_only_after_the_commit(org, lab_profile):
    [login] = org.lab.add_users(1, "syncdel")
    enable(org, queue_mailbox(org, login, delete_after_processing=True))
    deliver(org, login, message("j@outside.test", login, "Delete me", message_id="<del-1@lab.test>"))

    with inserts_refused("sync_checkpoint"):
        failed = sync(org)
    assert [m.ok for m in failed.mailboxes] == [False]
    assert server_message_ids(org, login) == ["<del-1@lab.test>"], "nothing committed: nothing deleted"
    assert listed(org)["total"] == 0, "the activities roll back with the checkpoint"

    org.clock.advance(hours=1)
    done = sync(org)
    assert [(m.ok, m.recorded, m.deleted) for m in done.mailboxes] == [(True, 1, 1)]
    assert server_message_ids(org, login) == []
    assert listed(org)["total"] == 1


# -- broken messages (R25) ------------------------------------------------------------------------------

BROKEN = {
    "no message-id": b"From: a@outside.test\r\nTo: {to}\r\nSubject: no id\r\n\r\nbody\r\n",
    "broken boundary": (b"From: a@outside.test\r\nTo: {to}\r\nSubject: broken boundary\r\nMessage-ID: <bb@lab.test>\r\n"
                        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
                        b"--XYZ\r\nContent-Type: text/plain\r\n\r\npart one, never closed\r\n--XY\r\n"),
    "raw 8-bit header": ("From: Jörg <j@outside.test>\r\nTo: {to}\r\nSubject: Grüße aus Köln\r\n"
                         "Message-ID: <8bit@lab.test>\r\n\r\nbody\r\n").encode("utf-8"),
    "unknown charset": (b"From: a@outside.test\r\nTo: {to}\r\nSubject: =?x-unknown?Q?strange?=\r\n"
                        b"Message-ID: <cs@lab.test>\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n"
                        b"caf\xe9\r\n"),
    "huge header line": (b"From: a@outside.test\r\nTo: {to}\r\nSubject: huge\r\nMessage-ID: <huge@lab.test>\r\n"
                         b"X-Huge: " + b"y" * 1_000_000 + b"\r\n\r\nbody\r\n"),
    "no headers at all": b"\r\n\xff garbage only\r\n",
}


def test_broken_messages_each_end_as_an_activity_or_unparseable(org, lab_profile):
    [login] = org.lab.add_users(1, "syncbroken")
    enable(org, queue_mailbox(org, login))
    for raw in BROKEN.values():
        deliver(org, login, raw.replace(b"{to}", login.encode()))

    summary = sync(org)
    [cycled] = summary.mailboxes
    assert cycled.ok, cycled
    assert cycled.messages == len(BROKEN)
    rows = listed(org)["rows"]
    assert len(rows) == len(BROKEN)
    by_subject = {row["subject"]: row for row in rows}
    assert by_subject["Grüße aus Köln"]["sender"] == "j@outside.test"
    assert by_subject["no id"]["message_id"].endswith("@digest.mbxtui.invalid>")
    assert {row["state"] for row in rows} <= {"received", "unparseable"}
    assert [row["state"] for row in rows].count("unparseable") == 1
    assert "part one" in activities.show_activity(org.admin, by_subject["broken boundary"]["id"])["preview"]
    assert "caf" in activities.show_activity(org.admin, by_subject["=?x-unknown?Q?strange?="]["id"])["preview"]
    assert sync(org).mailboxes[0].messages == 0, "nothing stuck: the next cycle has nothing left"


def test_a_date_header_at_the_end_of_time_leaves_the_message_readable(org, lab_profile):
    # "Fri, 31 Dec 9999 23:30:00 -0100" is out of range once in UTC: the message was recorded
    # unparseable, its sender and subject lost.
    [login] = org.lab.add_users(1, "syncend")
    enable(org, queue_mailbox(org, login))
    deliver(org, login, message("far@outside.test", login, "Dated at the end of time").replace(
        b"Date: Sun, 06 Dec 2026 08:00:00 +0000", b"Date: Fri, 31 Dec 9999 23:30:00 -0100"))

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.messages, cycled.recorded) == (True, 1, 1), cycled
    [row] = listed(org, mailbox=login)["rows"]
    assert (row["state"], row["sender"], row["sent_on"]) == ("received", "far@outside.test", None)


# -- the command line ------------------------------------------------------------------------------------

def test_sync_once_prints_json_and_exits_3_when_a_mailbox_failed(org, lab_profile):
    good, bad = org.lab.add_users(2, "synccli")
    enable(org, queue_mailbox(org, good), queue_mailbox(org, bad))
    deliver(org, good, message("l@outside.test", good, "Via the CLI \x1b[31m red"))

    ran = org.cli("sync", "--once", "--now", "--json", good)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert (result["mailboxes"], result["failed"], result["messages"]) == (1, 0, 1)

    listing = org.cli("activity", "list", "--mailbox", good, "--json")
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert rows["total"] == 1
    assert set(rows["rows"][0]) == {"id", "message_id", "direction", "state", "subject", "sender", "to", "cc",
                                    "parties", "received_on", "sent_on", "size", "attachments"}
    shown = org.cli("activity", "show", str(rows["rows"][0]["id"]))
    assert shown.returncode == 0 and "\x1b" not in shown.stdout and "\\x1b" in shown.stdout

    usage = org.cli("sync", good)
    assert usage.returncode == 2 and "add --once" in usage.stderr, "only one cycle can be run from here for now"

    credentials.set_mailbox_secret(org.admin, bad, "not the password", org.store)
    failed = org.cli("sync", "--once", "--now", "--json", bad)
    assert failed.returncode == 3, failed.stderr
    [result] = json.loads(failed.stdout)["results"]
    assert (result["ok"], result["error_code"]) == (False, "AUTH_FAILED")


def test_two_runners_at_once_never_cycle_the_same_mailbox(org, lab_profile):
    logins = org.lab.add_users(4, "synctwo")
    enable(org, *(queue_mailbox(org, login) for login in logins))
    for login in logins:
        deliver(org, login, message("m@outside.test", login, f"for {login}"))
    results: list = []

    def run() -> None:
        try:
            results.append(SyncRunner(org.store, clock=org.clock, threads=2).run_once(ignore_interval=True))
        finally:
            database.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    cycled = [m.email for summary in results for m in summary.mailboxes if m.messages]
    assert sorted(cycled) == sorted(logins), "each mailbox read by exactly one runner"
    assert listed(org)["total"] == 4


def test_many_large_messages_are_read_in_batches_each_within_the_bounds(org, lab_profile):
    [login] = org.lab.add_users(1, "syncbig")
    enable(org, queue_mailbox(org, login))
    big_text = ("All work and no play. " * 5000)  # 110 KB: the preview is cut, the fetch bounded
    raws = [message("n@outside.test", login, f"Big {number:02}", body=big_text) for number in range(30)]
    with imap(org, login) as client:
        for raw in raws:
            client.append("INBOX", raw)

    [cycled] = sync(org).mailboxes
    assert (cycled.ok, cycled.messages, cycled.recorded) == (True, 30, 30), cycled
    rows = listed(org, limit=100)["rows"]
    assert len(rows) == 30 and all(row["size"] > 110_000 for row in rows)
    preview = activities.show_activity(org.admin, rows[0]["id"])["preview"]
    assert preview.startswith("All work and no play.") and len(preview) == 4000
    assert query(org.db_path, "SELECT last_uid FROM sync_checkpoint")[0][0] == 30


@pytest.mark.skipif(ON_POSTGRES, reason="the conversation with the mail server: the backend does not matter")
def test_a_cycle_stopped_by_its_time_bound_leaves_the_headers_it_read_ahead_to_the_next(org):
    # A cycle sends the next batch's header FETCH behind the texts of the one before; when the
    # profile's time runs short after a batch, the headers read ahead are not recorded and the
    # checkpoint stays before them.
    time_bound = 6
    front = org.lab.imap_front()
    org.profile("bounded", incoming_port=front.port, verify_delivery=False, timeout_seconds=time_bound)
    [login] = org.lab.add_users(1, "bounded")
    enable(org, queue_mailbox(org, login, profile="bounded"))
    with imap(org, login) as client:
        for number in range(30):  # three batches
            client.append("INBOX", message("n@outside.test", login, f"Note {number:02}"))
    front.holding("UID FETCH", after=2)  # the second batch's headers, sent behind the first's texts
    release = threading.Timer(time_bound * 0.55, front.release)  # past half of it, well before its end
    release.start()
    try:
        [first] = sync(org).mailboxes
    finally:
        release.cancel()
        front.hold = None
    assert front.commands.count("UID FETCH") == 3, f"the second batch's headers were not read ahead: {front.commands}"
    assert (first.ok, first.recorded) == (True, 12), first
    assert query(org.db_path, "SELECT last_uid FROM sync_checkpoint")[0][0] == 12

    [second] = sync(org).mailboxes
    assert (second.ok, second.recorded) == (True, 18), second
    assert sorted(row["subject"] for row in listed(org, limit=100)["rows"]) == [f"Note {n:02}" for n in range(30)]
    assert query(org.db_path, "SELECT last_uid FROM sync_checkpoint")[0][0] == 30


def test_a_mailbox_held_by_a_worker_that_died_is_taken_over_when_its_lease_ends(org, lab_profile):
    [login] = org.lab.add_users(1, "syncdead")
    enable(org, queue_mailbox(org, login))
    sync(org)
    deliver(org, login, message("o@outside.test", login, "While the other worker was gone"))
    database.execute_sql("UPDATE sync_status SET worker = 'elsewhere:1:dead:sync', state = 'processing', "
                         "lease_until = ?", [org.clock.now + timedelta(minutes=1)])

    assert sync(org).mailboxes == [], "another worker holds it"
    org.clock.advance(minutes=2)
    assert [m.messages for m in sync(org).mailboxes] == [1]
    assert tuple(query(org.db_path, "SELECT worker, state FROM sync_status")[0]) == (None, "idle")


def test_cycles_stay_within_the_profiles_connection_bound(org):
    logins = org.lab.add_users(6, "syncbound")
    with org.lab.connection_counter("imaps") as imaps:
        org.profile("narrow", verify_delivery=False, max_connections=2, incoming_port=imaps.port)
        enable(org, *(queue_mailbox(org, login, profile="narrow") for login in logins))
        for login in logins:
            deliver(org, login, message("p@outside.test", login, f"for {login}"))
        before = imaps.start_counting()
        summary = SyncRunner(org.store, clock=org.clock, threads=6).run_once(ignore_interval=True)
    assert sorted(m.email for m in summary.mailboxes if m.messages == 1) == sorted(logins)
    assert imaps.total - before == 6
    assert imaps.max_concurrent == 2, f"R23: at most the profile's max connections, never more: {imaps!r}"


def test_only_roles_that_may_run_test_and_enable_may_run_a_cycle(org, lab_profile):
    [login] = org.lab.add_users(1, "syncrole")
    enable(org, queue_mailbox(org, login))
    deliver(org, login, message("q@outside.test", login, "Not for viewers"))
    operators.add(org.admin, "vic", "viewer")
    with pytest.raises(PermissionDenied, match="vic is viewer and may not run Test & Enable"):
        sync_once(operators.current_actor(login="vic"), org.store)
    assert query(org.db_path, "SELECT count(*) FROM sync_status WHERE last_cycle_started IS NOT NULL")[0][0] == 0
    assert listed(org)["total"] == 0
    with pytest.raises(NotFound, match="no mailbox has the address ghost@example.test"):
        sync_once(org.admin, org.store, ["ghost@example.test"])
    assert [m.messages for m in sync_once(org.admin, org.store, [login]).mailboxes] == [1]
