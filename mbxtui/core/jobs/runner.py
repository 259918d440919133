"""The runner of Test & Enable jobs: a pool of threads, bounded per profile by leased connection
slots (R8), that checks each claimed mailbox and writes what ``outcome.decide`` made of it."""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from mbxtui.core import descriptors, faults
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import DIRECTIONS, Approval, JobOutcome, JobState
from mbxtui.core.faults import fault_sentence, forget_connection, passing_fault
from mbxtui.core.jobs import clock_jumps, failing_profiles, queue
from mbxtui.core.jobs.leases import ConnectionLeases
from mbxtui.core.jobs.outcome import Attempt, History, Outcome, decide
from mbxtui.core.local_faults import could_not_run
from mbxtui.core.mailbox_check import (
    MailboxCheckResult, MailboxSnapshot, ProfileSnapshot, check_mailbox, directions_in_use, mailbox_snapshot,
    profile_snapshot,
)
from mbxtui.core.models import Mailbox, OrgSettings, Profile, database, utcnow
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secret_value import Secret
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import authorizations
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.credentials import secret_lookup
from mbxtui.core.services.mailboxes import OVERALL_STATUS_SQL, approval_required
from mbxtui.core.services.mailbox_views import not_processed_reason
from mbxtui.core.sync import status as sync_status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailboxTested:
    """Posted after a mailbox's result is written."""

    mailbox_id: int
    email: str
    batch_id: int
    outcome: JobOutcome  # passed, failed, postponed
    failures: dict[str, str]  # direction -> error code


@dataclass
class _Claimed:
    job: queue.ClaimedJob
    row_version: int
    mailbox: MailboxSnapshot
    profile: ProfileSnapshot | None


DEFAULT_LEASE_SECONDS = 60.0
# Waiting out a fault that passes: the first pause, doubled at each try up to the last.
FAULT_PAUSE_FIRST = 1.0
FAULT_PAUSE_MOST = 30.0


@dataclass
class RunSummary:
    tested: int = 0
    passed: int = 0
    failed: int = 0
    postponed: int = 0
    requeued: int = 0


