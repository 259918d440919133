"""Alerts by email to owners (R32): with notify-owners on, R16 (in Test & Enable and in processing)
and a direction disabled by processing queue one email to the owner from the organisation's
notification mailbox, at most one an hour per profile or mailbox, also when two writers fire at
once. The lab's Dovecot makes the failures (a wrong password is AUTH_FAILED)."""

from __future__ import annotations

import email
import email.policy
import json
import ssl
import threading
import time
from datetime import timedelta
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient

from mbxtui.core.db import write_transaction
from mbxtui.core.jobs import failing_profiles
from mbxtui.core.models import database
from mbxtui.core.probes.base import ErrorCode, Failure, Step
from mbxtui.core.services import credentials, settings
from mbxtui.core.services.outgoing import queue_email
from mbxtui.core.sync import notices, status
from mbxtui.core.sync.outgoing import OutgoingRunner
from mbxtui.core.sync.runner import SyncRunner
from tests.backends import ON_POSTGRES, query
from tests.integration.conftest import PROFILE_OWNER, Org

pytestmark = pytest.mark.servers


# -- helpers --------------------------------------------------------------------------------------

def sent(org: Org) -> list[dict]:
    """The outgoing email activities, oldest first, as another process reads them."""
    rows = query(org.db_path, "SELECT a.*, m.email AS from_mailbox FROM email_activity a "
                              "LEFT JOIN mailbox m ON m.id = a.mailbox_id WHERE a.direction = 'outgoing' ORDER BY a.id")
    return [{**row, "to": json.loads(row["to"]), "cc": json.loads(row["cc"])} for row in rows]


def to(org: Org, address: str) -> list[dict]:
    return [email for email in sent(org) if email["to"] == [address]]


def user_mailbox(org: Org, login: str, profile: str = "lab", password: str | None = None) -> str:
    org.mailbox(login, profile, outgoing_method="none", password=password)
    return login


def sync(org: Org) -> None:
    SyncRunner(org.store, clock=org.clock).run_once(None, ignore_interval=True)


def hour_later(org: Org) -> None:
    """An hour passes for the rate limit: the notices' moments set back, no sleeping."""
    with write_transaction():
        database.execute_sql("UPDATE owner_notice SET sent_on = ?", [org.clock.now - timedelta(hours=1)])


def disable(org: Org, login: str, code: ErrorCode = ErrorCode.AUTH_FAILED) -> None:
    """What the incoming cycle hands to the status when the server refuses the mailbox for good."""
    with write_transaction():
        assert status.direction_failed(org.row(login).id, "incoming", Failure(Step.AUTHENTICATE, code, "refused by the server"),
                                       settings.load(), org.clock.now).disabled


@pytest.fixture
def notifier(org: Org) -> str:
    """The lab profile, notify-owners on, and a notification mailbox that may send."""
    org.profile("lab", verify_delivery=False)
    org.profile("notify", verify_delivery=False)  # not one of lab's mailboxes that R16 counts
    [login] = org.lab.add_users(1, "notifier")
    org.mailbox(login, "notify")
    settings.update(org.admin, notify_owners_of_profile_alerts=True)
    set_notification_mailbox(org, login)
    return login


def set_notification_mailbox(org: Org, login: str | None) -> None:
    settings.update(org.admin, notification_mailbox=login or "none")


# -- a mailbox disabled by processing -------------------------------------------------------------

def test_processing_disabling_a_mailbox_emails_its_owner_once_an_hour(org, notifier):
    [login] = org.lab.add_users(1, "ntdis")
    user_mailbox(org, login)
    org.test_enable(login)
    sync(org)
    assert sent(org) == [], "a mailbox that works: no email"
    credentials.set_mailbox_secret(org.admin, login, "not the password", org.store)

    sync(org)
    assert not org.row(login).incoming_enabled
    [email] = to(org, login)
    assert (email["from_mailbox"], email["sender"], email["to"], email["cc"]) == (notifier, notifier, [login], [])
    assert email["state"] == "pending" and email["message_id"].endswith(">")
    assert email["subject"] == f"mbxtui: incoming processing of {login} is disabled (AUTH_FAILED)"
    body = email["body"]
    assert body.startswith(f"Hello {login.split('@')[0]},\n\nIncoming processing of the mailbox {login} is disabled.\n")
    assert "Error code: AUTH_FAILED" in body
    assert f"incoming processing of {login} failed with AUTH_FAILED" in body, "the alert's sentence"
    assert f"    mbxtui test-enable {login}\n" in body, "the command that fixes it"
    assert "not the password" not in body and org.lab.users[login] not in body, "never a secret"

    disable(org, login)
    assert len(to(org, login)) == 1, "R32: at most one an hour per mailbox"
    hour_later(org)
    disable(org, login)
    assert len(to(org, login)) == 2, "an hour later: again"


