"""Test & Enable jobs: requested in the database (one row per mailbox, grouped in a batch), run by
a pool of worker threads, resumable after a crash (R8, R21)."""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from mbxtui.core import dialect
from mbxtui.core.connection_leases import ConnectionLeases
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import AlertLevel, Approval
from mbxtui.core.models import Alert, Mailbox, OrgSettings, Profile, TestBatch, TestJob, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.probes.base import ErrorCode, Failure
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.mailboxes import OVERALL_STATUS_SQL, approval_required
from mbxtui.core.services.selection import SELECTED, Selection, materialise, update_selected
from mbxtui.core.test_enable import (
    MailboxSnapshot, MailboxTestResult, ProfileSnapshot, directions_in_use, profile_snapshot, rule_failure, run_mailbox_test,
)

log = logging.getLogger(__name__)


def schedule_selected(actor: Actor, description: str) -> int:
    """Queue a test for every mailbox in the selection table that has none queued or running, and
    mark them "test scheduled" (caller holds the transaction). Returns the batch id.

    A retry waiting for its time is replaced by the new job: what is asked for now runs now."""
    now = utcnow()
    batch = TestBatch.create(requested_by=actor.login, requested_on=now, description=description)
    database.execute_sql(
        "UPDATE test_job SET state = 'cancelled', outcome = 'cancelled', finished_on = ? "
        f"WHERE state = 'queued' AND not_before IS NOT NULL AND mailbox_id IN (SELECT id FROM {dialect.SELECTION_TABLE})",
        [now])
    cursor = database.execute_sql(
        "INSERT INTO test_job (batch_id, mailbox_id, requested_by, state, attempt) "
        f"SELECT ?, id, ?, 'queued', 1 FROM mailbox WHERE {SELECTED} AND id NOT IN "
        "(SELECT mailbox_id FROM test_job WHERE state IN ('queued', 'running'))",
        [batch.id, actor.login],
    )
    TestBatch.update(total=cursor.rowcount).where(TestBatch.id == batch.id).execute()
    database.execute_sql(
        f"{update_selected()} SET test_scheduled = 1, postponed_until = NULL WHERE {SELECTED}"
    )
    return batch.id


def schedule(actor: Actor, selection: Selection, description: str = "Test & Enable") -> dict[str, Any]:
    """R8: request Test & Enable for the selection; "test scheduled" is set at once."""
    require(actor, Permission.TEST)
    with write_transaction():
        selected = materialise(actor, selection)
        batch_id = schedule_selected(actor, description)
    total = TestBatch.get_by_id(batch_id).total
    return {"batch": batch_id, "selected": selected, "queued": total}


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


def queued_count() -> int:
    return TestJob.select().where(TestJob.state == "queued").count()


# --- progress, recovery and the runner ----------------------------------------------------------

def _latest_jobs_sql() -> str:
    return ("SELECT j.state, j.outcome, j.attempt FROM test_job j JOIN "
            "(SELECT max(id) AS id FROM test_job WHERE batch_id = ? GROUP BY mailbox_id) latest ON latest.id = j.id")


def batch_progress(batch_id: int) -> Progress:
    """Per mailbox of the batch, its latest job: passed, failed, postponed (a retry is queued),
    cancelled, or still to do."""
    counts = {"passed": 0, "failed": 0, "postponed": 0, "cancelled": 0}
    total = 0
    for state, outcome, attempt in database.execute_sql(_latest_jobs_sql(), [batch_id]).fetchall():
        total += 1
        if state == "done" and outcome in counts:
            counts[outcome] += 1
        elif state == "cancelled":
            counts["cancelled"] += 1
        elif state == "queued" and attempt > 1:
            counts["postponed"] += 1
    done = counts["passed"] + counts["failed"] + counts["postponed"]
    return Progress(batch_id, total, done, counts["passed"], counts["failed"], counts["postponed"], counts["cancelled"])



def _worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# Runners of this process that are running now: their jobs are not to be taken over.
_RUNNING_HERE: set[str] = set()


