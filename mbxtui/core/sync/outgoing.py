"""The outgoing pass (R29): send the due ``pending`` emails of every mailbox enabled for outgoing
(R23: active, approved where approval is required, outgoing enabled with method server_side_sync,
its profile active), each mailbox claimed in its sync status as the incoming cycles claim theirs
(so two workers never send from one mailbox at once) and each connection on a slot of its
profile's bound (R8, the leases of jobs/leases.py).

At most once: an email found ``sending`` as a pass starts, whose mailbox no live worker holds, was
being sent by a worker that died; it becomes ``uncertain`` and only an operator sends it again
(``outgoing.resend``). A refusal waits and retries per the organisation's retry policy while
attempts are left (R14), then the email ``failed``. A failure of the mailbox's sending itself
(connecting, TLS, logging in, its sender refused) is the outgoing direction's (R30,
core/sync/status.py): while it waits for a retry, so do all its due emails; once it is disabled,
they wait until Test & Enable enables it again."""

from __future__ import annotations

import functools
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from mbxtui.core import clock, descriptors
from mbxtui.core.db import database_thread_pool, drop_connection, write_transaction
from mbxtui.core.enums import ActivityDirection, ActivityState, Approval, OutgoingMethod, Regarding
from mbxtui.core.jobs import clock_jumps
from mbxtui.core.faults import fault_sentence
from mbxtui.core.jobs.leases import ConnectionLeases
from mbxtui.core.jobs.queue import row_by_name, rows_by_name, worker_identity
from mbxtui.core.local_faults import could_not_run
from mbxtui.core.mailbox_check import (
    MailboxSnapshot, ProfileSnapshot, SecretLookup, Withheld, credentials_for, mailbox_snapshot, profile_snapshot,
    withheld_failure,
)
from mbxtui.core.models import Mailbox, OrgSettings, Profile, database, utcnow
from mbxtui.core.probes.base import ErrorCode
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.credentials import secret_lookup
from mbxtui.core.services.mailboxes import approval_required
from mbxtui.core.sql_lists import in_list_chunks, placeholders
from mbxtui.core.sync import status
from mbxtui.core.sync.passes import run_within_slots
from mbxtui.core.sync.sending import Attempt, EmailQueue, MailboxSending, QueuedEmail, send_queued

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 120.0
OUTGOING = ActivityDirection.OUTGOING.value
PENDING, SENDING, SENT, FAILED, UNCERTAIN = (ActivityState.PENDING.value, ActivityState.SENDING.value,
                                             ActivityState.SENT.value, ActivityState.FAILED.value,
                                             ActivityState.UNCERTAIN.value)
UNCERTAIN_AFTER_CRASH = ("the worker sending it stopped before the server answered: it may have been sent; check "
                         "with the recipients, then send it again with mbxtui activity resend if it never arrived")
_DUE = ("a.direction = 'outgoing' AND a.state = 'pending' AND (a.next_attempt IS NULL OR a.next_attempt <= ?)")


@dataclass(frozen=True)
class OutgoingTarget:
    mailbox: MailboxSnapshot
    profile: ProfileSnapshot


@dataclass(frozen=True)
class MailboxSent:
    """What one mailbox's sending came to. ``ok``: its outgoing direction worked (an email the
    server refused alone does not make it fail); ``retrying``: emails pending again, for later."""

    email: str
    ok: bool
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    uncertain: int = 0
    error_code: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"email": self.email, "ok": self.ok, "sent": self.sent, "failed": self.failed,
                "retrying": self.retrying, "uncertain": self.uncertain, "error_code": self.error_code,
                "error": self.error}


@dataclass
class OutgoingSummary:
    mailboxes: list[MailboxSent] = field(default_factory=list)
    recovered_uncertain: int = 0  # found ``sending`` as the pass started, with no live worker

    @property
    def sent(self) -> int:
        return sum(m.sent for m in self.mailboxes)

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.mailboxes)

    @property
    def uncertain(self) -> int:
        return self.recovered_uncertain + sum(m.uncertain for m in self.mailboxes)


