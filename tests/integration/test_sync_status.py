"""Failures while processing (R30) and the sync status with its staleness (R31), against the lab's
Dovecot: a wrong password is a permanent failure, a server that refuses connections a transient
one (a relay in front of Dovecot taken down and brought back on the same port); ``mailbox show``'s
sync block and ``mbxtui check`` for monitoring systems."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
from datetime import timedelta
from email.utils import make_msgid

import pytest
from imapclient import IMAPClient

from mbxtui.core.db import write_transaction
from mbxtui.core.models import database
from mbxtui.core.probes.base import ErrorCode, Failure, Step
from mbxtui.core.services.mailbox_pages import GridQuery, MailboxPages
from mbxtui.core.services import (
    bulk, credentials, health, mailbox_views, mailboxes, operators, settings, sync_monitor, users,
)
from mbxtui.core.services.selection import Selection
from mbxtui.core.sync import status
from mbxtui.core.sync.runner import SyncRunner
from mbxtui.tui.screens.mailbox_detail import sync_text
from mbxtui.tui.widgets.grid_drawing import row_view
from tests.backends import query
from tests.integration.conftest import PROFILE_OWNER, Org

pytestmark = pytest.mark.servers

SYNC_KEYS = {"state", "last_cycle_started", "last_cycle_finished", "last_incoming_success", "last_outgoing_success",
             "items_last_cycle", "items_total", "next_due", "last_error", "stale", "not_processed"}
STATUS_LINE = re.compile(r"^MBXTUI (OK|WARNING|CRITICAL|UNKNOWN) - (.+?)(?: \| (.+))?$")


class Outage:
    """A TCP relay to a lab port that can be taken down (connections refused) and brought back on
    the same port, so that the profile's endpoint (and the secret bound to it, R34) stays the same."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener, self._stop = listener, threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(listener, self._stop), daemon=True)
        self._thread.start()

    def down(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        self._listener = None

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, target), daemon=True).start()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- helpers --------------------------------------------------------------------------------------

def deliver(org: Org, login: str, subject: str) -> None:
    raw = (f"From: someone@outside.test\r\nTo: {login}\r\nSubject: {subject}\r\n"
           f"Message-ID: {make_msgid(domain='lab.test')}\r\n\r\nHello.\r\n").encode()
    with IMAPClient(org.lab.host, port=org.lab.ports["imaps"],
                    ssl_context=ssl.create_default_context(cafile=org.lab.ca_file), timeout=10) as client:
        client.login(login, org.lab.users[login])
        client.append("INBOX", raw)


def user_mailbox(org: Org, login: str, profile: str = "lab") -> str:
    org.mailbox(login, profile, outgoing_method="none")
    return login


def queue_mailbox(org: Org, login: str, profile: str = "lab") -> str:
    users.add_queue(org.admin, login.split("@")[0], login, PROFILE_OWNER)
    mailboxes.edit(org.admin, login, profile=profile, outgoing_method="none")
    bulk.approve(org.admin, Selection.of_emails([login]))
    credentials.set_mailbox_secret(org.admin, login, org.lab.users[login], org.store)
    return login


def enable(org: Org, *logins: str) -> None:
    summary = org.test_enable(*logins)
    assert summary.passed == len(logins), [org.row(login).last_error_text for login in logins]


def sync(org: Org, *emails: str, now: bool = False):
    return SyncRunner(org.store, clock=org.clock).run_once(list(emails) or None, ignore_interval=now)


def sync_row(org: Org, login: str):
    rows = query(org.db_path, "SELECT s.* FROM sync_status s JOIN mailbox m ON m.id = s.mailbox_id WHERE m.email = ?",
                 [login])
    return rows[0] if rows else None


def in_view(org: Org, view: str) -> list[str]:
    return [row["email"] for row in mailbox_views.list_mailboxes(org.admin, view=view, limit=1000).rows]


def stale_alerts(org: Org, login: str) -> list:
    return org.alerts(login, code=status.STALE_CODE)


@pytest.fixture
def lab_profile(org: Org) -> str:
    org.profile("lab", verify_delivery=False)
    return "lab"


# -- R30: failures while processing ---------------------------------------------------------------