def _process_gone(worker: str | None, me: str) -> bool:
    """True when ``worker`` names a process of this host that no longer runs."""
    if not worker:
        return True
    host, pid_text, token = (worker.split(":") + ["", "", ""])[:3]
    if host != socket.gethostname():
        return False
    my_host, my_pid, my_token = me.split(":")
    if pid_text == my_pid:
        return worker != me and worker not in _RUNNING_HERE  # else an earlier process that had our pid
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def recover(me: str, now: datetime) -> int:
    """R21: requeue jobs whose worker died (or whose lease ran out), give back the connection slots
    of workers of this host that died, and clear "test scheduled" on mailboxes that have nothing
    queued or running. Returns the number of jobs requeued."""
    with write_transaction():
        stale = [
            job_id for job_id, worker, lease in database.execute_sql(
                "SELECT id, worker, lease_until FROM test_job WHERE state = 'running'").fetchall()
            if _process_gone(worker, me) or (lease is not None and str(lease) < now.isoformat(sep=" "))
        ]
        for start in range(0, len(stale), 500):
            chunk = stale[start:start + 500]
            database.execute_sql(
                f"UPDATE test_job SET state = 'queued', worker = NULL, lease_until = NULL, started_on = NULL "
                f"WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        gone = sorted({worker for (worker,) in database.execute_sql("SELECT DISTINCT worker FROM connection_lease")
                       if _process_gone(worker, me)})
        if gone:
            database.execute_sql(f"DELETE FROM connection_lease WHERE worker IN ({','.join('?' * len(gone))})", gone)
        database.execute_sql(
            "UPDATE mailbox SET test_scheduled = 1 WHERE test_scheduled = 0 AND id IN "
            "(SELECT mailbox_id FROM test_job WHERE state = 'queued' AND attempt = 1)")
        database.execute_sql(
            "UPDATE mailbox SET test_scheduled = 0 WHERE test_scheduled = 1 AND id NOT IN "
            "(SELECT mailbox_id FROM test_job WHERE state IN ('queued', 'running'))")
    return len(stale)


def requeue_expired(now: datetime) -> int:
    """Requeue the running jobs whose lease ran out (their worker died or stalled, on any host);
    the caller holds the write transaction."""
    return database.execute_sql(
        "UPDATE test_job SET state = 'queued', worker = NULL, lease_until = NULL, started_on = NULL "
        "WHERE state = 'running' AND lease_until < ?", [now.isoformat(sep=" ")]).rowcount


@dataclass(frozen=True)
class MailboxTested:
    """Posted after a mailbox's result is written."""

    mailbox_id: int
    email: str
    batch_id: int
    outcome: str  # passed, failed, postponed
    failures: dict[str, str]  # direction -> error code


@dataclass
class _Claimed:
    job_id: int
    batch_id: int
    attempt: int
    requested_by: str
    row_version: int
    owner_id: int | None
    mailbox: MailboxSnapshot
    profile: ProfileSnapshot | None


DEFAULT_LEASE_SECONDS = 60.0
# Asking for slots when tests wait for them, or giving back unused ones, at most this often.
SLOT_SYNC_GAP = 0.2


@dataclass
class RunSummary:
    tested: int = 0
    passed: int = 0
    failed: int = 0
    postponed: int = 0
    requeued: int = 0