def test_a_transient_failure_that_waits_emails_nobody(org, notifier):
    [login] = org.lab.add_users(1, "ntwait")
    user_mailbox(org, login)
    with write_transaction():
        waited = status.direction_failed(org.row(login).id, "incoming",
                                         Failure(Step.CONNECT, ErrorCode.CONNECTION_REFUSED, "refused"),
                                         settings.load(), org.clock.now)
    assert not waited.disabled
    assert sent(org) == []


# -- R16 ------------------------------------------------------------------------------------------

def test_r16_in_processing_emails_the_profile_owner_once_an_hour(org, notifier):
    logins = org.lab.add_users(3, "ntproc")
    for login in logins:
        user_mailbox(org, login)
    org.test_enable(*logins)
    for login in logins[:2]:
        credentials.set_mailbox_secret(org.admin, login, "wrong", org.store)
    sync(org)
    assert len(org.alerts(code="PROFILE_FAILING")) == 1
    [email] = to(org, PROFILE_OWNER)
    assert email["sender"] == notifier and email["subject"] == "mbxtui: profile lab is failing (PROFILE_FAILING)"
    assert "2 of 3 mailboxes of profile 'lab' failed while being processed" in email["body"]
    assert "Error code: PROFILE_FAILING" in email["body"]
    assert "    mbxtui profile test lab\n" in email["body"] and "mbxtui test-enable --profile lab" in email["body"]
    assert sorted(e["to"][0] for e in sent(org) if e["to"] != [PROFILE_OWNER]) == sorted(logins[:2]), (
        "and each disabled mailbox's owner her own")

    with write_transaction():
        database.execute_sql("DELETE FROM alert")  # R16's own once an hour out of the way
        failing_profiles.alert_failing_profiles([org.row(logins[0]).profile_id], org.clock.now)
    assert len(org.alerts(code="PROFILE_FAILING")) == 1 and len(to(org, PROFILE_OWNER)) == 1, "one email an hour"
    hour_later(org)
    with write_transaction():
        database.execute_sql("DELETE FROM alert")
        failing_profiles.alert_failing_profiles([org.row(logins[0]).profile_id], org.clock.now)
    assert len(to(org, PROFILE_OWNER)) == 2


def test_r16_in_test_and_enable_emails_the_profile_owner(org, notifier):
    good, *bad = org.lab.add_users(3, "ntjobs")
    user_mailbox(org, good)
    for login in bad:
        user_mailbox(org, login, password="wrong")
    summary = org.test_enable(good, *bad)
    assert (summary.passed, summary.failed) == (1, 2)
    [email] = sent(org)
    assert email["to"] == [PROFILE_OWNER] and email["sender"] == notifier
    assert "2 of 3 mailboxes of profile 'lab' failed their test" in email["body"]


def test_r16_from_a_failed_test_and_a_failed_send_together_emails_the_profile_owner(org, notifier):
    tested, sending, good, recipient = org.lab.add_users(4, "ntmixed")
    for login in (tested, sending, good):
        org.mailbox(login, "lab", incoming_method="none")
    assert org.test_enable(tested, sending, good).passed == 3
    credentials.set_mailbox_secret(org.admin, tested, "wrong", org.store)
    assert org.test_enable(tested).failed == 1
    assert to(org, PROFILE_OWNER) == [], "one of three is not more than half"

    credentials.set_mailbox_secret(org.admin, sending, "wrong", org.store)
    queue_email(org.admin, sending, [recipient], [], "Hello", "Body")
    assert [m.error_code for m in OutgoingRunner(org.store, clock=org.clock).run_once().mailboxes] == ["AUTH_FAILED"]
    [email] = to(org, PROFILE_OWNER)
    assert email["sender"] == notifier
    assert "2 of 3 mailboxes of profile 'lab' failed (1 their test, 1 while being processed)" in email["body"]