def test_a_permanent_failure_disables_incoming_at_once_alerts_both_owners_and_lands_in_failed(org, lab_profile):
    [login] = org.lab.add_users(1, "stperm")
    enable(org, user_mailbox(org, login))
    assert [m.ok for m in sync(org).mailboxes] == [True]
    credentials.set_mailbox_secret(org.admin, login, "not the password", org.store)

    [cycled] = sync(org, now=True).mailboxes
    assert (cycled.ok, cycled.error_code) == (False, "AUTH_FAILED")
    row = org.row(login)
    assert (row.incoming_enabled, row.incoming_status, row.overall_status, row.last_error_code) == (
        False, "failure", "failure", "AUTH_FAILED"), "R30: permanent disables that direction at once"
    state = sync_row(org, login)
    assert (state["state"], state["incoming_failures"], state["last_error_code"]) == ("disabled", 0, "AUTH_FAILED")
    assert login in in_view(org, "failed"), "R30: it shows in Test and Enable Failed"
    [alert] = org.alerts(login, level="error")
    assert alert.code == "AUTH_FAILED" and login in alert.text and f"mbxtui test-enable {login}" in alert.text
    assert alert.mailbox_owner_id == row.owner_id == org.user_id(login), "to the mailbox owner"
    assert alert.profile_owner_id == org.user_id(PROFILE_OWNER), "and to the profile owner"
    assert sync(org, now=True).mailboxes == [], "a disabled direction is not processed"

    # Test & Enable enables it again: processing starts over.
    credentials.set_mailbox_secret(org.admin, login, org.lab.users[login], org.store)
    enable(org, login)
    state = sync_row(org, login)
    assert (state["state"], state["incoming_failures"], state["next_due"], state["last_error_code"]) == (
        "idle", 0, None, None)
    assert login not in in_view(org, "failed")
    assert [m.ok for m in sync(org).mailboxes] == [True], "due at once after being enabled again"


def test_transient_failures_wait_and_retry_then_disable_after_the_retry_budget(org):
    settings.update(org.admin, retry_attempts=2, retry_interval_minutes=5)
    outage = Outage(org.lab.ports["imaps"])
    try:
        org.profile("flaky", verify_delivery=False, incoming_port=outage.port)
        [login] = org.lab.add_users(1, "sttrans")
        enable(org, user_mailbox(org, login, "flaky"))
        outage.down()

        [first] = sync(org).mailboxes
        assert (first.ok, first.error_code) == (False, "CONNECTION_REFUSED")
        state = sync_row(org, login)
        assert (state["state"], state["incoming_failures"]) == ("waiting", 1)
        assert str(state["next_due"])[:19] == str(org.clock.now + timedelta(minutes=5))[:19]
        assert org.row(login).incoming_enabled, "transient: still enabled, waiting for the retry"
        assert login not in in_view(org, "failed")
        [warning] = org.alerts(login, level="warning")
        assert warning.code == "CONNECTION_REFUSED" and "retry 1 of 2" in warning.text
        assert sync(org).mailboxes == [], "not retried before the retry interval is over"

        org.clock.advance(minutes=5)
        assert [m.error_code for m in sync(org).mailboxes] == ["CONNECTION_REFUSED"]
        assert (sync_row(org, login)["state"], sync_row(org, login)["incoming_failures"]) == ("waiting", 2)
        assert len(org.alerts(login, level="warning")) == 1, "one warning for the stretch, not one per retry"

        org.clock.advance(minutes=5)
        assert [m.error_code for m in sync(org).mailboxes] == ["CONNECTION_REFUSED"]
        row = org.row(login)
        assert (row.incoming_enabled, row.incoming_status) == (False, "failure"), "out of retries: disabled"
        assert (sync_row(org, login)["state"], sync_row(org, login)["incoming_failures"]) == ("disabled", 3)
        assert login in in_view(org, "failed")
        error = org.alerts(login, level="error")[-1]
        assert error.code == "CONNECTION_REFUSED" and "still failing after 3 attempts" in error.text
    finally:
        outage.down()