class TestRunner:
    """Runs queued Test & Enable jobs on a pool of threads. Only the thread calling ``run`` touches
    the database: it claims jobs, hands each mailbox test to a pool thread when the runner holds a
    connection slot of the mailbox's profile (R8: never more than its max concurrent connections,
    across every runner of every worker process; see connection_leases.py), and writes each result
    with its alerts as it arrives.

    ``lease_seconds``: how long the jobs and slots of a runner that stopped renewing them (its
    process died) stay held before other workers take them over. A live runner renews them every
    quarter of it, at most every second."""

    __test__ = False

    def __init__(self, secrets: SecretStore | None, *, threads: int = 32, verify_wait: float = 5.0,
                 clock: Callable[[], datetime] = utcnow, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 on_tested: Callable[[list[MailboxTested]], None] | None = None):
        self.secrets = secrets
        self.threads = max(1, threads)
        self.verify_wait = verify_wait
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.on_tested = on_tested
        self.worker = _worker_identity()
        self._leases = ConnectionLeases(self.worker)
        self._blocked: set[int] = set()
        self._synced_at = float("-inf")
        self._lookup = None
        self._wake = threading.Event()

    def wake(self) -> None:
        """Look for queued jobs now instead of at the next poll (thread-safe)."""
        self._wake.set()

    # -- claiming --

    def _claim(self, limit: int) -> list[_Claimed]:
        now = self.clock()
        with write_transaction():
            rows = database.execute_sql(
                "UPDATE test_job SET state = 'running', worker = ?, started_on = ?, lease_until = ? "
                "WHERE id IN (SELECT id FROM test_job WHERE state = 'queued' AND (not_before IS NULL OR not_before <= ?) "
                f"ORDER BY id LIMIT ?{dialect.current().claim_lock()}) RETURNING id, batch_id, mailbox_id, attempt, requested_by",
                [self.worker, now, now + timedelta(seconds=self.lease_seconds), now.isoformat(sep=" "), limit]).fetchall()
        if not rows:
            return []
        return self._snapshots(rows)

    def _snapshots(self, rows) -> list[_Claimed]:
        settings = settings_service.load()
        mailbox_ids = [r[2] for r in rows]
        boxes = {m.id: m for m in Mailbox.select().where(Mailbox.id.in_(mailbox_ids))}
        profile_ids = {m.profile_id for m in boxes.values() if m.profile_id}
        profiles = {p.id: p for p in Profile.select().where(Profile.id.in_(list(profile_ids)))} if profile_ids else {}
        forward_ready = {r[0] for r in database.execute_sql(
            "SELECT DISTINCT profile_id FROM mailbox WHERE is_forward = 1 AND active = 1 AND incoming_enabled = 1")}
        claimed = []
        for job_id, batch_id, mailbox_id, attempt, requested_by in rows:
            box = boxes[mailbox_id]
            profile = profiles.get(box.profile_id)
            approved = box.approval != Approval.REJECTED and (
                box.approval == Approval.APPROVED or not approval_required(settings, box.regarding))
            claimed.append(_Claimed(
                job_id=job_id, batch_id=batch_id, attempt=attempt, requested_by=requested_by,
                row_version=box.row_version, owner_id=box.owner_id,
                mailbox=MailboxSnapshot(
                    id=box.id, email=box.email, active=box.active, regarding=box.regarding,
                    incoming_method=box.incoming_method, outgoing_method=box.outgoing_method,
                    act_method=box.act_method, username=box.username, approved=approved,
                    forward_mailbox_available=box.profile_id in forward_ready),
                profile=None if profile is None else profile_snapshot(profile),
            ))
        return claimed

    def _release(self, claimed: Iterable[_Claimed]) -> None:
        ids = [c.job_id for c in claimed]
        if not ids:
            return
        with write_transaction():
            database.execute_sql(
                f"UPDATE test_job SET state = 'queued', worker = NULL, lease_until = NULL, started_on = NULL "
                f"WHERE state = 'running' AND worker = ? AND id IN ({','.join('?' * len(ids))})", [self.worker, *ids])

    # -- testing (pool threads) --

    def _secret(self, kind: str, record_id: int, what: str) -> str | None:
        if self.secrets is None:
            return None
        return self._lookup(kind, record_id, what)

    def _test(self, item: _Claimed) -> MailboxTestResult:
        # Both directions usually log in with the same secret: read it once per test (a keyring read
        # takes milliseconds, and the encrypted file serves one read at a time).
        secret = functools.cache(self._secret)
        try:
            return run_mailbox_test(item.mailbox, item.profile, secret, verify_wait=self.verify_wait)
        except Exception as exc:  # a bug or an unreadable secret store must not stop the pool
            log.exception("the test of mailbox %s could not run", item.mailbox.id)
            failure = rule_failure(ErrorCode.INTERNAL_ERROR, f"the test could not run: {exc.__class__.__name__}: {exc}")
            return MailboxTestResult({d: failure for d in (directions_in_use(item.mailbox) or ["incoming"])})

    # -- the loop --

    def run(self, *, stop: threading.Event | None = None, until_idle: bool = True,
            poll_seconds: float = 1.0) -> RunSummary:
        from mbxtui.core.services.credentials import secret_lookup

        if self.secrets is not None and self._lookup is None:
            self._lookup = secret_lookup(self.secrets)
        _RUNNING_HERE.add(self.worker)
        try:
            return self._run(stop, until_idle, poll_seconds)
        finally:
            _RUNNING_HERE.discard(self.worker)

    def _run(self, stop: threading.Event | None, until_idle: bool, poll_seconds: float) -> RunSummary:
        summary = RunSummary(requeued=recover(self.worker, self.clock()))
        pending: deque[_Claimed] = deque()
        in_flight: dict[Future, _Claimed] = {}
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="mbxtui-test") as pool:
            try:
                while True:
                    stopping = stop is not None and stop.is_set()
                    if not stopping and len(pending) < self.threads * 2:
                        pending.extend(self._claim(self.threads * 4 - len(pending)))
                    if not stopping:
                        self._dispatch(pool, pending, in_flight)
                    if self._sync_due():
                        summary.requeued += self._sync(pending)
                        if not stopping:
                            self._dispatch(pool, pending, in_flight)
                    if in_flight:
                        done, _ = wait(list(in_flight), timeout=0.25, return_when=FIRST_COMPLETED)
                        finished = []
                        for future in done:
                            item = in_flight.pop(future)
                            if item.profile is not None:
                                self._leases.give_back(item.profile.id)
                            finished.append((item, future.result()))
                        if not stopping:
                            # The freed connections go back to work before the results are written:
                            # each statement of the write waits for the interpreter lock behind
                            # busy probe threads.
                            self._dispatch(pool, pending, in_flight)
                        if finished:
                            self._write(finished, summary)
                        continue
                    if stopping:
                        break
                    if not pending:
                        if until_idle:
                            break
                        self._wake.wait(min(poll_seconds, self._renew_seconds))
                        self._wake.clear()
                    else:  # other runners hold every slot these jobs need
                        self._wake.wait(0.05)
            finally:
                self._release(pending)
                if in_flight:
                    finished = []
                    for future, item in in_flight.items():
                        finished.append((item, future.result()))
                        if item.profile is not None:
                            self._leases.give_back(item.profile.id)
                    self._write(finished, summary)
                with write_transaction():
                    self._leases.release_all()
        return summary

    def _dispatch(self, pool, pending: deque, in_flight: dict) -> None:
        waiting: deque[_Claimed] = deque()
        blocked: set[int] = set()
        # Not renewed for a whole lease (the database kept us waiting): our slots may be another's now.
        leased = time.monotonic() - self._synced_at < self.lease_seconds
        while pending and len(in_flight) < self.threads:
            item = pending.popleft()
            if item.profile is not None and not (leased and self._leases.take(item.profile.id)):
                blocked.add(item.profile.id)
                waiting.append(item)
                continue
            in_flight[pool.submit(self._test, item)] = item
        pending.extendleft(reversed(waiting))
        self._blocked = blocked

    # -- sharing connections and leases with other workers --

    @property
    def _renew_seconds(self) -> float:
        return min(1.0, self.lease_seconds / 4)

    def _sync_due(self) -> bool:
        since = time.monotonic() - self._synced_at
        return since >= self._renew_seconds or (since >= SLOT_SYNC_GAP and self._leases.needs_sync(self._blocked))

    def _sync(self, pending: deque) -> int:
        """One write transaction: renew the leases of this runner's jobs and connection slots, take
        or give back slots for what waits, and requeue jobs whose lease ran out. Returns how many
        jobs were requeued."""
        wanted: dict[int, int] = {}
        for item in pending:
            if item.profile is not None:
                wanted[item.profile.id] = wanted.get(item.profile.id, 0) + 1
        for profile_id, busy in self._leases.busy.items():
            wanted[profile_id] = min(self.threads, wanted.get(profile_id, 0) + busy)
        now = self.clock()
        with write_transaction():
            database.execute_sql("UPDATE test_job SET lease_until = ? WHERE state = 'running' AND worker = ?",
                                 [now + timedelta(seconds=self.lease_seconds), self.worker])
            requeued = requeue_expired(now)
            self._leases.sync({p: min(self.threads, n) for p, n in wanted.items()}, now, self.lease_seconds)
        self._synced_at = time.monotonic()
        return requeued

    # -- writing results (R14, R15, R16) --

    def _write(self, finished: list[tuple[_Claimed, MailboxTestResult]], summary: RunSummary) -> None:
        events: list[MailboxTested] = []
        now = self.clock()
        settings = settings_service.load()
        failing_profiles: set[int] = set()
        alert_profiles: dict[int, Profile | None] = {}
        with write_transaction():
            for item, result in finished:
                event = self._write_one(item, result, now, settings, alert_profiles)
                if event is None:
                    continue
                events.append(event)
                summary.tested += 1
                setattr(summary, event.outcome, getattr(summary, event.outcome) + 1)
                if event.failures and item.profile is not None:
                    failing_profiles.add(item.profile.id)
            for profile_id in failing_profiles:
                _alert_if_profile_failing(profile_id, now)
        if events and self.on_tested is not None:
            self.on_tested(events)

    def _write_one(self, item: _Claimed, result: MailboxTestResult, now: datetime, settings: OrgSettings,
                   alert_profiles: dict[int, Profile | None]) -> MailboxTested | None:
        """``alert_profiles``: the profiles read so far in this transaction, for the alerts."""
        # Plain SQL on this path: it runs once per mailbox tested, beside the busy probe threads, and
        # building the same statements through peewee took most of its time.
        job = database.execute_sql(
            "SELECT j.state, j.worker, m.email, m.active, m.owner_id, m.profile_id, m.transient_failures, "
            "m.row_version FROM test_job j JOIN mailbox m ON m.id = j.mailbox_id WHERE j.id = ?",
            [item.job_id]).fetchone()
        if job is None or job[0] != "running" or job[1] != self.worker:
            return None  # cancelled (mailbox deactivated) or taken over after our lease ran out
        # The fields read below and by raise_alert.
        mailbox = Mailbox(id=item.mailbox.id, email=job[2], active=bool(job[3]), owner=job[4], profile=job[5],
                          transient_failures=job[6], row_version=job[7])
        if mailbox.row_version != item.row_version:
            # Edited while being tested: the result says nothing about the new settings; test again.
            database.execute_sql("UPDATE test_job SET state = 'queued', worker = NULL, lease_until = NULL "
                                 "WHERE id = ?", [item.job_id])
            return None
        if mailbox.profile_id is not None and mailbox.profile_id not in alert_profiles:
            alert_profiles[mailbox.profile_id] = Profile.find(mailbox.profile_id)
        profile = alert_profiles.get(mailbox.profile_id)
        used = directions_in_use(item.mailbox) or list(result.directions)
        retries_left = settings.retry_attempts - mailbox.transient_failures
        any_transient = any(f.transient for f in result.failures.values())
        will_retry = any_transient and retries_left > 0
        values: dict[str, Any] = {}
        codes: dict[str, str] = {}
        first_error: Failure | None = None
        alerted: set[tuple[str, str]] = set()
        for direction in ("incoming", "outgoing", "act"):
            probe = result.directions.get(direction)
            if direction not in used or probe is None:
                values[f"{direction}_status"] = "not_run"
                values[f"{direction}_enabled"] = False
                continue
            if probe.ok:
                values[f"{direction}_status"] = "success"
                values[f"{direction}_enabled"] = mailbox.active
                continue
            failure = probe.failure
            codes[direction] = failure.code.value
            first_error = first_error or failure
            values[f"{direction}_status"] = "failure"
            if not (failure.transient and will_retry):
                values[f"{direction}_enabled"] = False
            if (failure.code, failure.message) not in alerted:  # one alert for a check failing every direction
                alerted.add((failure.code, failure.message))
                self._alert_failure(mailbox, profile, direction, failure, will_retry and failure.transient,
                                    mailbox.transient_failures + 1, settings, now)
        outcome = "postponed" if will_retry else ("failed" if codes else "passed")
        values.update(
            test_scheduled=False, test_last_attempted_by=item.requested_by, test_last_attempted_on=now,
            test_completed_on=now, last_error_code=first_error.code.value if first_error else None,
            last_error_text=first_error.message if first_error else None,
            transient_failures=(mailbox.transient_failures + 1) if will_retry else 0,
            postponed_until=(now + timedelta(minutes=settings.retry_interval_minutes)) if will_retry else None,
        )
        database.execute_sql(f"UPDATE mailbox SET {', '.join(f'{column} = ?' for column in values)} WHERE id = ?",
                             [*values.values(), mailbox.id])
        database.execute_sql(f"UPDATE mailbox SET overall_status = {OVERALL_STATUS_SQL} WHERE id = ?", [mailbox.id])
        database.execute_sql(
            "UPDATE test_job SET state = 'done', outcome = ?, finished_on = ?, lease_until = NULL, result = ? "
            "WHERE id = ?", [outcome, now, json.dumps(result.as_dict()), item.job_id])
        if will_retry:
            database.execute_sql(
                "INSERT INTO test_job (batch_id, mailbox_id, requested_by, state, attempt, not_before) "
                "VALUES (?, ?, ?, 'queued', ?, ?)",
                [item.batch_id, mailbox.id, item.requested_by, item.attempt + 1, values["postponed_until"]])
        if outcome == "passed":
            enabled = [d for d in used if values[f"{d}_enabled"]]
            raise_alert(AlertLevel.INFORMATION, "CONNECTED",
                        f"{mailbox.email} is connected: enabled for {', '.join(enabled) or 'nothing (no method set)'}",
                        mailbox=mailbox, profile=profile, settings=settings)
        return MailboxTested(mailbox.id, mailbox.email, item.batch_id, outcome, codes)

    @staticmethod
    def _alert_failure(mailbox: Mailbox, profile: Profile | None, direction: str, failure: Failure, retrying: bool,
                       attempt: int, settings: OrgSettings, now: datetime) -> None:
        if retrying:
            at = (now + timedelta(minutes=settings.retry_interval_minutes)).strftime("%H:%M")
            raise_alert(AlertLevel.WARNING, failure.code.value,
                        f"{direction} test of {mailbox.email} failed for now: {failure.message} "
                        f"(retry {attempt} of {settings.retry_attempts} at {at} UTC)", mailbox=mailbox,
                        profile=profile, settings=settings)
            return
        after = f" (still failing after {attempt} attempts)" if failure.transient else ""
        raise_alert(AlertLevel.ERROR, failure.code.value,
                    f"{direction} test of {mailbox.email} failed: {failure.message}{after}; "
                    f"{direction} is disabled", mailbox=mailbox, profile=profile, settings=settings)