# -- nothing queued ------------------------------------------------------------------------------

def test_notify_owners_off_queues_nothing_and_warns_nobody(org, notifier):
    settings.update(org.admin, notify_owners_of_profile_alerts=False)
    [login] = org.lab.add_users(1, "ntoff")
    user_mailbox(org, login)
    disable(org, login)
    assert sent(org) == [] and org.alerts(code=notices.NOT_EMAILED_CODE) == []


def test_without_a_notification_mailbox_nothing_is_queued_and_a_warning_says_why_once_an_hour(org, notifier):
    set_notification_mailbox(org, None)
    [login] = org.lab.add_users(1, "ntnobox")
    user_mailbox(org, login)
    disable(org, login)
    disable(org, login)
    assert sent(org) == []
    [warning] = org.alerts(code=notices.NOT_EMAILED_CODE)
    assert warning.level == "warning" and warning.mailbox_id == org.row(login).id
    assert "no notification mailbox is set (mbxtui settings set --notification-mailbox EMAIL)" in warning.text

    set_notification_mailbox(org, notifier)
    disable(org, login)
    assert [e["to"] for e in sent(org)] == [[login]], "the warning's hour does not hold back the email"


def test_an_owner_without_an_email_address_or_no_owner_gets_nothing(org, notifier):
    [login] = org.lab.add_users(1, "ntnomail")
    user_mailbox(org, login)
    with write_transaction():
        database.execute_sql('UPDATE "user" SET email = \'\' WHERE id = ?', [org.row(login).owner_id])
    disable(org, login)
    with write_transaction():
        database.execute_sql("UPDATE profile SET owner_id = NULL")
        notices.profile_failing(org.row(login).profile_id, "lab", None, "PROFILE_FAILING", "failing", org.clock.now)
    assert sent(org) == []
    texts = [a.text for a in org.alerts(code=notices.NOT_EMAILED_CODE)]
    assert len(texts) == 2 and "has no email address" in texts[0] and "the profile lab has no owner" in texts[1]


def test_a_notification_mailbox_that_cannot_send_refuses_with_a_warning_and_keeps_the_hour_free(org, notifier):
    with write_transaction():
        database.execute_sql("UPDATE mailbox SET outgoing_method = 'none' WHERE email = ?", [notifier])
    [login] = org.lab.add_users(1, "ntnosend")
    user_mailbox(org, login)
    disable(org, login)
    assert sent(org) == []
    [warning] = org.alerts(code=notices.NOT_EMAILED_CODE)
    assert f"the mailbox {notifier} does not send email" in warning.text
    with write_transaction():
        database.execute_sql("UPDATE mailbox SET outgoing_method = 'server_side_sync' WHERE email = ?", [notifier])
    disable(org, login)
    assert len(sent(org)) == 1, "the refused email did not use up the owner's hour"


# -- what goes in the email ---------------------------------------------------------------------

def test_text_from_the_database_cannot_add_headers_or_lines(org, notifier):
    [login] = org.lab.add_users(1, "ntinject")
    user_mailbox(org, login)
    hostile = "lab\r\nBcc: victim@elsewhere.test\u2028\u200b"
    with write_transaction():
        database.execute_sql("UPDATE profile SET name = ? WHERE name = 'lab'", [hostile])
        database.execute_sql('UPDATE "user" SET name = ? WHERE email = ?', ["Eve\nX-Evil: 1", login])
        profile = org.row(login).profile_id
        notices.profile_failing(profile, hostile, org.user_id(PROFILE_OWNER), "PROFILE_FAILING",
                                "2 of 3 failed\nBcc: victim@elsewhere.test", org.clock.now)
        disable(org, login)
    profile_email, mailbox_email = sent(org)
    assert profile_email["to"] == [PROFILE_OWNER] and profile_email["cc"] == []
    subject = profile_email["subject"]
    assert "\n" not in subject and "\r" not in subject and "\u2028" not in subject and "\u200b" not in subject
    assert subject == "mbxtui: profile lab\\x0d\\x0aBcc: victim@elsewhere.test\\u2028\\u200b is failing (PROFILE_FAILING)"
    assert "\nBcc:" not in profile_email["body"] and "2 of 3 failed\\x0aBcc" in profile_email["body"]
    assert mailbox_email["body"].startswith("Hello Eve\\x0aX-Evil: 1,\n")


