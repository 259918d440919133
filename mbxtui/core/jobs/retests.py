"""R33: a profile's re-test interval (``profile.retest_hours``). An enabled mailbox whose last
successful test (``mailbox.test_completed_on``) and last successful sync in either direction
(``sync_status.last_incoming_success``, ``last_outgoing_success``) are all older than the interval
is tested again in the background: a Test & Enable job is queued for it, as an operator's request
would queue one.

At most once per interval: a mailbox whose last test was attempted within it is left alone (a
re-test that failed does not come back at every pass), and so is one with a job queued or running
(no duplicate; a retry waiting for its time is not replaced either). Run by whoever processes: the
worker and a console started with ``--process`` (see ``sync/loop.py``)."""

from __future__ import annotations

from datetime import datetime

from mbxtui.core import clock, dialect
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import JobState
from mbxtui.core.jobs import queue
from mbxtui.core.models import database

DESCRIPTION = "Re-test (R33)"

_DUE = (
    "FROM mailbox m JOIN profile p ON p.id = m.profile_id LEFT JOIN sync_status s ON s.mailbox_id = m.id "
    "WHERE p.id = ? AND p.active = 1 AND m.active = 1 "
    "AND (m.incoming_enabled = 1 OR m.outgoing_enabled = 1 OR m.act_enabled = 1) "
    "AND (m.test_last_attempted_on IS NULL OR m.test_last_attempted_on < ?) "
    "AND (m.test_completed_on IS NULL OR m.test_completed_on < ?) "
    "AND (s.last_incoming_success IS NULL OR s.last_incoming_success < ?) "
    "AND (s.last_outgoing_success IS NULL OR s.last_outgoing_success < ?) "
    "AND m.id NOT IN (SELECT mailbox_id FROM test_job WHERE state IN (?, ?))"
)


def _intervals() -> list[tuple[int, int]]:
    """(profile id, hours) of the active profiles that set a re-test interval."""
    return [(row["id"], row["retest_hours"]) for row in queue.rows_by_name(database.execute_sql(
        "SELECT id, retest_hours FROM profile WHERE active = 1 AND retest_hours IS NOT NULL AND retest_hours > 0 "
        "ORDER BY id"))]


def _parameters(profile_id: int, hours: int, now: datetime) -> list:
    cutoff = clock.current().ago(now, hours * 3600)  # a forward jump taken off: not every mailbox at once
    return [profile_id, cutoff, cutoff, cutoff, cutoff, JobState.QUEUED.value, JobState.RUNNING.value]


def due_for_retest(now: datetime) -> list[int]:
    """The ids of the mailboxes a re-test is due for at ``now``, ascending."""
    due: list[int] = []
    for profile_id, hours in _intervals():
        due += [row[0] for row in database.execute_sql(f"SELECT m.id {_DUE}", _parameters(profile_id, hours, now))]
    return sorted(due)


def schedule_retests(requested_by: str, now: datetime) -> int:
    """Queue Test & Enable for every mailbox a re-test is due for, in one batch; returns how many
    were queued (no batch is made when none is due)."""
    intervals = _intervals()
    if not intervals:
        return 0
    sql = dialect.current()
    table = dialect.SELECTION_TABLE
    with write_transaction():
        database.execute_sql(sql.create_selection_table())
        database.execute_sql(f"DELETE FROM {table}")
        selected = 0
        for profile_id, hours in intervals:
            selected += database.execute_sql(f"INSERT INTO {table} (id) SELECT m.id {_DUE}",
                                             _parameters(profile_id, hours, now)).rowcount
        if not selected:
            return 0
        return queue.enqueue_selected(requested_by, DESCRIPTION).queued