def test_a_successful_cycle_clears_the_transient_count(org):
    outage = Outage(org.lab.ports["imaps"])
    try:
        org.profile("flaky", verify_delivery=False, incoming_port=outage.port)
        [login] = org.lab.add_users(1, "stclear")
        enable(org, user_mailbox(org, login, "flaky"))
        outage.down()
        assert [m.ok for m in sync(org).mailboxes] == [False]
        assert sync_row(org, login)["incoming_failures"] == 1

        outage.up()
        org.clock.advance(minutes=5)
        assert [m.ok for m in sync(org).mailboxes] == [True]
        state = sync_row(org, login)
        assert (state["state"], state["incoming_failures"], state["last_error_code"]) == ("idle", 0, None)
        assert state["last_incoming_success"] is not None
    finally:
        outage.down()


# -- R31: the sync status and staleness ----------------------------------------------------------

def make_stale(org: Org, login: str, hours: float = 25) -> None:
    database.execute_sql("UPDATE sync_status SET last_incoming_success = ? WHERE mailbox_id = ?",
                         [org.clock.now - timedelta(hours=hours), org.row(login).id])


def test_stale_view_and_one_stale_alert_per_stretch(org, lab_profile):
    fresh, stale, never, disabled = org.lab.add_users(4, "ststale")
    enable(org, *(queue_mailbox(org, login) for login in (fresh, stale, never, disabled)))
    sync(org, fresh, stale, disabled)
    make_stale(org, stale)
    make_stale(org, disabled)
    database.execute_sql("UPDATE mailbox SET incoming_enabled = 0 WHERE email = ?", [disabled])
    # Enabled long ago and never synced: stale since it was enabled.
    assert sync_row(org, never)["last_incoming_success"] is None, "Test & Enable wrote when it was enabled"
    database.execute_sql("UPDATE sync_status SET enabled_since = ? WHERE mailbox_id = ?",
                         [org.clock.now - timedelta(hours=30), org.row(never).id])

    assert sorted(in_view(org, "stale")) == sorted([stale, never]), "R31: its own view"
    grid_ids = MailboxPages(org.admin).ordered_ids(GridQuery(view="stale", sort="email"))
    assert list(grid_ids) == mailbox_views.ids_in_view(org.admin, view="stale", sort="email"), "the console's grid"
    assert mailbox_views.sync_of(org.admin, org.row(stale).id, org.clock.now)["stale"] is True
    assert mailbox_views.sync_of(org.admin, org.row(fresh).id, org.clock.now)["stale"] is False
    database.execute_sql("UPDATE org_settings SET stale_hours = 48")
    assert in_view(org, "stale") == [], "the organisation's threshold decides"
    database.execute_sql("UPDATE org_settings SET stale_hours = 24")

    sync(org, fresh)  # a pass raises the warnings at its end
    assert [a.level for a in stale_alerts(org, stale)] == ["warning"]
    assert len(stale_alerts(org, never)) == 1 and "since it was enabled" in stale_alerts(org, never)[0].text
    assert stale_alerts(org, fresh) == [] and stale_alerts(org, disabled) == []
    sync(org, fresh, now=True)
    assert status.raise_stale_alerts(org.clock.now) == 0
    assert len(stale_alerts(org, stale)) == 1, "once per stale stretch"

    deliver(org, stale, "back again")
    assert [m.ok for m in sync(org, stale, now=True).mailboxes] == [True]
    assert sync_row(org, stale)["stale_alerted_on"] is None, "a successful sync ends the stretch"
    assert stale not in in_view(org, "stale")
    make_stale(org, stale)
    assert status.raise_stale_alerts(org.clock.now) == 1
    assert len(stale_alerts(org, stale)) == 2, "a new stretch, a new warning"

    listed = org.cli("mailbox", "list", "--view", "stale", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["email"] for row in json.loads(listed.stdout)["rows"]) == sorted([stale, never])