# -- two writers at once -------------------------------------------------------------------------

def test_two_writers_at_once_queue_one_email(org, notifier):
    """On PostgreSQL without the writers' lock (the claim alone must hold): the first holds its
    transaction open until the second waits on the notice's row, then commits; the second then
    finds the notice recent. On SQLite the write transactions queue one behind the other."""
    [login] = org.lab.add_users(1, "ntrace")
    user_mailbox(org, login)
    mailbox = org.row(login)
    for round_ in ("first notice", "an hour later"):
        before = len(sent(org))
        queued: list[int | None] = []
        first_done, errors = threading.Event(), []
        transaction = database.atomic if ON_POSTGRES else write_transaction

        def fire(first: bool) -> None:
            try:
                with transaction():
                    queued.append(notices.mailbox_disabled(mailbox.id, login, mailbox.owner_id, "incoming",
                                                           "AUTH_FAILED", "refused", org.clock.now))
                    if first:
                        first_done.set()
                        _wait_for_a_blocked_writer()
            except Exception as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)
            finally:
                database.close()

        one = threading.Thread(target=fire, args=(True,))
        one.start()
        assert first_done.wait(30)
        two = threading.Thread(target=fire, args=(False,))
        two.start()
        for thread in (one, two):
            thread.join(30)
        assert errors == [], errors
        assert len([q for q in queued if q is not None]) == 1, f"{round_}: one email, not two ({queued})"
        assert len(sent(org)) == before + 1
        hour_later(org)


def _wait_for_a_blocked_writer() -> None:
    """On PostgreSQL: until another session waits for a lock this one holds (at most 10 s). On
    SQLite the other writer cannot start its transaction before this one ends: a moment is enough
    for it to be waiting."""
    if not ON_POSTGRES:
        time.sleep(0.2)
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        database.execute_sql("SELECT pg_stat_clear_snapshot()")  # the view is read once per transaction
        waiting = database.execute_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("the second writer never waited for the first")


# -- end to end -----------------------------------------------------------------------------------

def test_the_notice_arrives_in_the_owners_dovecot_inbox(org, notifier):
    """The outgoing pass (R29) sends the queued notice through the lab's SMTP into Dovecot."""
    outgoing = pytest.importorskip("mbxtui.core.sync.outgoing",
                                   reason="the outgoing pass (core/sync/outgoing.py, R29) is not here yet")
    with write_transaction():
        database.execute_sql("UPDATE mailbox SET incoming_method = 'none' WHERE email = ?", [notifier])
    assert org.test_enable(notifier).passed == 1 and org.row(notifier).outgoing_enabled
    [login] = org.lab.add_users(1, "ntarrive")
    user_mailbox(org, login)
    disable(org, login)

    summary = outgoing.OutgoingRunner(org.store, clock=org.clock).run_once()
    assert (summary.sent, summary.failed) == (1, 0)
    [received] = [m for m in inbox(org, login) if m["From"] == notifier]
    assert received["To"] == login and received["Message-ID"] == sent(org)[0]["message_id"]
    assert received["Subject"] == f"mbxtui: incoming processing of {login} is disabled (AUTH_FAILED)"
    text = received.get_content().replace("\r\n", "\n")
    assert "Error code: AUTH_FAILED" in text and f"    mbxtui test-enable {login}\n" in text


def inbox(org: Org, login: str) -> list[EmailMessage]:
    """The lab user's INBOX over IMAP, oldest first."""
    with IMAPClient(org.lab.host, port=org.lab.ports["imaps"],
                    ssl_context=ssl.create_default_context(cafile=org.lab.ca_file), timeout=10) as client:
        client.login(login, org.lab.users[login])
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        answers = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
    return [email.message_from_bytes(answers[uid][b"BODY[]"], policy=email.policy.default) for uid in uids]