class OutgoingRunner:
    """One outgoing pass (``run_once``) over the mailboxes with due email; ``emails``: only these.
    ``stop``: once set, the pass starts sending from no more mailboxes; those in flight finish."""

    def __init__(self, secrets: SecretStore | None, *, threads: int = 8, clock: Callable[[], datetime] = utcnow,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, stop: threading.Event | None = None) -> None:
        self.secrets = secrets
        self.stop = stop
        self.threads = max(1, threads)
        self.clock = clock
        self.lease_seconds = lease_seconds
        # Its own name in the sync status and lease tables: an incoming runner of the same process
        # releases only what it claimed.
        self.worker = f"{worker_identity()}:send"
        self._leases = ConnectionLeases(self.worker, lease_seconds, claims="sync_status")
        self._failed_profiles: set[int] = set()

    def run_once(self, emails: list[str] | None = None) -> OutgoingSummary:
        lookup = secret_lookup(self.secrets) if self.secrets is not None else (lambda *_: None)
        settings = settings_service.load()
        summary = OutgoingSummary(recovered_uncertain=self.recover_uncertain())
        waiting = self._claim(emails, settings)
        try:
            with database_thread_pool(self.threads, "mbxtui-send") as pool:
                run_within_slots(
                    pool, waiting, threads=self.threads, leases=self._leases,
                    work=lambda target: self._send_from(target, lookup, settings),
                    finish=lambda target, result: summary.mailboxes.append(self._finish(target, result, settings)),
                    renew=self._sync_leases)
        finally:
            with write_transaction():
                self._leases.release_all()
                database.execute_sql("UPDATE sync_status SET worker = NULL, lease_until = NULL WHERE worker = ?",
                                     [self.worker])
        if self._failed_profiles:
            with write_transaction():  # R16, once per pass (the incoming pass raises the stale warnings)
                status.pass_ended(self.clock(), self._failed_profiles, stale=False)
        return summary

    # -- at most once --

    def recover_uncertain(self) -> int:
        """Every email left ``sending`` by a worker that is gone (its mailbox held by no live worker)
        becomes ``uncertain``: it may have been sent, so it is never sent again by itself."""
        with write_transaction():
            return database.execute_sql(
                "UPDATE email_activity SET state = ?, last_error_code = NULL, last_error_text = ? "
                "WHERE direction = ? AND state = ? AND NOT EXISTS (SELECT 1 FROM sync_status s "
                "WHERE s.mailbox_id = email_activity.mailbox_id AND s.worker IS NOT NULL AND s.lease_until >= ?)",
                [UNCERTAIN, UNCERTAIN_AFTER_CRASH, OUTGOING, SENDING, self.clock()]).rowcount

    # -- choosing and claiming (R23) --

    def _claim(self, emails: list[str] | None, settings: OrgSettings) -> list[OutgoingTarget]:
        clock_jumps.follow_database()  # PostgreSQL: the server's clock decides between workers
        now = self.clock()
        expired = clock.current().expired_before(now, self.lease_seconds)  # another's lease ran out
        where = ["m.active = 1", "m.outgoing_enabled = 1", "m.outgoing_method = ?", "p.active = 1", "m.approval <> ?",
                 "(m.approval = ? OR (m.regarding = 'user' AND ? = 0) OR (m.regarding <> 'user' AND ? = 0))",
                 "(s.worker IS NULL OR s.lease_until < ?)",
                 f"EXISTS (SELECT 1 FROM email_activity a WHERE a.mailbox_id = m.id AND {_DUE})",
                 # R30: while the direction waits for a retry, an email queued since waits with it.
                 "(s.outgoing_failures IS NULL OR s.outgoing_failures = 0 OR NOT EXISTS (SELECT 1 FROM "
                 "email_activity w WHERE w.mailbox_id = m.id AND w.direction = 'outgoing' AND w.state = 'pending' "
                 "AND w.next_attempt > ?))"]
        params: list = [OutgoingMethod.SERVER_SIDE_SYNC.value, Approval.REJECTED.value, Approval.APPROVED.value,
                        int(approval_required(settings, Regarding.USER)),
                        int(approval_required(settings, Regarding.QUEUE)), expired, now, now]
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
                    f"UPDATE sync_status SET worker = ?, lease_until = ? WHERE mailbox_id IN ({marks}) "
                    "AND (worker IS NULL OR lease_until < ?)", [self.worker, until, *chunk, expired])
        claimed = [row["mailbox_id"] for row in rows_by_name(database.execute_sql(
            "SELECT mailbox_id FROM sync_status WHERE worker = ? ORDER BY mailbox_id", [self.worker]))]
        if not claimed:
            return []
        boxes = list(Mailbox.select().where(Mailbox.id.in_(claimed)))
        profiles = {p.id: p for p in Profile.select().where(Profile.id.in_({b.profile_id for b in boxes}))}
        return [OutgoingTarget(mailbox_snapshot(box, approved=True, forward_mailbox_available=False),
                               profile_snapshot(profiles[box.profile_id])) for box in boxes]

    # -- one mailbox (pool threads) --

    def _send_from(self, target: OutgoingTarget, lookup: SecretLookup, settings: OrgSettings) -> MailboxSending:
        try:
            return self._sending(target, functools.cache(lookup), settings)
        except Exception as exc:  # an unreadable secret store or a database error must not stop the pool
            drop_connection()  # it may be broken: the thread's next mailbox connects anew
            if fault_sentence(exc) is not None:  # the database's machine, not the mailbox: the pass stops, says it
                raise
            return MailboxSending(could_not_run(exc, "sending", target.mailbox.id))

    def _sending(self, target: OutgoingTarget, secret: SecretLookup, settings: OrgSettings) -> MailboxSending:
        queue = EmailQueue(functools.partial(self._next_due, target.mailbox.id), self._claim_email,
                           functools.partial(self._record, settings, target.mailbox.id))
        credentials = credentials_for("outgoing", target.mailbox, target.profile, secret)
        if isinstance(credentials, Withheld):  # R34: nothing is sent; the first due email fails with it
            sending = MailboxSending(withheld_failure(credentials))
            first = queue.next_due()
            if first is not None:
                attempt = Attempt(first, "refused", sending.probe.failure)
                sending.attempts.append(attempt)
                queue.record(attempt)
            return sending
        return send_queued(target.profile, credentials, queue)

    def _next_due(self, mailbox_id: int) -> QueuedEmail | None:
        row = row_by_name(database.execute_sql(
            "SELECT a.id, a.message_id, a.sender, a.\"to\", a.cc, a.subject, a.body, a.in_reply_to, a.reference_ids, "
            f"a.attempts FROM email_activity a WHERE a.mailbox_id = ? AND {_DUE} ORDER BY a.id LIMIT 1",
            [mailbox_id, self.clock()]))
        if row is None:
            return None
        return QueuedEmail(row["id"], row["message_id"], row["sender"], tuple(json.loads(row["to"])),
                           tuple(json.loads(row["cc"])), row["subject"], row["body"], row["in_reply_to"],
                           tuple(row["reference_ids"].split()), row["attempts"])

    def _claim_email(self, email: QueuedEmail) -> bool:
        """``sending``, committed before the server hears of it (R29: at most once)."""
        with write_transaction():
            return database.execute_sql("UPDATE email_activity SET state = ? WHERE id = ? AND state = ?",
                                        [SENDING, email.id, PENDING]).rowcount == 1

    def _record(self, settings: OrgSettings, mailbox_id: int, attempt: Attempt) -> None:
        now = self.clock()
        email, failure = attempt.email, attempt.failure
        values: dict[str, object]
        if attempt.outcome == "sent":
            values = {"state": SENT, "sent_on": now, "size": attempt.size, "next_attempt": None,
                      "last_error_code": ErrorCode.RECIPIENT_REJECTED.value if attempt.refused_recipients else None,
                      "last_error_text": (f"sent; the SMTP server refused some recipients: {attempt.refused_recipients}"
                                          if attempt.refused_recipients else None)}
        elif attempt.outcome == "unknown":
            assert failure is not None
            values = {"state": UNCERTAIN, "last_error_code": failure.code.value,
                      "last_error_text": f"{failure.message}; the connection broke while the server was taking the "
                                         "email, so it may have been sent: check with the recipients, then send it "
                                         "again with mbxtui activity resend if it never arrived"}
        elif failure is not None and failure.code == ErrorCode.TOO_MANY_OPEN_FILES:
            # This machine's open-file limit: not an attempt of the email's, due again at once.
            values = {"state": PENDING, "next_attempt": None}
        else:
            assert failure is not None
            retry = will_retry(attempt, settings)
            values = {"state": PENDING if retry else FAILED, "attempts": email.attempts + 1,
                      "next_attempt": now + timedelta(minutes=settings.retry_interval_minutes) if retry else None,
                      "last_error_code": failure.code.value, "last_error_text": failure.message}
        with write_transaction():
            database.execute_sql(
                f"UPDATE email_activity SET {', '.join(f'{column} = ?' for column in values)} "
                "WHERE id = ? AND state IN (?, ?)", [*values.values(), email.id, PENDING, SENDING])
            if attempt.outcome == "sent":
                database.execute_sql("UPDATE sync_status SET last_outgoing_success = ? WHERE mailbox_id = ?",
                                     [now, mailbox_id])

    def _finish(self, target: OutgoingTarget, sending: MailboxSending, settings: OrgSettings) -> MailboxSent:
        """Give the mailbox back and write what its sending means for the outgoing direction (R30)."""
        now = self.clock()
        failure = sending.probe.failure
        counts = {"sent": 0, "failed": 0, "retrying": 0, "uncertain": 0}
        for attempt in sending.attempts:
            if attempt.outcome == "sent":
                counts["sent"] += 1
            elif attempt.outcome == "unknown":
                counts["uncertain"] += 1
            elif will_retry(attempt, settings):
                counts["retrying"] += 1
            else:
                counts["failed"] += 1
        with write_transaction():
            ours = database.execute_sql(
                "UPDATE sync_status SET worker = NULL, lease_until = NULL WHERE mailbox_id = ? AND worker = ?",
                [target.mailbox.id, self.worker]).rowcount
            if ours and failure is None and sending.attempts:
                status.direction_succeeded(target.mailbox.id, "outgoing", now)
            elif ours and failure is not None and failure.code == ErrorCode.TOO_MANY_OPEN_FILES:
                descriptors.shared_budget().ran_out(descriptors.PER_PROCESSING, "sending")
            elif ours and failure is not None:  # else another worker took it over: its status is its own
                decided = status.direction_failed(target.mailbox.id, "outgoing", failure, settings, now)
                self._failed_profiles.add(target.profile.id)
                if decided.retry_at is not None:
                    database.execute_sql(
                        "UPDATE email_activity SET next_attempt = ? WHERE mailbox_id = ? AND direction = ? "
                        "AND state = ? AND (next_attempt IS NULL OR next_attempt < ?)",
                        [decided.retry_at, target.mailbox.id, OUTGOING, PENDING, decided.retry_at])
        return MailboxSent(target.mailbox.email, failure is None, **counts,
                           error_code=failure.code.value if failure else None,
                           error=failure.message if failure else None)

    def _sync_leases(self, waiting: list[OutgoingTarget]) -> None:
        """Renew this pass's mailbox claims and connection slots; once ``stop`` is set, ``waiting``
        is emptied in place and the pass ends with the mailboxes in flight."""
        if self.stop is not None and self.stop.is_set():
            waiting.clear()

        def renew_claims(until: datetime) -> None:
            database.execute_sql("UPDATE sync_status SET lease_until = ? WHERE worker = ?", [until, self.worker])

        self._leases.refresh([target.profile.id for target in waiting], self.threads, self.clock(), renew_claims)


def will_retry(attempt: Attempt, settings: OrgSettings) -> bool:
    """R14: a refusal for now is tried again while the email has attempts left."""
    return (attempt.failure is not None and attempt.failure.transient
            and settings.retry_attempts - attempt.email.attempts > 0)
