"""The queue of Test & Enable jobs in the database: one row per mailbox and attempt, grouped in
batches. Enqueuing, claiming, giving back, recovery after a crash (R21) and what a batch came to.

Imports no service: the services enqueue through here (see ``services/enablement.py``), and the
runner, which uses the services, claims from here.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mbxtui.core import clock, dialect
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import JobOutcome, JobState
from mbxtui.core.jobs import clock_jumps
from mbxtui.core.models import EnablementBatch, EnablementJob, database, utcnow
from mbxtui.core.sql_lists import in_list_chunks, placeholders

# The mailboxes of this connection's selection table (see services.mailboxes.materialise).
_SELECTED = f"id IN (SELECT id FROM {dialect.SELECTION_TABLE})"
_OF_SELECTED = f"mailbox_id IN (SELECT id FROM {dialect.SELECTION_TABLE})"
# Bound by the driver, so a statement is the same text on every call.
_QUEUED, _RUNNING, _DONE, _CANCELLED = JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.CANCELLED


def rows_by_name(cursor: Any) -> list[dict[str, Any]]:
    """The rows of a raw SQL cursor, each as a dict keyed by column name."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def row_by_name(cursor: Any) -> dict[str, Any] | None:
    row = cursor.fetchone()
    return None if row is None else dict(zip([column[0] for column in cursor.description], row))


# --- enqueuing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Enqueued:
    batch_id: int
    queued: int  # mailboxes of the selection that had no job queued or running


def enqueue_selected(requested_by: str, description: str) -> Enqueued:
    """Queue a job for every mailbox in the selection table that has none queued or running, and
    mark them "test scheduled" (the caller checked the role and holds the transaction).

    A retry waiting for its time is replaced by the new job: what is asked for now runs now."""
    now = utcnow()
    batch = EnablementBatch.create(requested_by=requested_by, requested_on=now, description=description)
    database.execute_sql(
        "UPDATE test_job SET state = ?, outcome = ?, finished_on = ? "
        f"WHERE state = ? AND not_before IS NOT NULL AND {_OF_SELECTED}",
        [_CANCELLED, JobOutcome.CANCELLED, now, _QUEUED])
    queued = database.execute_sql(
        "INSERT INTO test_job (batch_id, mailbox_id, requested_by, state, attempt) "
        f"SELECT ?, id, ?, ?, 1 FROM mailbox WHERE {_SELECTED} AND id NOT IN "
        "(SELECT mailbox_id FROM test_job WHERE state IN (?, ?))",
        [batch.id, requested_by, _QUEUED, _QUEUED, _RUNNING],
    ).rowcount
    EnablementBatch.update(total=queued).where(EnablementBatch.id == batch.id).execute()
    database.execute_sql(
        f"{dialect.current().bulk_update('mailbox')} SET test_scheduled = 1, postponed_until = NULL WHERE {_SELECTED}")
    return Enqueued(batch.id, queued)


def cancel_selected(now: datetime) -> None:
    """Cancel the queued and running jobs of the mailboxes in the selection table (they were
    deactivated; the caller holds the transaction). A runner drops the result of a cancelled job."""
    database.execute_sql(
        f"UPDATE test_job SET state = ?, outcome = ?, finished_on = ? WHERE state IN (?, ?) AND {_OF_SELECTED}",
        [_CANCELLED, JobOutcome.CANCELLED, now, _QUEUED, _RUNNING])


def enqueue_retry(batch_id: int, mailbox_id: int, requested_by: str, attempt: int, not_before: datetime) -> None:
    database.execute_sql(
        "INSERT INTO test_job (batch_id, mailbox_id, requested_by, state, attempt, not_before) VALUES (?, ?, ?, ?, ?, ?)",
        [batch_id, mailbox_id, requested_by, _QUEUED, attempt, not_before])


def queued_count() -> int:
    return EnablementJob.select().where(EnablementJob.state == JobState.QUEUED).count()


# --- workers: who runs a job, and whether it still runs -----------------------------------------

def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# Runners of this process that are running now: their jobs are not to be taken over.
running_here: set[str] = set()


def process_gone(worker: str | None, me: str) -> bool:
    """True when ``worker`` names a process of this host that no longer runs."""
    if not worker:
        return True
    host, pid_text, token = (worker.split(":") + ["", "", ""])[:3]
    if host != socket.gethostname():
        return False
    my_host, my_pid, my_token = me.split(":")
    if pid_text == my_pid:
        return worker != me and worker not in running_here  # else an earlier process that had our pid
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


