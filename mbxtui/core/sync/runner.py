"""The processing runner: which mailboxes are due (R23, R24), claiming them so that two workers never
cycle one mailbox at once, and their cycles on a pool of threads within each profile's connection
bound shared with Test & Enable (R8, R23: the same leased slots, see jobs/leases.py).

Like the Test & Enable runner, the thread calling ``run_once`` claims, dispatches and writes the
status; each cycle writes its own batches (activities and checkpoint, one transaction each) and
waits for each commit, because deleting what was processed must wait for it (R28). The cycles'
reads and writes go through one database thread of the pass (``store.on_database_thread``)."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from mbxtui.core import clock, descriptors, validation
from mbxtui.core.db import database_thread_pool, drop_connection, write_transaction
from mbxtui.core.enums import AlertLevel, Approval, ProfileType, Regarding
from mbxtui.core.jobs import clock_jumps
from mbxtui.core.jobs.leases import ConnectionLeases
from mbxtui.core.jobs.queue import rows_by_name, worker_identity
from mbxtui.core.local_faults import could_not_run
from mbxtui.core.mailbox_check import endpoint, mailbox_snapshot, profile_snapshot
from mbxtui.core.errors import NotFound
from mbxtui.core.faults import fault_sentence
from mbxtui.core.models import Mailbox, OrgSettings, Profile, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.probes.base import ErrorCode, Failure
from mbxtui.core.probes.tls import ssl_context
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import authorizations
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.credentials import secret_lookup
from mbxtui.core.services.mailboxes import approval_required
from mbxtui.core.sql_lists import in_list_chunks, placeholders
from mbxtui.core.sync import status, store
from mbxtui.core.sync.incoming import CycleResult, SyncTarget, run_cycle
from mbxtui.core.sync.outgoing import OutgoingRunner, OutgoingSummary
from mbxtui.core.sync.passes import run_within_slots
from mbxtui.core.sync.routing import Party, effective_tracking

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 120.0


@dataclass(frozen=True)
class MailboxCycled:
    email: str
    ok: bool
    messages: int
    recorded: int
    unresolved: int
    deleted: int
    error_code: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"email": self.email, "ok": self.ok, "messages": self.messages, "recorded": self.recorded,
                "unresolved": self.unresolved, "deleted": self.deleted, "error_code": self.error_code,
                "error": self.error}


@dataclass
class SyncSummary:
    """``mailboxes``: the incoming cycles; ``outgoing``: the sending pass that followed them."""

    mailboxes: list[MailboxCycled] = field(default_factory=list)
    outgoing: OutgoingSummary = field(default_factory=OutgoingSummary)

    @property
    def failed(self) -> int:
        """Mailboxes that failed in either direction. An email the server refused while the
        mailbox's sending worked is counted in ``send_failed``, not here."""
        failing = {m.email for m in self.mailboxes if not m.ok}
        return len(failing | {m.email for m in self.outgoing.mailboxes if not m.ok})

    def as_dict(self) -> dict:
        outgoing = self.outgoing
        return {"mailboxes": len({m.email for m in self.mailboxes} | {m.email for m in outgoing.mailboxes}),
                "failed": self.failed,
                "messages": sum(m.messages for m in self.mailboxes),
                "recorded": sum(m.recorded for m in self.mailboxes),
                "unresolved": sum(m.unresolved for m in self.mailboxes),
                "sent": outgoing.sent, "send_failed": outgoing.failed,
                "send_retrying": sum(m.retrying for m in outgoing.mailboxes), "uncertain": outgoing.uncertain,
                "results": [m.as_dict() for m in self.mailboxes],
                "outgoing": [m.as_dict() for m in outgoing.mailboxes]}


