"""The Sync monitor's figures (R31) and one mailbox's sync status, over sync rows as processing leaves
them: activities written by a cycle's own transaction (core/sync/store.py), status rows in each
processing state, on the real database of the suite's backend."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mbxtui.core.models import database
from mbxtui.core.services import mailboxes, profiles, sync_monitor, users
from mbxtui.core.services.sync_monitor import NEVER_CYCLED
from mbxtui.core.sql_lists import placeholders
from mbxtui.core.sync import store
from mbxtui.core.sync.messages import ParsedMessage
from mbxtui.core.sync.routing import Party
from tests.core.support import EXCHANGE_ONLINE_PROFILE, IMAP_PROFILE, set_test_results

NOW = datetime(2026, 12, 6, 12, 30, 40)
STATUS_COLUMNS = ("state", "last_incoming_success", "enabled_since", "last_error_code", "last_error_text",
                  "items_last_cycle", "items_total", "next_due", "last_cycle_started", "last_cycle_finished")


def ago(**delta: float) -> str:
    return str(NOW - timedelta(**delta))


def status(email: str, **columns) -> int:
    """The sync status row of ``email`` with these columns (the rest as a cycle leaves them)."""
    mailbox_id = mailboxes.get(email).id
    values = {"state": "idle", "items_last_cycle": 0, "items_total": 0, "unresolved_total": 0,
              "last_cycle_started": ago(minutes=1), **columns}
    names = ", ".join(values)
    database.execute_sql(f"INSERT INTO sync_status (mailbox_id, {names}) VALUES (?, {placeholders(values)})",
                         [mailbox_id, *values.values()])
    return mailbox_id


def enable(*emails: str) -> None:
    for email in emails:
        set_test_results(email, incoming_status="success", incoming_enabled=True, incoming_method="server_side_sync")


@pytest.fixture
def organisation(admin, default_profile):
    """Eight users on the IMAP profile and one queue on a second profile, all enabled for incoming."""
    profiles.create(admin, **{**IMAP_PROFILE, "name": "Branch"})
    for index in range(8):
        users.add_user(admin, f"User {index}", f"u{index}@corp.test")
    users.add_queue(admin, "Support", "support@corp.test", "u0@corp.test")
    mailboxes.edit(admin, "support@corp.test", profile="Branch")
    enable(*(f"u{index}@corp.test" for index in range(8)), "support@corp.test")
    return admin


def recorded(mailbox_id: int, first_uid: int, count: int, at: datetime) -> None:
    """``count`` messages recorded by a cycle that started at ``at``, through the cycle's own write."""
    queue_id = mailboxes.get("support@corp.test").queue_id
    items = [store.Fetched(uid, at - timedelta(hours=3), ParsedMessage(
        message_id=f"<{uid}@corp.test>", subject=f"Message {uid}", sender="x@outside.test", to=["support@corp.test"]))
        for uid in range(first_uid, first_uid + count)]
    store.record_batch(mailbox_id, "INBOX", 1, first_uid + count, items, Party(None, queue_id, "all"), None, at)


def test_states_failures_stale_and_lag_of_the_processed_mailboxes(organisation, actors):
    status("u0@corp.test", last_incoming_success=ago(minutes=2))
    status("u1@corp.test", state="processing", last_incoming_success=ago(minutes=40))
    status("u2@corp.test", state="waiting", last_incoming_success=ago(hours=30), last_error_code="TIMEOUT")
    status("u3@corp.test", state="waiting", enabled_since=ago(hours=2), last_error_code="TIMEOUT")
    status("u4@corp.test", state="disabled", last_error_code="AUTH_FAILED", last_incoming_success=ago(hours=50))
    set_test_results("u4@corp.test", incoming_enabled=False)  # processing disabled it (R30): no longer lagging
    status("u5@corp.test", enabled_since=ago(hours=25), last_cycle_started=None)  # as Test & Enable made it a
    # day ago, never cycled since: stale
    status("support@corp.test", last_incoming_success=ago(hours=3))
    users.deactivate_user(organisation, "u6@corp.test")
    status("u6@corp.test", last_error_code="TIMEOUT", last_incoming_success=ago(days=9))  # inactive: not counted
    # u7 is enabled and was never claimed.

    seen = sync_monitor.snapshot(actors.viewer, NOW)

    assert seen.states == {"idle": 2, "processing": 1, "waiting": 2, "disabled": 1, NEVER_CYCLED: 2}
    assert seen.failures == [("TIMEOUT", 2), ("AUTH_FAILED", 1)]
    assert (seen.stale, seen.stale_hours) == (2, 24)  # u2 (30 h) and u5 (enabled 25 h ago)
    head_office, branch = seen.lags
    assert (head_office.profile, head_office.mailboxes, head_office.oldest_success) == ("imap", 5, ago(hours=30))
    assert (head_office.lag_seconds, head_office.never_succeeded, head_office.stale) == (30 * 3600, 2, 2)
    assert (branch.profile, branch.lag_seconds, branch.never_succeeded, branch.stale) == ("Branch", 3 * 3600, 0, 0)