def test_an_exchange_mailbox_says_it_is_not_read_and_is_never_stale(org, lab_profile):
    """Reading mail over Exchange is not supported yet: Test & Enable enables such a mailbox (its
    servers are tested over IMAP and SMTP), no cycle reads it, and nothing calls it stale (R31)."""
    org.profile("exchange", type="exchange_server", verify_delivery=False)
    exchanged, processed = org.lab.add_users(2, "stexch")
    enable(org, queue_mailbox(org, exchanged, profile="exchange"), queue_mailbox(org, processed))
    assert [m.email for m in sync(org, now=True).mailboxes] == [processed], "no cycle reads the Exchange mailbox"
    database.execute_sql("UPDATE sync_status SET enabled_since = ?", [org.clock.now - timedelta(hours=30)])
    make_stale(org, processed)

    assert in_view(org, "stale") == [processed]
    assert list(MailboxPages(org.admin).ordered_ids(GridQuery(view="stale", sort="email"))) == [org.row(processed).id]
    with write_transaction():
        assert status.raise_stale_alerts(org.clock.now) == 1
    assert stale_alerts(org, exchanged) == [] and len(stale_alerts(org, processed)) == 1
    assert health.health(org.admin, org.clock.now).stale == 1
    assert sync_monitor.snapshot(org.admin, org.clock.now).stale == 1

    shown = org.cli("mailbox", "show", exchanged, "--json")
    assert shown.returncode == 0, shown.stderr
    block = json.loads(shown.stdout)["sync"]
    assert block["stale"] is False and block["state"] is None
    assert block["not_processed"] == (
        "reading mail over Exchange (profile type exchange_server) is not supported yet: no cycle reads this "
        "mailbox's mail, even once Test & Enable enables it, so it is never counted as stale")
    section = org.cli("mailbox", "show", exchanged).stdout.split("\nSync\n", 1)[1]
    assert "not processed" in section and "Exchange" in section and "not supported yet" in section
    console = sync_text(mailbox_views.sync_of(org.admin, org.row(exchanged).id, org.clock.now))
    assert "Not processed" in console and "reading mail over Exchange" in console
    assert mailbox_views.sync_of(org.admin, org.row(processed).id, org.clock.now)["not_processed"] is None

    # The grid's Sync column and Test & Enable's enabled alert say so too (the alert once).
    ids = {org.row(exchanged).id: "not read", org.row(processed).id: "idle"}
    rows = MailboxPages(org.admin).rows(ids)
    assert {key: row_view(row).cells["sync_state"][0] for key, row in rows.items()} == ids
    connected = {email: [text for (text,) in query(
        org.db_path, "SELECT a.text FROM alert a JOIN mailbox m ON m.id = a.mailbox_id "
                     "WHERE a.code = 'CONNECTED' AND m.email = ?", [email])] for email in (exchanged, processed)}
    assert connected[exchanged] == [f"{exchanged} is connected: enabled for incoming. Its incoming mail will not be "
                                    f"read: {block['not_processed']}"]
    assert connected[processed] == [f"{processed} is connected: enabled for incoming"]


def test_mailbox_show_has_the_sync_block(org, lab_profile):
    [login] = org.lab.add_users(1, "stshow")
    enable(org, queue_mailbox(org, login))

    shown = org.cli("mailbox", "show", login, "--json")
    assert shown.returncode == 0, shown.stderr
    block = json.loads(shown.stdout)["sync"]
    assert set(block) == SYNC_KEYS
    assert {key: value for key, value in block.items() if key != "stale"} == dict.fromkeys(SYNC_KEYS - {"stale"})
    assert "not processed" not in org.cli("mailbox", "show", login).stdout
    assert block["stale"] is False

    deliver(org, login, "one")
    deliver(org, login, "two")
    sync(org, now=True)
    block = json.loads(org.cli("mailbox", "show", login, "--json").stdout)["sync"]
    assert (block["state"], block["items_last_cycle"], block["items_total"], block["last_error"]) == ("idle", 2, 2, None)
    for key in ("last_cycle_started", "last_cycle_finished", "last_incoming_success", "next_due"):
        assert block[key].startswith(str(org.clock.now.date())), key
    assert block["last_outgoing_success"] is None

    credentials.set_mailbox_secret(org.admin, login, "not the password", org.store)
    sync(org, now=True)
    block = json.loads(org.cli("mailbox", "show", login, "--json").stdout)["sync"]
    assert block["state"] == "disabled" and block["last_error"]["code"] == "AUTH_FAILED"
    assert block["last_error"]["text"]
    text = org.cli("mailbox", "show", login)
    assert text.returncode == 0, text.stderr
    section = text.stdout.split("\nSync\n", 1)[1]
    assert "state" in section and "disabled" in section and "AUTH_FAILED" in section