def _alert_if_profile_failing(profile_id: int, now: datetime) -> None:
    """R16: more than half of a profile's mailboxes failed within an hour -> one error alert."""
    hour_ago = now - timedelta(hours=1)
    total, failed = database.execute_sql(
        "SELECT count(*), count(CASE WHEN overall_status = 'failure' AND test_completed_on >= ? THEN 1 END) FROM mailbox "
        "WHERE profile_id = ? AND active = 1", [hour_ago, profile_id]).fetchone()
    if not total or (failed or 0) * 2 <= total:
        return
    recent = Alert.select().where((Alert.profile == profile_id) & (Alert.code == "PROFILE_FAILING")
                                  & (Alert.mailbox.is_null()) & (Alert.created_on >= hour_ago))
    if recent.exists():
        return
    profile = Profile.get_by_id(profile_id)
    raise_alert(AlertLevel.ERROR, "PROFILE_FAILING",
                f"{failed} of {total} mailboxes of profile {profile.name!r} failed their test within the last hour: "
                "check the profile's servers and settings", profile=profile)


def batch_results(batch_id: int) -> list[dict[str, Any]]:
    """The latest job of each mailbox of a batch, with the steps of its test."""
    rows = database.execute_sql(
        "SELECT j.mailbox_id, j.state, j.outcome, j.result FROM test_job j JOIN "
        "(SELECT max(id) AS id FROM test_job WHERE batch_id = ? AND state != 'queued' GROUP BY mailbox_id) latest "
        "ON latest.id = j.id ORDER BY j.mailbox_id", [batch_id]).fetchall()
    return [{"mailbox_id": m, "state": st, "outcome": o, "directions": json.loads(r) if r else None}
            for m, st, o, r in rows]


def last_result(mailbox_id: int) -> dict[str, Any] | None:
    """The steps of the mailbox's last finished test, for the detail views."""
    row = database.execute_sql(
        "SELECT result, outcome, finished_on, attempt FROM test_job WHERE mailbox_id = ? AND state = 'done' "
        "ORDER BY id DESC LIMIT 1", [mailbox_id]).fetchone()
    if row is None or row[0] is None:
        return None
    return {"outcome": row[1], "finished_on": str(row[2]), "attempt": row[3], "directions": json.loads(row[0])}