class SyncRunner:
    """One pass over the due mailboxes (``run_once``). ``emails``: only these; ``ignore_interval``:
    cycle them even before their polling interval is over (``sync --now``)."""

    def __init__(self, secrets: SecretStore | None, *, threads: int = 8, clock: Callable[[], datetime] = utcnow,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, stop: threading.Event | None = None) -> None:
        """``stop``: once set, a pass starts no more cycles; those in flight finish (each within its
        profile's timeout) and the mailboxes not started are given back as the pass ends."""
        self.secrets = secrets
        self.threads = max(1, threads)
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.stop = stop
        # Its own name in the lease table: a process running tests too holds those slots apart.
        self.worker = f"{worker_identity()}:sync"
        self._leases = ConnectionLeases(self.worker, lease_seconds, claims="sync_status")
        self._failed_profiles: set[int] = set()

    def run_once(self, emails: list[str] | None = None, *, ignore_interval: bool = False) -> SyncSummary:
        lookup = secret_lookup(self.secrets) if self.secrets is not None else (lambda *_: None)
        settings = settings_service.load()  # as the pass starts, for every mailbox in it
        targets = self._claim(emails, ignore_interval, settings)
        encrypted = {target.profile.ca_file for target in targets if endpoint(target.profile, "incoming").tls != "none"}
        for ca_file in encrypted:
            # Made once here: the cycles starting together each made their own while none was cached.
            with contextlib.suppress(OSError):  # the cycle's TLS step says what is wrong with the file
                ssl_context(ca_file)
        summary = SyncSummary()
        try:
            # The cycles' threads touch no database (see _cycle): a plain pool, without the closing
            # round of database_thread_pool (30 ms a pass, most of it starting threads to close nothing).
            with database_thread_pool(1, "mbxtui-sync-db") as database_thread, \
                    ThreadPoolExecutor(self.threads, thread_name_prefix="mbxtui-sync") as pool:
                database_thread.submit(database.connect, reuse_if_open=True)  # while the cycles log in
                # The status and the leases are written on the database thread too: one connection
                # writes while the pass runs. Two in one process queued on SQLite's busy timeout,
                # which sleeps up to 100 ms at a time (a batch waited 326 ms for one status write).
                run_within_slots(
                    pool, targets, threads=self.threads, leases=self._leases,
                    work=lambda target: self._cycle(target, lookup, settings, database_thread),
                    finish=lambda target, result: summary.mailboxes.append(
                        store.on_thread(database_thread, self._finish, target, result, settings)),
                    renew=lambda pending: store.on_thread(database_thread, self._sync_leases, pending),
                    finish_all=lambda ended: summary.mailboxes.extend(
                        store.on_thread(database_thread, self._finish_all, ended, settings)))
        finally:
            with write_transaction():
                self._leases.release_all()
                database.execute_sql("UPDATE sync_status SET worker = NULL, lease_until = NULL, state = 'idle' "
                                     "WHERE worker = ?", [self.worker])
        with write_transaction():  # R16 and R31, once per pass
            status.pass_ended(self.clock(), self._failed_profiles)
        authorizations.after_pass(self.clock(), self.worker)  # the mailboxes' own OAuth2 refreshes and expiry warnings
        return summary

    # -- choosing and claiming (R23, R24) --

    def _claim(self, emails: list[str] | None, ignore_interval: bool, settings: OrgSettings) -> list[SyncTarget]:
        clock_jumps.follow_database()  # PostgreSQL: the server's clock decides between workers
        now = self.clock()
        expired = clock.current().expired_before(now, self.lease_seconds)  # another's lease ran out
        where = ["m.active = 1", "m.incoming_enabled = 1", "m.incoming_method = 'server_side_sync'",
                 "p.active = 1", "p.type IN (?, ?)", "m.approval <> ?",
                 "(m.approval = ? OR (m.regarding = 'user' AND ? = 0) OR (m.regarding <> 'user' AND ? = 0))",
                 "(s.worker IS NULL OR s.lease_until < ?)"]
        params: list = [ProfileType.IMAP_SMTP.value, ProfileType.POP3_SMTP.value, Approval.REJECTED.value,
                        Approval.APPROVED.value,
                        int(approval_required(settings, Regarding.USER)),
                        int(approval_required(settings, Regarding.QUEUE)), expired]
        if not ignore_interval:
            where.append("(s.next_due IS NULL OR s.next_due <= ?)")
            params.append(now)
        if emails:
            where.append(f"m.email IN ({placeholders(emails)})")
            params.extend(email.lower() for email in emails)
        read_at = clock.monotonic()
        with write_transaction():
            until = clock.lease_end(now, read_at, self.lease_seconds)
            due = [row["id"] for row in rows_by_name(database.execute_sql(
                "SELECT m.id FROM mailbox m JOIN profile p ON p.id = m.profile_id "
                f"LEFT JOIN sync_status s ON s.mailbox_id = m.id WHERE {' AND '.join(where)} ORDER BY m.id", params))]
            for marks, chunk in in_list_chunks(due):
                database.execute_sql(
                    "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, "
                    f"enabled_since) SELECT id, 'idle', 0, 0, 0, COALESCE(test_completed_on, ?) FROM mailbox "
                    f"WHERE id IN ({marks}) ON CONFLICT DO NOTHING", [now, *chunk])
                database.execute_sql(
                    f"UPDATE sync_status SET worker = ?, lease_until = ?, state = 'processing', last_cycle_started = ? "
                    f"WHERE mailbox_id IN ({marks}) AND (worker IS NULL OR lease_until < ?)",
                    [self.worker, until, now, *chunk, expired])
        claimed = [row["mailbox_id"] for row in rows_by_name(database.execute_sql(
            "SELECT mailbox_id FROM sync_status WHERE worker = ? ORDER BY mailbox_id", [self.worker]))]
        return self._targets(claimed, settings)

    def _targets(self, mailbox_ids: list[int], settings: OrgSettings) -> list[SyncTarget]:
        if not mailbox_ids:
            return []
        boxes = list(Mailbox.select().where(Mailbox.id.in_(mailbox_ids)))
        rows = {p.id: p for p in Profile.select().where(Profile.id.in_({b.profile_id for b in boxes}))}
        since = {row["mailbox_id"]: row["enabled_since"] for row in rows_by_name(database.execute_sql(
            f"SELECT mailbox_id, enabled_since FROM sync_status WHERE mailbox_id IN ({placeholders(mailbox_ids)})",
            mailbox_ids))}
        saved = store.checkpoints(mailbox_ids)
        targets = []
        for box in boxes:
            profile = rows[box.profile_id]
            reads_after = (box.process_email_after or profile.process_email_from or _as_datetime(since.get(box.id))
                           or self.clock())
            # Mail servers date a message to the second: one received in the boundary's second may
            # have come after it, and is read (R24).
            reads_after = _as_datetime(reads_after).replace(microsecond=0)
            own = None if box.is_forward else Party(
                box.user_id, box.queue_id, effective_tracking(box.tracking, box.regarding, settings.tracking_users,
                                                               settings.tracking_queues))
            targets.append(SyncTarget(
                mailbox=mailbox_snapshot(box, approved=True, forward_mailbox_available=False),
                profile=profile_snapshot(profile), min_polling_minutes=profile.min_polling_minutes, own=own,
                delete_after_processing=box.is_forward or (box.regarding == "queue" and box.delete_after_processing),
                reads_after=reads_after, processed_folder=profile.processed_folder, claimed_by=self.worker,
                checkpoints=saved.get(box.id, {})))
        return targets

    # -- one cycle (pool threads) --

    def _cycle(self, target: SyncTarget, lookup: Callable[[str, int, str], str | None],
               settings: OrgSettings, database_thread: Executor | None = None) -> CycleResult:
        secret = functools.cache(lookup)
        try:
            with store.on_database_thread(database_thread):
                candidates = (store.forward_candidates(target.profile.id, settings.tracking_users,
                                                       settings.tracking_queues) if target.is_forward else None)
                return run_cycle(target, secret, candidates, self.clock())
        except Exception as exc:  # an unreadable secret store or a database error must not stop the pool
            drop_connection()  # it may be broken: the thread's next cycle connects anew
            if fault_sentence(exc) is not None:  # the database's machine, not the mailbox: no failure of its own
                raise
            return CycleResult(could_not_run(exc, "cycle", target.mailbox.id))
        finally:
            if database_thread is not None:
                drop_connection()  # a pool thread keeps no connection, should anything have opened one

    # -- the status (R31) and the leases --

    def _finish_all(self, ended: list[tuple[SyncTarget, CycleResult]], settings: OrgSettings) -> list[MailboxCycled]:
        """The status of the cycles that ended together, in one transaction: those that went
        through with nothing to alert in a few statements for all, the others one by one."""
        with write_transaction():
            plain = {target.mailbox.id for target, result in ended
                     if result.failure is None and not result.counts.unresolved}
            self._succeeded([(target, result) for target, result in ended if target.mailbox.id in plain])
            return [self._cycled(target, result) if target.mailbox.id in plain
                    else self._finish(target, result, settings) for target, result in ended]

    def _succeeded(self, ended: list[tuple[SyncTarget, CycleResult]]) -> None:
        """``_finish`` of cycles that went through (R31), inside the caller's transaction: one
        statement for the mailboxes with the same count and next due time."""
        now = self.clock()
        alike: dict[tuple[int, datetime], list[int]] = {}
        for target, result in ended:
            due = now if result.counts.more else now + timedelta(minutes=target.min_polling_minutes)
            alike.setdefault((result.counts.messages, due), []).append(target.mailbox.id)
        ours: list[int] = []
        for (messages, due), ids in alike.items():
            for marks, chunk in in_list_chunks(ids):
                ours.extend(row[0] for row in database.execute_sql(
                    "UPDATE sync_status SET worker = NULL, lease_until = NULL, last_cycle_finished = ?, "
                    f"items_last_cycle = ?, next_due = ? WHERE mailbox_id IN ({marks}) "
                    "AND worker = ? RETURNING mailbox_id", [now, messages, due, *chunk, self.worker]).fetchall())
        # Not ours: another worker took the mailbox over after our lease ran out; its status is its own.
        status.incoming_succeeded(sorted(ours), now)

    @staticmethod
    def _cycled(target: SyncTarget, result: CycleResult) -> MailboxCycled:
        counts = result.counts
        return MailboxCycled(target.mailbox.email, True, counts.messages, counts.recorded, counts.unresolved,
                             counts.deleted)

    def _finish(self, target: SyncTarget, result: CycleResult, settings: OrgSettings) -> MailboxCycled:
        now = self.clock()
        failure = result.failure
        counts = result.counts
        if failure is not None and failure.code == ErrorCode.TOO_MANY_OPEN_FILES:
            return self._not_cycled(target, failure, now)
        due = now if counts.more else now + timedelta(minutes=target.min_polling_minutes)
        with write_transaction():
            ours = database.execute_sql(
                "UPDATE sync_status SET worker = NULL, lease_until = NULL, last_cycle_finished = ?, items_last_cycle = ?, "
                "next_due = ? WHERE mailbox_id = ? AND worker = ?",
                [now, counts.messages, due, target.mailbox.id, self.worker]).rowcount
            if ours and failure is None:
                status.direction_succeeded(target.mailbox.id, "incoming", now)
            elif ours:  # else another worker took it over after our lease ran out: its status is its own
                status.direction_failed(target.mailbox.id, "incoming", failure, settings, now)
                self._failed_profiles.add(target.profile.id)
            if counts.unresolved:
                raise_alert(AlertLevel.WARNING, "UNRESOLVED_MESSAGES",
                            f"the forward mailbox {target.mailbox.email} received {counts.unresolved} message(s) "
                            "addressed to no user or queue it serves (R26): they are kept as unresolved activities; "
                            "set those recipients' incoming method to forward_mailbox, or ignore them",
                            mailbox=Mailbox.find(target.mailbox.id), settings=settings)
        return MailboxCycled(target.mailbox.email, failure is None, counts.messages, counts.recorded,
                             counts.unresolved, counts.deleted,
                             failure.code.value if failure else None, failure.message if failure else None)

    def _not_cycled(self, target: SyncTarget, failure: Failure, now: datetime) -> MailboxCycled:
        """This machine ran out of file descriptors: the mailbox's status stays as it was (no
        failure, no R16 count) and it is due again at once, with fewer cycles at a time."""
        descriptors.shared_budget().ran_out(descriptors.PER_PROCESSING, "processing")
        with write_transaction():
            database.execute_sql("UPDATE sync_status SET worker = NULL, lease_until = NULL, state = 'idle', next_due = ? "
                                 "WHERE mailbox_id = ? AND worker = ?", [now, target.mailbox.id, self.worker])
        return MailboxCycled(target.mailbox.email, True, 0, 0, 0, 0, failure.code.value, failure.message)

    def _sync_leases(self, pending: list[SyncTarget]) -> None:
        """Renew the claims of this pass's mailboxes and its connection slots, throttled (see
        jobs/leases.py). Once ``stop`` is set, ``pending`` is emptied in place: the pass ends with
        the cycles in flight, and its closing release gives the others back."""
        if self.stop is not None and self.stop.is_set():
            pending.clear()

        def renew_claims(until: datetime) -> None:
            database.execute_sql("UPDATE sync_status SET lease_until = ? WHERE worker = ?", [until, self.worker])

        self._leases.refresh([target.profile.id for target in pending], self.threads, self.clock(), renew_claims)


def _as_datetime(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def sync_once(actor: Actor, secrets: SecretStore | None, emails: list[str] | None = None, *,
              ignore_interval: bool = False, threads: int = 8) -> SyncSummary:
    """One cycle of every due mailbox (or of ``emails``), for an operator allowed to run Test & Enable:
    the incoming cycles, then the sending of the due outgoing email (R29). A named mailbox that does
    not exist is refused before anything runs."""
    require(actor, Permission.TEST)
    named = [validation.email("mailbox", email) for email in emails or []]
    missing = sorted(set(named) - {m.email for m in Mailbox.select(Mailbox.email).where(Mailbox.email.in_(named))})
    if missing:
        raise NotFound(f"no mailbox has the address {missing[0]}: see mbxtui mailbox list")
    summary = SyncRunner(secrets, threads=threads).run_once(named or None, ignore_interval=ignore_interval)
    summary.outgoing = OutgoingRunner(secrets, threads=threads).run_once(named or None)
    return summary