def test_the_stale_threshold_is_the_organisations(organisation, actors):
    status("u0@corp.test", last_incoming_success=ago(hours=3))
    assert sync_monitor.snapshot(actors.viewer, NOW).stale == 0
    database.execute_sql("UPDATE org_settings SET stale_hours = 2")  # what settings set --stale-hours writes
    seen = sync_monitor.snapshot(actors.viewer, NOW)
    assert (seen.stale, seen.stale_hours) == (1, 2)


def test_messages_per_minute_over_the_last_hour(organisation, actors):
    support = status("support@corp.test", last_incoming_success=ago(minutes=1))
    recorded(support, 1, 3, NOW - timedelta(seconds=30))  # this minute (12:30)
    recorded(support, 10, 2, NOW - timedelta(minutes=5))  # 12:25
    recorded(support, 20, 4, NOW - timedelta(minutes=59))  # 11:31: the first minute shown
    recorded(support, 30, 5, NOW - timedelta(minutes=61))  # 11:29: before the hour
    seen = sync_monitor.snapshot(actors.viewer, NOW)
    assert len(seen.per_minute) == 60
    assert (seen.per_minute[-1], seen.per_minute[-6], seen.per_minute[0]) == (3, 2, 4)
    assert seen.messages_last_hour == 9


def test_messages_per_minute_with_no_activity_and_with_only_old_ones(organisation, actors):
    assert sync_monitor.snapshot(actors.viewer, NOW).per_minute == [0] * 60
    support = status("support@corp.test")
    recorded(support, 1, 3, NOW - timedelta(days=2))
    assert sync_monitor.snapshot(actors.viewer, NOW).per_minute == [0] * 60
    recorded(support, 10, 2, NOW - timedelta(minutes=3))
    assert sync_monitor.snapshot(actors.viewer, NOW).per_minute[-4] == 2


def test_messages_per_minute_count_the_hours_activities_whatever_their_ids(organisation, actors):
    """A cycle that ran long commits its rows (created_on: when it started) after newer ones: the
    hour's rows are found by their time, not by ids growing with it."""
    support = status("support@corp.test")
    recorded(support, 1, 3, NOW - timedelta(minutes=2))
    recorded(support, 10, 6, NOW - timedelta(days=2))
    seen = sync_monitor.snapshot(actors.viewer, NOW)
    assert (seen.per_minute[-3], seen.messages_last_hour) == (3, 3)


def test_the_grid_reads_each_rows_sync_state_and_last_sync(organisation, actors):
    from mbxtui.core.services.mailbox_pages import GridQuery, MailboxPages

    u0 = status("u0@corp.test", state="waiting", last_incoming_success=ago(hours=2))
    u1 = mailboxes.get("u1@corp.test").id
    pages = MailboxPages(actors.viewer)
    rows = pages.rows([u0, u1])
    assert (rows[u0].sync_state, rows[u0].last_sync) == ("waiting", ago(hours=2))
    assert (rows[u1].sync_state, rows[u1].last_sync) == (None, None)
    head = pages.start_ordered_ids(GridQuery(view="all", sort="email"))
    for mailbox_id, row in head.rows.items():  # PostgreSQL reads the first page's rows with the ids
        assert row == pages.rows([mailbox_id])[mailbox_id]


def test_never_cycled_reads_the_mailboxes_only_while_some_enabled_one_has_no_status_row(organisation, actors):
    """Every mailbox enabled for incoming with its status row: the count of the enabled ones equals
    that of their rows and none is read; a row missing: those without one are found and counted
    when they are processed (active, server-side sync, an IMAP or POP3 profile)."""
    profiles.create(organisation, **{**EXCHANGE_ONLINE_PROFILE, "name": "Cloud"})
    users.add_user(organisation, "Exchanged", "ex@corp.test")
    mailboxes.edit(organisation, "ex@corp.test", profile="Cloud")
    enable("ex@corp.test")
    users.add_user(organisation, "Sender", "out@corp.test")
    set_test_results("out@corp.test", outgoing_status="success", outgoing_enabled=True)  # no incoming: no row needed
    for index in range(8):
        status(f"u{index}@corp.test", last_incoming_success=ago(minutes=5))
    status("support@corp.test", last_incoming_success=ago(minutes=5))
    assert sync_monitor.snapshot(actors.viewer, NOW).states[NEVER_CYCLED] == 0, "the Exchange mailbox has no row"
    status("ex@corp.test", last_cycle_started=None)  # as Test & Enable makes it: not processed, not counted
    assert sync_monitor.snapshot(actors.viewer, NOW).states[NEVER_CYCLED] == 0

    for email in ("u3@corp.test", "support@corp.test"):  # enabled before Test & Enable made rows
        database.execute_sql("DELETE FROM sync_status WHERE mailbox_id = ?", [mailboxes.get(email).id])
    assert sync_monitor.snapshot(actors.viewer, NOW).states[NEVER_CYCLED] == 2
    set_test_results("support@corp.test", incoming_method="none")
    assert sync_monitor.snapshot(actors.viewer, NOW).states[NEVER_CYCLED] == 1