# -- mbxtui check ----------------------------------------------------------------------------------

def check(org: Org, *args: str, db: str | None = None) -> tuple[int, str, dict[str, str]]:
    command = org.cli_command("check", *args)
    if db is not None:
        command[command.index("--db") + 1] = db
    ran = subprocess.run(command, env=org.cli_env(), capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    lines = ran.stdout.splitlines()
    assert len(lines) == 1, ran.stdout + ran.stderr
    matched = STATUS_LINE.match(lines[0])
    assert matched, lines[0]
    perfdata = dict(item.split("=", 1) for item in (matched.group(3) or "").split())
    assert ran.returncode == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[matched.group(1)], lines[0]
    return ran.returncode, matched.group(1), perfdata


def test_check_follows_the_nagios_plugin_conventions(org, lab_profile, tmp_path):
    assert check(org)[:2] == (0, "OK")
    logins = org.lab.add_users(5, "stcheck")
    enable(org, *(queue_mailbox(org, login) for login in logins))
    sync(org, now=True)
    code, state, perfdata = check(org)
    assert (code, state) == (0, "OK")
    assert (perfdata["enabled"], perfdata["failing"], perfdata["stale"], perfdata["queued"]) == ("5", "0", "0", "0")
    assert re.fullmatch(r"\d+s", perfdata["oldest_sync"])

    credentials.set_mailbox_secret(org.admin, logins[0], "not the password", org.store)
    sync(org, logins[0], now=True)  # one of five failing: 20 %, not more than the default critical 20
    code, state, perfdata = check(org)
    assert (code, state, perfdata["failing"], perfdata["enabled"]) == (1, "WARNING", "1", "4")
    assert perfdata["problems"] == "20.0%;0;20;0;100"
    assert check(org, "--warning", "30", "--critical", "50")[:2] == (0, "OK")
    assert check(org, "--critical", "19")[:2] == (2, "CRITICAL")

    make_stale(org, logins[1])
    code, state, perfdata = check(org, "--warning", "30", "--critical", "60")
    assert (code, state, perfdata["stale"]) == (1, "WARNING", "1"), "two of five: 40 %"
    assert int(perfdata["oldest_sync"][:-1]) >= 25 * 3600

    ran = org.cli("check", "--json")
    figures = json.loads(ran.stdout)
    assert ran.returncode == 2 and figures["status"] == "CRITICAL"
    assert (figures["enabled"], figures["failing"], figures["stale"], figures["watched"]) == (4, 1, 1, 5)

    assert check(org, "--warning", "nope")[:2] == (3, "UNKNOWN")
    assert check(org, "--warning", "50", "--critical", "10")[:2] == (3, "UNKNOWN")
    missing = str(tmp_path / "nowhere" / "mbxtui.db") if not str(org.db_path).startswith("postgresql") else (
        str(org.db_path).rsplit("/", 1)[0] + "/no_such_database")
    assert check(org, db=missing)[:2] == (3, "UNKNOWN")
    assert not (tmp_path / "nowhere").exists(), "a probe creates no database"

    operators.add(org.admin, "vic", "viewer")
    seen = health.health(operators.current_actor(login="vic"), org.clock.now)
    assert (seen.enabled, seen.failing, seen.stale) == (4, 1, 1), "a viewer may read the figures"


def test_more_than_half_of_a_profiles_mailboxes_failing_alerts_its_owner_once(org, lab_profile):
    first, second, third = org.lab.add_users(3, "stprofile")
    enable(org, *(queue_mailbox(org, login) for login in (first, second, third)))
    credentials.set_mailbox_secret(org.admin, first, "not the password", org.store)
    sync(org, now=True)
    assert org.alerts(code="PROFILE_FAILING") == [], "one of three is not more than half"

    credentials.set_mailbox_secret(org.admin, second, "not the password either", org.store)
    sync(org, now=True)
    [alert] = org.alerts(code="PROFILE_FAILING")
    assert alert.level == "error" and alert.mailbox_id is None and alert.profile_owner_id == org.user_id(PROFILE_OWNER)
    assert "2 of 3 mailboxes of profile 'lab'" in alert.text
    credentials.set_mailbox_secret(org.admin, third, "wrong too", org.store)
    sync(org, now=True)
    assert len(org.alerts(code="PROFILE_FAILING")) == 1, "R16: at most one an hour"


def test_r16_counts_failed_tests_and_failed_processing_together(org, lab_profile):
    tested, processed, healthy = org.lab.add_users(3, "stmixed")
    enable(org, *(queue_mailbox(org, login) for login in (tested, processed, healthy)))
    credentials.set_mailbox_secret(org.admin, tested, "not the password", org.store)
    assert org.test_enable(tested).failed == 1
    assert org.alerts(code="PROFILE_FAILING") == [], "one of three is not more than half"

    credentials.set_mailbox_secret(org.admin, processed, "not the password either", org.store)
    sync(org, processed, now=True)
    [alert] = org.alerts(code="PROFILE_FAILING")
    assert alert.level == "error" and alert.mailbox_id is None and alert.profile_owner_id == org.user_id(PROFILE_OWNER)
    assert "2 of 3 mailboxes of profile 'lab' failed (1 their test, 1 while being processed) within the last hour" \
        in alert.text


def test_a_mailbox_that_passed_since_its_failure_no_longer_counts_for_r16(org, lab_profile):
    first, second, third = org.lab.add_users(3, "stmended")
    enable(org, *(queue_mailbox(org, login) for login in (first, second, third)))
    credentials.set_mailbox_secret(org.admin, first, "not the password", org.store)
    sync(org, first, now=True)
    credentials.set_mailbox_secret(org.admin, first, org.lab.users[first], org.store)
    enable(org, first)  # mended: Test & Enable passes again

    credentials.set_mailbox_secret(org.admin, second, "not the password either", org.store)
    sync(org, second, now=True)
    assert org.alerts(code="PROFILE_FAILING") == [], "one failing now of three, the other mended"


def test_the_outgoing_direction_waits_and_is_disabled_on_its_own(org, lab_profile):
    """What the sender hands to status.direction_failed / direction_succeeded (R29, R30)."""
    [login] = org.lab.add_users(1, "stout")
    org.mailbox(login, "lab")
    enable(org, login)
    assert org.row(login).outgoing_enabled
    sync(org, now=True)
    mailbox_id, due_before = org.row(login).id, sync_row(org, login)["next_due"]
    rules = settings.load()
    busy = Failure(Step.SEND, ErrorCode.SMTP_TEMPORARY, "451 try again later")
    with write_transaction():
        waited = status.direction_failed(mailbox_id, "outgoing", busy, rules, org.clock.now)
    assert (waited.disabled, waited.failures) == (False, 1)
    assert waited.retry_at == org.clock.now + timedelta(minutes=rules.retry_interval_minutes)
    state = sync_row(org, login)
    assert (state["state"], state["outgoing_failures"], state["incoming_failures"]) == ("waiting", 1, 0)
    assert state["next_due"] == due_before, "the incoming cycle keeps its own time"
    with write_transaction():
        status.direction_succeeded(mailbox_id, "outgoing", org.clock.now)
    state = sync_row(org, login)
    assert (state["state"], state["outgoing_failures"], state["last_error_code"]) == ("idle", 0, None)
    assert state["last_outgoing_success"] is not None

    refused = Failure(Step.SEND, ErrorCode.SENDER_REJECTED, "550 not your address")
    with write_transaction():
        assert status.direction_failed(mailbox_id, "outgoing", refused, rules, org.clock.now).disabled
    row = org.row(login)
    assert (row.outgoing_enabled, row.outgoing_status, row.incoming_enabled) == (False, "failure", True)
    assert login in in_view(org, "failed")
    assert org.alerts(login, level="error")[-1].code == "SENDER_REJECTED"
    with write_transaction():
        status.direction_succeeded(mailbox_id, "incoming", org.clock.now)
    assert sync_row(org, login)["state"] == "idle"