# --- claiming, renewing, giving back ------------------------------------------------------------

@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    batch_id: int
    mailbox_id: int
    attempt: int
    requested_by: str


def claim(worker: str, now: datetime, lease_seconds: float, limit: int) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs for ``worker``, oldest first, leased for ``lease_seconds`` from
    the moment they are taken (``clock.advanced``)."""
    read_at = clock.monotonic()
    with write_transaction():
        until = clock.lease_end(now, read_at, lease_seconds)
        rows = rows_by_name(database.execute_sql(
            "UPDATE test_job SET state = ?, worker = ?, started_on = ?, lease_until = ? "
            "WHERE id IN (SELECT id FROM test_job WHERE state = ? AND (not_before IS NULL OR not_before <= ?) "
            f"ORDER BY id LIMIT ?{dialect.current().claim_lock()}) "
            "RETURNING id, batch_id, mailbox_id, attempt, requested_by",
            [_RUNNING, worker, now, until, _QUEUED, now.isoformat(sep=" "), limit]))
    return [ClaimedJob(r["id"], r["batch_id"], r["mailbox_id"], r["attempt"], r["requested_by"]) for r in rows]


def release(worker: str, job_ids: Sequence[int]) -> None:
    """Put the jobs ``worker`` claimed but did not start back in the queue."""
    if not job_ids:
        return
    with write_transaction():
        database.execute_sql(
            "UPDATE test_job SET state = ?, worker = NULL, lease_until = NULL, started_on = NULL "
            f"WHERE state = ? AND worker = ? AND id IN ({placeholders(job_ids)})",
            [_QUEUED, _RUNNING, worker, *job_ids])


def renew(worker: str, until: datetime) -> None:
    """Extend the lease of ``worker``'s running jobs (caller holds the write transaction)."""
    database.execute_sql("UPDATE test_job SET lease_until = ? WHERE state = ? AND worker = ?",
                         [until, _RUNNING, worker])


def requeue(job_id: int) -> None:
    """Run the job again from the start (its mailbox changed while it ran)."""
    database.execute_sql("UPDATE test_job SET state = ?, worker = NULL, lease_until = NULL WHERE id = ?",
                         [_QUEUED, job_id])


def finish(job_id: int, outcome: JobOutcome, now: datetime, result: dict[str, Any]) -> None:
    database.execute_sql(
        "UPDATE test_job SET state = ?, outcome = ?, finished_on = ?, lease_until = NULL, result = ? WHERE id = ?",
        [_DONE, outcome, now, json.dumps(result), job_id])


# --- recovery (R21) -----------------------------------------------------------------------------

def recover(me: str, now: datetime, lease_seconds: float = 60.0) -> int:
    """R21: requeue jobs whose worker died (or whose lease ran out), give back the connection slots
    of workers of this host that died, and clear "test scheduled" on mailboxes that have nothing
    queued or running. Returns the number of jobs requeued."""
    expired = clock.current().expired_before(now, lease_seconds).isoformat(sep=" ")
    with write_transaction():
        if clock_jumps.left_ahead(now):  # a jump back while no worker ran to see it
            clock_jumps.bring_back(now, lease_seconds)
        stale = [
            row["id"] for row in rows_by_name(database.execute_sql(
                "SELECT id, worker, lease_until FROM test_job WHERE state = ?", [_RUNNING]))
            if process_gone(row["worker"], me)
            or (row["lease_until"] is not None and str(row["lease_until"]) < expired)
        ]
        for marks, chunk in in_list_chunks(stale):
            database.execute_sql(
                "UPDATE test_job SET state = ?, worker = NULL, lease_until = NULL, started_on = NULL "
                f"WHERE id IN ({marks})", [_QUEUED, *chunk])
        gone = sorted({row["worker"] for row in rows_by_name(
            database.execute_sql("SELECT DISTINCT worker FROM connection_lease")) if process_gone(row["worker"], me)})
        if gone:
            database.execute_sql(f"DELETE FROM connection_lease WHERE worker IN ({placeholders(gone)})", gone)
        database.execute_sql(
            "UPDATE mailbox SET test_scheduled = 1 WHERE test_scheduled = 0 AND id IN "
            "(SELECT mailbox_id FROM test_job WHERE state = ? AND attempt = 1)", [_QUEUED])
        database.execute_sql(
            "UPDATE mailbox SET test_scheduled = 0 WHERE test_scheduled = 1 AND id NOT IN "
            "(SELECT mailbox_id FROM test_job WHERE state IN (?, ?))", [_QUEUED, _RUNNING])
    return len(stale)


