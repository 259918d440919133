"""After the clock jumped back (see core/clock.py): the deadlines and moments written before the
jump lie hours ahead of the clock now. Left so, a dead worker's jobs and mailboxes would stay
leased for those hours, a retry and the next poll would wait them out, R16 and R32 would stay
silent and a stale mailbox would not show.

``bring_back`` moves each value that lies further ahead than anything written now could (a lease
beyond a lease from now, a retry beyond the retry interval, a poll beyond the profile's interval,
a moment of the past beyond now) to that furthest point. It only ever moves values closer, so it
is the same whichever process runs it and however often: a worker runs it when it sees the clock
jump back, and when it starts and finds a moment ahead of the clock (``left_ahead``: a jump back
while no worker ran). Every value ahead is found from an index (tests/hardening/
test_clock_jumps_plans.py). The caller holds the write transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from mbxtui.core import clock, dialect
from mbxtui.core.models import database

# How often a worker on PostgreSQL reads the server's clock again (core/clock.py): a jump of it
# is seen within this, and the monotonic clock keeps time in between.
FOLLOW_SECONDS = 10.0
_followed_at = float("-inf")

# Moments written as "now" (these, the sync status's below and a mailbox's last test and attempt):
# none may lie ahead of the clock. An alert's, because R16 raises none
# while one is younger than an hour (left 3 h ahead, it silenced R16 for 4 h); when a mailbox was
# enabled, because a mailbox never synced is stale that long after it (left ahead, it looked fresh);
# its last test, because R33 re-tests a mailbox that long after it (left ahead, 3 h late).
_PAST_MOMENTS = (("mailbox_failure", "failed_on"), ("owner_notice", "sent_on"),
                 ("sync_status", "last_incoming_success"), ("alert", "created_on"), ("alert", "dismissed_on"))

# The sync status's other moments written as "now", brought back in one statement, found by the
# latest of them (index sync_status_latest_moment, schema step 18, whose expression this is word for
# word): read whole, the table held every writer 0.2 s at 1,000,000 mailboxes (bench/README.md).
_SYNC_STATUS_MOMENTS = ("last_outgoing_success", "stale_alerted_on", "last_cycle_started", "last_cycle_finished",
                        "enabled_since")
_LATEST_MOMENT = {
    "sqlite": "max(" + ", ".join(f"coalesce(\"{column}\", '')" for column in _SYNC_STATUS_MOMENTS) + ")",
    "postgresql": "GREATEST(" + ", ".join(f'"{column}"' for column in _SYNC_STATUS_MOMENTS) + ")"}

# A mailbox's last attempt is written with its last test, at the same moment (jobs/runner.py): one
# ahead is among the tests ahead (index mailbox_test_completed_on) or among the few rows where the
# two differ (mailbox_test_attempt_apart, schema step 17, whose condition this is word for word).
# Its retry, likewise, from the partial index of the few mailboxes waiting for one. Read whole, the
# mailbox table held the lease renewal's write transaction, and so every writer, for two scans of
# it (bench/README.md, clock_jumps.py).
_APART = {"sqlite": "test_last_attempted_on IS NOT test_completed_on",
          "postgresql": "test_last_attempted_on IS DISTINCT FROM test_completed_on"}


def follow_database(*, at_once: bool = False) -> None:
    """On PostgreSQL, go by the database server's clock (see core/clock.py): read it when
    ``at_once`` or when the last reading is ``FOLLOW_SECONDS`` old. Nothing on SQLite."""
    if dialect.current().name != "postgresql":
        return
    if not at_once and clock.monotonic() - _followed_at < FOLLOW_SECONDS:
        return
    follow_server(database)


def follow_server(db) -> None:
    """Go by the clock of the PostgreSQL server ``db`` is connected to from now on. Every process
    that opens a PostgreSQL database does so at once (core/db.py), the console and the CLI too: a
    moment one writes (an alert, a queued email, a cancelled job) and a moment one judges by (the
    stale threshold, R16's hour) are the server's, whatever this host's clock says."""
    global _followed_at
    epoch = db.execute_sql("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0]
    clock.current().follow(float(epoch))
    _followed_at = clock.monotonic()


def left_ahead(now: datetime) -> bool:
    """Whether a moment written as "now" lies ahead of ``now``: the last successful sync, the
    latest alert (dismissed or not), failure (R16), owner's notice and test or attempt, or a
    retry or poll beyond its interval (maxima, each read from an index). A jump back while no
    worker ran leaves one of these ahead whatever it left: a mailbox tested and enabled just
    before it, never synced since, has its test ahead (and when it was enabled, written with
    it); one synced, its next poll."""
    apart = _APART[dialect.current().name]
    row = database.execute_sql(
        "SELECT (SELECT max(last_incoming_success) FROM sync_status), "
        "(SELECT max(created_on) FROM alert WHERE dismissed = 0), "
        "(SELECT max(created_on) FROM alert WHERE dismissed = 1), "
        "(SELECT max(dismissed_on) FROM alert WHERE dismissed_on IS NOT NULL), "
        "(SELECT max(failed_on) FROM mailbox_failure), "
        "(SELECT max(test_completed_on) FROM mailbox), "
        f"(SELECT max(test_last_attempted_on) FROM mailbox WHERE {apart}), "
        "(SELECT max(not_before) FROM test_job WHERE state = 'queued'), "
        "(SELECT max(postponed_until) FROM mailbox WHERE postponed_until IS NOT NULL), "
        "(SELECT max(sent_on) FROM owner_notice), "
        "(SELECT max(next_due) FROM sync_status), "
        "(SELECT retry_interval_minutes FROM org_settings WHERE id = 1), "
        "(SELECT max(min_polling_minutes) FROM profile)").fetchone()
    *moments, job_retry_at, retry_at, due_at, retry, polling = row
    slack = timedelta(seconds=60)
    retry_until = now + timedelta(minutes=retry or 5) + slack
    poll_until = max(now + timedelta(minutes=polling or 0) + slack, retry_until)
    return (any(moment is not None and _moment(moment) > now + slack for moment in moments)
            or any(moment is not None and _moment(moment) > retry_until for moment in (job_retry_at, retry_at))
            or (due_at is not None and _moment(due_at) > poll_until))


def _moment(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def bring_back(now: datetime, lease_seconds: float) -> int:
    """Bring every deadline and moment within what could be written at ``now`` (see the module's
    text); ``lease_seconds``: the caller's lease. Returns the number of rows changed."""
    moved = 0

    def clamp(table: str, column: str, until: datetime, where: str = "", *params: object) -> None:
        nonlocal moved
        moved += database.execute_sql(
            f"UPDATE {table} SET {column} = ? WHERE {column} > ?{where}", [until, until, *params]).rowcount

    row = database.execute_sql("SELECT retry_interval_minutes FROM org_settings WHERE id = 1").fetchone()
    retry = now + timedelta(minutes=row[0] if row else 5)
    lease = now + timedelta(seconds=lease_seconds)
    # A job's lease and its retry matter while it runs and while it waits (the index on its state
    # finds those; the table, every test ever run, was read whole).
    clamp("test_job", "lease_until", lease, " AND state = 'running'")
    clamp("test_job", "not_before", retry, " AND state = 'queued'")
    clamp("mailbox", "postponed_until", retry)
    # The test and its attempt in one statement: on PostgreSQL each row changed is a new version
    # with an entry in every index of the table (1,000 tests ahead: 0.17-0.45 s a statement).
    moved += database.execute_sql(
        "UPDATE mailbox SET test_completed_on = ?, test_last_attempted_on = CASE WHEN test_last_attempted_on > ? "
        "THEN ? ELSE test_last_attempted_on END WHERE test_completed_on > ?", [now, now, now, now]).rowcount
    clamp("mailbox", "test_last_attempted_on", now, f" AND {_APART[dialect.current().name]}")
    # An email's retry matters while it waits to be sent (the index on state finds those; the
    # table, every email of every mailbox, was read whole).
    clamp("email_activity", "next_attempt", retry, " AND state IN ('pending', 'sending')")
    clamp("connection_lease", "lease_until", lease)
    # A claim's end matters while a worker holds the row (index sync_status_claimed, schema step 18).
    clamp("sync_status", "lease_until", lease, " AND worker IS NOT NULL")
    moved += database.execute_sql(
        "UPDATE sync_status SET "
        + ", ".join(f"{column} = CASE WHEN {column} > ? THEN ? ELSE {column} END" for column in _SYNC_STATUS_MOMENTS)
        + f" WHERE {_LATEST_MOMENT[dialect.current().name]} > ?",
        [value for _column in _SYNC_STATUS_MOMENTS for value in (now, now)] + [now]).rowcount
    # The next poll: the profile's polling interval, or a retry after a failed cycle. The rows are
    # found from the index on next_due; the profile is read for those only.
    for profile_id, minutes in database.execute_sql("SELECT id, min_polling_minutes FROM profile").fetchall():
        due = max(now + timedelta(minutes=minutes), retry)
        clamp("sync_status", "next_due", due,
              " AND (SELECT profile_id FROM mailbox WHERE id = sync_status.mailbox_id) = ?", profile_id)
    for table, column in _PAST_MOMENTS:
        # An alert's moment by the index on (dismissed, created_on) or the dismissed ones' (schema
        # step 18): every alert raised, a test's "connected" among them, was read whole.
        clamp(table, column, now, " AND dismissed IN (0, 1)" if (table, column) == ("alert", "created_on") else "")
    return moved