class EnablementRunner:
    """Runs queued Test & Enable jobs on a pool of threads. Only the thread calling ``run`` touches
    the database: it claims jobs, hands each mailbox check to a pool thread when the runner holds a
    connection slot of the mailbox's profile (R8: never more than its max concurrent connections,
    across every runner of every worker process; see leases.py), and writes each result with its
    alerts as it arrives.

    ``lease_seconds``: how long the jobs and slots of a runner that stopped renewing them (its
    process died) stay held before other workers take them over. A live runner renews them every
    quarter of it, at most every second."""

    def __init__(self, secrets: SecretStore | None, *, threads: int = 32, verify_wait: float = 5.0,
                 clock: Callable[[], datetime] = utcnow, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 on_tested: Callable[[list[MailboxTested]], None] | None = None) -> None:
        self.secrets = secrets
        self.threads = max(1, threads)
        self.verify_wait = verify_wait
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.on_tested = on_tested
        self.worker = queue.worker_identity()
        self._leases = ConnectionLeases(self.worker, lease_seconds, claims="test_job")
        self._blocked: set[int] = set()
        self._lookup: Callable[[str, int, str], Secret | None] | None = None
        self._wake = threading.Event()
        self._descriptors = descriptors.shared_budget()
        self._waiting_out: str | None = None  # the fault last said, until the database answers again

    def wake(self) -> None:
        """Look for queued jobs now instead of at the next poll (thread-safe)."""
        self._wake.set()

    # -- claiming --

    def _claim(self, limit: int) -> list[_Claimed]:
        jobs = queue.claim(self.worker, self.clock(), self.lease_seconds, limit)
        return self._snapshots(jobs) if jobs else []

    @staticmethod
    def _snapshots(jobs: list[queue.ClaimedJob]) -> list[_Claimed]:
        settings = settings_service.load()
        boxes = {m.id: m for m in Mailbox.select().where(Mailbox.id.in_([job.mailbox_id for job in jobs]))}
        profile_ids = {m.profile_id for m in boxes.values() if m.profile_id}
        profiles = {p.id: p for p in Profile.select().where(Profile.id.in_(list(profile_ids)))} if profile_ids else {}
        forward_ready = {row["profile_id"] for row in queue.rows_by_name(database.execute_sql(
            "SELECT DISTINCT profile_id FROM mailbox WHERE is_forward = 1 AND active = 1 AND incoming_enabled = 1"))}
        claimed = []
        for job in jobs:
            box = boxes[job.mailbox_id]
            profile = profiles.get(box.profile_id)
            approved = box.approval != Approval.REJECTED and (
                box.approval == Approval.APPROVED or not approval_required(settings, box.regarding))
            claimed.append(_Claimed(
                job=job, row_version=box.row_version,
                mailbox=mailbox_snapshot(box, approved=approved,
                                         forward_mailbox_available=box.profile_id in forward_ready),
                profile=None if profile is None else profile_snapshot(profile),
            ))
        return claimed

    def _release(self, claimed: Iterable[_Claimed]) -> None:
        queue.release(self.worker, [c.job.job_id for c in claimed])

    # -- checking (pool threads) --

    def _secret(self, kind: str, record_id: int, what: str) -> Secret | None:
        if self._lookup is None:
            return None
        return self._lookup(kind, record_id, what)

    def _check(self, item: _Claimed) -> MailboxCheckResult:
        # Both directions usually log in with the same secret: read it once per check (a keyring read
        # takes milliseconds, and the encrypted file serves one read at a time).
        secret = functools.cache(self._secret)
        secret.save = getattr(self._lookup, "save", None)  # type: ignore[attr-defined]  # rotated refresh tokens
        try:
            return check_mailbox(item.mailbox, item.profile, secret, verify_wait=self.verify_wait)
        except Exception as exc:  # a bug or an unreadable secret store must not stop the pool
            if fault_sentence(exc) is not None:  # this machine's (a full disk, the database): not the mailbox's
                forget_connection()
                raise
            failure = could_not_run(exc, "test", item.mailbox.id)
            return MailboxCheckResult({d: failure for d in (directions_in_use(item.mailbox) or ["incoming"])})

    # -- the loop --

    def run(self, *, stop: threading.Event | None = None, until_idle: bool = True,
            poll_seconds: float = 1.0) -> RunSummary:
        if self.secrets is not None and self._lookup is None:
            self._lookup = secret_lookup(self.secrets)
        self._descriptors = descriptors.shared_budget()
        self.threads = self._descriptors.threads_that_fit(self.threads, descriptors.PER_TEST, "Test & Enable")
        queue.running_here.add(self.worker)
        summary = RunSummary()
        try:
            if until_idle:
                self._run(stop, until_idle, poll_seconds, summary)
            else:
                self._run_through_faults(stop, poll_seconds, summary)
            return summary
        finally:
            queue.running_here.discard(self.worker)

    def _run_through_faults(self, stop: threading.Event | None, poll_seconds: float, summary: RunSummary) -> None:
        """Run until stopped, waiting out the faults that pass (a full disk, the database server
        without a free slot or restarting: ``faults.passing_fault``) with one line each, at growing
        pauses (at most ``FAULT_PAUSE_MOST``); before each try, the jobs and slots the fault left
        held are handed back and the run starts over. The database answers again (said in one line,
        ``_answered``) once results are written or the run is idle: a PostgreSQL server out of disk
        space still takes the hand-back and the claim, whose rows fit in pages it has, and refused
        the results again; said then, the worker said so and the fault anew at every try, and
        tested the mailboxes again each second. Other errors stop it."""
        pause, self._waiting_out = FAULT_PAUSE_FIRST, None
        while True:
            try:
                if self._waiting_out is not None:
                    self._hand_back()
                self._run(stop, False, poll_seconds, summary)
                return
            except Exception as exc:
                fault = passing_fault(exc)
                if fault is None:
                    raise
                forget_connection()  # broken, or refused: the next try connects anew
                if self._waiting_out is None:
                    pause = FAULT_PAUSE_FIRST  # a new fault, or it came back after the database answered
                if fault != self._waiting_out:
                    faults.log.warning("Test & Enable waits: %s", fault,
                                       extra={"paused": "Test & Enable", "fault": fault})
                    self._waiting_out = fault
            if (stop or threading.Event()).wait(pause):
                return  # what it held goes back to the queue when its lease ends, or this process does
            pause = min(pause * 2, FAULT_PAUSE_MOST)

    def _answered(self) -> None:
        if self._waiting_out is not None:
            self._waiting_out = None
            faults.log.info("Test & Enable goes on: the database answers again")

    def _hand_back(self) -> None:
        """Requeue this runner's jobs and give back its connection slots (after a fault stopped its
        run with work in hand)."""
        held = [row["id"] for row in queue.rows_by_name(database.execute_sql(
            "SELECT id FROM test_job WHERE state = ? AND worker = ?", [JobState.RUNNING, self.worker]))]
        queue.release(self.worker, held)
        with write_transaction():
            self._leases.release_all()

    def _run(self, stop: threading.Event | None, until_idle: bool, poll_seconds: float, summary: RunSummary) -> None:
        clock_jumps.follow_database(at_once=True)  # PostgreSQL: the server's clock decides between workers
        summary.requeued += queue.recover(self.worker, self.clock(), self.lease_seconds)
        pending: deque[_Claimed] = deque()
        in_flight: dict[Future[MailboxCheckResult], _Claimed] = {}
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="mbxtui-test") as pool:
            try:
                while True:
                    stopping = stop is not None and stop.is_set()
                    if stopping and pending:  # handed back now, for other workers, not after the tests in flight
                        self._release(pending)
                        pending.clear()
                    if not stopping and len(pending) < self.threads * 2:
                        pending.extend(self._claim(self.threads * 4 - len(pending)))
                    if not stopping:
                        self._dispatch(pool, pending, in_flight)
                    requeued = self._sync(pending)
                    if requeued is not None:
                        summary.requeued += requeued
                        if not stopping:
                            self._dispatch(pool, pending, in_flight)
                    if in_flight:
                        done, _ = wait(list(in_flight), timeout=0.25, return_when=FIRST_COMPLETED)
                        finished = []
                        for future in done:
                            item = in_flight.pop(future)
                            self._descriptors.give_back(descriptors.PER_TEST)
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
                            self._answered()
                        continue
                    if stopping:
                        break
                    if not pending:
                        if until_idle:
                            break
                        self._answered()
                        self._wake.wait(min(poll_seconds, self._leases.renew_seconds))
                        self._wake.clear()
                    else:  # other runners hold every slot these jobs need
                        self._wake.wait(0.05)
            finally:
                try:
                    self._release(pending)
                finally:  # also when the database failed: the checks in flight end, and give back their shares
                    finished = self._ended(in_flight)
                if finished:
                    self._write(finished, summary)
                with write_transaction():
                    self._leases.release_all()
                # The mailboxes' own OAuth2 refreshes and expiry warnings.
                authorizations.after_pass(self.clock(), self.worker)

    def _ended(self, in_flight: dict[Future[MailboxCheckResult], _Claimed]) -> list[tuple[_Claimed, MailboxCheckResult]]:
        """Wait for the checks in flight, give back their descriptors and slots, and return those
        that have a result (one that raised a fault of the machine has none: its job is handed back)."""
        wait(list(in_flight))
        ended = []
        for future, item in in_flight.items():
            self._descriptors.give_back(descriptors.PER_TEST)
            if item.profile is not None:
                self._leases.give_back(item.profile.id)
            if future.exception() is None:
                ended.append((item, future.result()))
        in_flight.clear()
        return ended

    def _dispatch(self, pool: ThreadPoolExecutor, pending: deque[_Claimed],
                  in_flight: dict[Future[MailboxCheckResult], _Claimed]) -> None:
        waiting: deque[_Claimed] = deque()
        blocked: set[int] = set()
        while pending and len(in_flight) < self.threads:
            if not self._descriptors.take(descriptors.PER_TEST):
                break  # the open-file limit: the rest waits for a running check to end
            item = pending.popleft()
            if item.profile is not None and not self._leases.take(item.profile.id):
                self._descriptors.give_back(descriptors.PER_TEST)
                blocked.add(item.profile.id)
                waiting.append(item)
                continue
            in_flight[pool.submit(self._check, item)] = item
        pending.extendleft(reversed(waiting))
        self._blocked = blocked

    # -- sharing connections and leases with other workers --

    def _sync(self, pending: deque[_Claimed]) -> int | None:
        """When due (see leases.py): one write transaction that renews the leases of this runner's
        jobs and connection slots, takes or gives back slots for what waits, and requeues jobs whose
        lease ran out. Returns how many jobs were requeued; None when it was not due."""
        now = self.clock()

        def renew_jobs(until: datetime) -> int:
            queue.renew(self.worker, until)
            return queue.requeue_expired(now, self.lease_seconds)

        waiting = [item.profile.id for item in pending if item.profile is not None]
        return self._leases.refresh(waiting, self.threads, now, renew_jobs, blocked=self._blocked)

    # -- writing results (R14, R15, R16) --

    def _write(self, finished: list[tuple[_Claimed, MailboxCheckResult]], summary: RunSummary) -> None:
        events: list[MailboxTested] = []
        now = self.clock()
        settings = settings_service.load()
        failing_profiles_seen: set[int] = set()
        alert_profiles: dict[int, Profile | None] = {}
        with write_transaction():
            for item, result in finished:
                event = self._write_one(item, result, now, settings, alert_profiles)
                if event is None:
                    continue
                events.append(event)
                summary.tested += 1
                setattr(summary, event.outcome.value, getattr(summary, event.outcome.value) + 1)
                if event.failures and item.profile is not None:
                    failing_profiles_seen.add(item.profile.id)
            failing_profiles.alert_failing_profiles(failing_profiles_seen, now)
        if events and self.on_tested is not None:
            self.on_tested(events)

    def _write_one(self, item: _Claimed, result: MailboxCheckResult, now: datetime, settings: OrgSettings,
                   alert_profiles: dict[int, Profile | None]) -> MailboxTested | None:
        """``alert_profiles``: the profiles read so far in this transaction, for the alerts."""
        # Plain SQL on this path: it runs once per mailbox checked, beside the busy probe threads, and
        # building the same statements through peewee took most of its time.
        job = queue.row_by_name(database.execute_sql(
            "SELECT j.state, j.worker, m.email, m.active, m.owner_id, m.profile_id, m.transient_failures, "
            "m.row_version FROM test_job j JOIN mailbox m ON m.id = j.mailbox_id WHERE j.id = ?",
            [item.job.job_id]))
        if job is None or job["state"] != JobState.RUNNING or job["worker"] != self.worker:
            return None  # cancelled (mailbox deactivated) or taken over after our lease ran out
        # The fields read below and by raise_alert.
        mailbox = Mailbox(id=item.mailbox.id, email=job["email"], active=bool(job["active"]), owner=job["owner_id"],
                          profile=job["profile_id"], transient_failures=job["transient_failures"],
                          row_version=job["row_version"])
        if any(r.failure is not None and r.failure.code == ErrorCode.TOO_MANY_OPEN_FILES
               for r in result.directions.values()):
            # This machine's open-file limit, not the mailbox's fault: no outcome, fewer at once.
            self._descriptors.ran_out(descriptors.PER_TEST, "Test & Enable")
            queue.requeue(item.job.job_id)
            return None
        if mailbox.row_version != item.row_version:
            # Edited while being checked: the result says nothing about the new settings; check again.
            queue.requeue(item.job.job_id)
            return None
        if mailbox.profile_id is not None and mailbox.profile_id not in alert_profiles:
            alert_profiles[mailbox.profile_id] = Profile.find(mailbox.profile_id)
        profile = alert_profiles.get(mailbox.profile_id)
        used = directions_in_use(item.mailbox) or list(result.directions)
        attempt = Attempt(email=mailbox.email, at=now, directions={
            d: result.directions[d].failure for d in used if d in result.directions},
            not_read=not_processed_reason(profile.type if profile else None, item.mailbox.incoming_method))
        outcome = decide(attempt, settings, History(active=mailbox.active,
                                                    transient_failures=mailbox.transient_failures))
        _write_mailbox(mailbox.id, outcome, item.job.requested_by, now)
        # R16 counts this test's failures; what passed (everything, on a pass) no longer counts.
        failing_profiles.failed(mailbox.id, mailbox.profile_id, outcome.failures, failing_profiles.TEST, now)
        failing_profiles.passed(mailbox.id, DIRECTIONS if outcome.verdict == JobOutcome.PASSED else
                                [d for d, failure in attempt.directions.items() if failure is None])
        if outcome.verdict == JobOutcome.PASSED:  # R30: processing starts over
            sync_status.reenabled(mailbox.id, [d for d, on in outcome.enabled.items() if on], now)
        queue.finish(item.job.job_id, outcome.verdict, now, result.as_dict())
        if outcome.retry_at is not None:
            queue.enqueue_retry(item.job.batch_id, mailbox.id, item.job.requested_by, item.job.attempt + 1,
                                outcome.retry_at)
        for notice in outcome.alerts:
            raise_alert(notice.level, notice.code, notice.text, mailbox=mailbox, profile=profile, settings=settings)
        return MailboxTested(mailbox.id, mailbox.email, item.job.batch_id, outcome.verdict, dict(outcome.failures))


def _write_mailbox(mailbox_id: int, outcome: Outcome, attempted_by: str, now: datetime) -> None:
    """The mailbox's columns as ``outcome`` leaves them."""
    values: dict[str, Any] = {}
    for direction in DIRECTIONS:
        values[f"{direction}_status"] = outcome.statuses[direction]
        if direction in outcome.enabled:
            values[f"{direction}_enabled"] = outcome.enabled[direction]
    values.update(
        test_scheduled=False, test_last_attempted_by=attempted_by, test_last_attempted_on=now,
        test_completed_on=now, last_error_code=outcome.error.code.value if outcome.error else None,
        last_error_text=outcome.error.message if outcome.error else None,
        transient_failures=outcome.transient_failures, postponed_until=outcome.retry_at,
    )
    database.execute_sql(f"UPDATE mailbox SET {', '.join(f'{column} = ?' for column in values)} WHERE id = ?",
                         [*values.values(), mailbox_id])
    database.execute_sql(f"UPDATE mailbox SET overall_status = {OVERALL_STATUS_SQL} WHERE id = ?", [mailbox_id])