def requeue_expired(now: datetime, lease_seconds: float = 60.0) -> int:
    """Requeue the running jobs whose lease ran out (their worker died or stalled, on any host);
    the caller holds the write transaction. Right after the clock jumped forward, by the clock as
    it read before (core/clock.py): live workers renew theirs meanwhile."""
    expired = clock.current().expired_before(now, lease_seconds)
    return database.execute_sql(
        "UPDATE test_job SET state = ?, worker = NULL, lease_until = NULL, started_on = NULL "
        "WHERE state = ? AND lease_until < ?", [_QUEUED, _RUNNING, expired.isoformat(sep=" ")]).rowcount


# --- what a batch came to -----------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    batch: int
    total: int
    done: int
    passed: int
    failed: int
    postponed: int
    cancelled: int

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.cancelled

    def as_dict(self) -> dict[str, int]:
        return {"batch": self.batch, "total": self.total, "done": self.done, "passed": self.passed,
                "failed": self.failed, "postponed": self.postponed, "cancelled": self.cancelled,
                "remaining": self.remaining}


def batch_progress(batch_id: int) -> Progress:
    """Per mailbox of the batch, its latest job: passed, failed, postponed (a retry is queued),
    cancelled, or still to do."""
    counts = {JobOutcome.PASSED: 0, JobOutcome.FAILED: 0, JobOutcome.POSTPONED: 0, JobOutcome.CANCELLED: 0}
    total = 0
    for job in rows_by_name(database.execute_sql(
            "SELECT j.state, j.outcome, j.attempt FROM test_job j JOIN "
            "(SELECT max(id) AS id FROM test_job WHERE batch_id = ? GROUP BY mailbox_id) latest ON latest.id = j.id",
            [batch_id])):
        total += 1
        if job["state"] == JobState.DONE and job["outcome"] in counts:
            counts[JobOutcome(job["outcome"])] += 1
        elif job["state"] == JobState.CANCELLED:
            counts[JobOutcome.CANCELLED] += 1
        elif job["state"] == JobState.QUEUED and job["attempt"] > 1:
            counts[JobOutcome.POSTPONED] += 1
    passed, failed, postponed = counts[JobOutcome.PASSED], counts[JobOutcome.FAILED], counts[JobOutcome.POSTPONED]
    return Progress(batch_id, total, passed + failed + postponed, passed, failed, postponed,
                    counts[JobOutcome.CANCELLED])


@dataclass(frozen=True)
class JobResult:
    """A finished (or cancelled) job of a mailbox, with the steps of each direction it checked."""

    mailbox_id: int
    state: JobState
    outcome: JobOutcome | None
    attempt: int
    finished_on: str
    directions: dict[str, Any] | None  # as ``MailboxCheckResult.as_dict`` stored them

    def as_dict(self) -> dict[str, Any]:
        """The result as ``mailbox show`` reports a mailbox's last test."""
        return {"outcome": self.outcome, "finished_on": self.finished_on, "attempt": self.attempt,
                "directions": self.directions}


def _job_result(row: dict[str, Any]) -> JobResult:
    return JobResult(
        mailbox_id=row["mailbox_id"], state=JobState(row["state"]),
        outcome=None if row["outcome"] is None else JobOutcome(row["outcome"]), attempt=row["attempt"],
        finished_on=str(row["finished_on"]), directions=json.loads(row["result"]) if row["result"] else None)


def batch_results(batch_id: int) -> list[JobResult]:
    """The latest job of each mailbox of a batch that is not waiting in the queue."""
    rows = rows_by_name(database.execute_sql(
        "SELECT j.mailbox_id, j.state, j.outcome, j.attempt, j.finished_on, j.result FROM test_job j JOIN "
        "(SELECT max(id) AS id FROM test_job WHERE batch_id = ? AND state != ? GROUP BY mailbox_id) latest "
        "ON latest.id = j.id ORDER BY j.mailbox_id", [batch_id, _QUEUED]))
    return [_job_result(row) for row in rows]


def last_result(mailbox_id: int) -> JobResult | None:
    """The mailbox's last finished job, for the detail views."""
    row = row_by_name(database.execute_sql(
        "SELECT mailbox_id, state, outcome, attempt, finished_on, result FROM test_job "
        "WHERE mailbox_id = ? AND state = ? ORDER BY id DESC LIMIT 1", [mailbox_id, _DONE]))
    if row is None or row["result"] is None:
        return None
    return _job_result(row)
