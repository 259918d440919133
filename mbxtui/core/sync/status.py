"""What the end of a cycle means for one direction of a mailbox (R30), and the stale warning (R31).

A failure is decided by ``jobs.outcome.decide``, as Test & Enable's are (R14): a transient one
leaves the direction enabled and waiting for the retry interval, counted in the sync status
(``incoming_failures`` / ``outgoing_failures``); a permanent one, or a transient one out of
retries, disables that direction of the mailbox with its status ``failure`` and the mailbox's last
error (so it shows in Test and Enable Failed) and raises an error alert, which goes to the mailbox
owner and the profile owner. A success clears the count. Test & Enable enabling the mailbox again
starts over (``reenabled``).

Every function here writes; the caller holds the write transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from mbxtui.core.enums import AlertLevel, CheckStatus
from mbxtui.core.jobs import failing_profiles
from mbxtui.core.jobs.outcome import Attempt, History, RetryPolicy, decide
from mbxtui.core.models import Mailbox, database
from mbxtui.core.probes.base import ErrorCode, Failure
from mbxtui.core.services.alerts import raise_alert
from mbxtui.core.services.mailbox_views import stale_hours, stale_ids
from mbxtui.core.services.mailboxes import OVERALL_STATUS_SQL
from mbxtui.core.sql_lists import in_list_chunks
from mbxtui.core.sync import notices

PROCESSED_DIRECTIONS = ("incoming", "outgoing")
STALE_CODE = "SYNC_STALE"
_OTHER = {"incoming": "outgoing", "outgoing": "incoming"}


@dataclass(frozen=True)
class DirectionFailure:
    """What ``direction_failed`` made of a failure: the direction disabled, or retried at
    ``retry_at`` (``failures``: transient failures in a row so far)."""

    disabled: bool
    retry_at: datetime | None
    failures: int


@dataclass(frozen=True)
class _RetriedFailure(Failure):
    """A failure of mbxtui's own while processing (a database error, a bug): not the mailbox's
    fault, so it is retried like a transient one, and disables only once out of retries."""

    @property
    def transient(self) -> bool:
        return True


def _as_decided(failure: Failure) -> Failure:
    if failure.code == ErrorCode.INTERNAL_ERROR and not failure.transient:
        return _RetriedFailure(failure.step, failure.code, failure.message)
    return failure


def _direction(direction: str) -> str:
    if direction not in PROCESSED_DIRECTIONS:
        raise ValueError(f"{direction!r} is not a processed direction: one of {', '.join(PROCESSED_DIRECTIONS)}")
    return direction


def ensure_row(mailbox_id: int, now: datetime) -> None:
    """The mailbox's sync status row, created idle when no cycle has made it yet."""
    database.execute_sql(
        "INSERT INTO sync_status (mailbox_id, state, items_last_cycle, items_total, unresolved_total, enabled_since) "
        "SELECT id, 'idle', 0, 0, 0, COALESCE(test_completed_on, ?) FROM mailbox WHERE id = ? ON CONFLICT DO NOTHING",
        [now, mailbox_id])


def direction_failed(mailbox_id: int, direction: str, failure: Failure, settings: RetryPolicy,
                     now: datetime) -> DirectionFailure:
    """R30: one failed cycle of ``direction`` (``incoming`` or ``outgoing``) of the mailbox.
    ``settings``: the organisation's (its retry policy, and which alert levels it records).

    Transient with retries left: the state is ``waiting``, the count goes up and, for incoming,
    the next cycle is due after the retry interval (outgoing mail keeps its own retry time: the
    returned ``retry_at``); a warning alert is raised for the first failure of a stretch only.
    Otherwise the direction is disabled with an error alert naming the mailbox, the error and what
    to do. A failure of mbxtui's own (``INTERNAL_ERROR``: the database refused a write, a bug) is
    retried as a transient one."""
    _direction(direction)
    failure = _as_decided(failure)
    ensure_row(mailbox_id, now)
    row = database.execute_sql(
        f"SELECT m.email, m.owner_id, m.profile_id, s.{direction}_failures FROM mailbox m "
        "JOIN sync_status s ON s.mailbox_id = m.id WHERE m.id = ?", [mailbox_id]).fetchone()
    email, owner_id, profile_id, before = row[0], row[1], row[2], int(row[3] or 0)
    mailbox = Mailbox(id=mailbox_id, email=email, owner=owner_id, profile=profile_id)
    outcome = decide(Attempt(email=email, directions={direction: failure}, at=now, activity="processing"),
                     settings, History(active=True, transient_failures=before))
    error = [failure.code.value, failure.message]
    failing_profiles.failed(mailbox_id, profile_id, [direction], failing_profiles.PROCESSING, now)  # R16
    if outcome.retry_at is not None:
        due = ", next_due = ?" if direction == "incoming" else ""
        database.execute_sql(
            f"UPDATE sync_status SET {direction}_failures = ?, last_error_code = ?, last_error_text = ?, "
            f"state = CASE WHEN state = 'disabled' THEN state ELSE 'waiting' END{due} WHERE mailbox_id = ?",
            [outcome.transient_failures, *error, *([outcome.retry_at] if due else []), mailbox_id])
        if before == 0:
            for notice in outcome.alerts:
                raise_alert(notice.level, notice.code, notice.text, mailbox=mailbox, settings=settings)
        return DirectionFailure(False, outcome.retry_at, outcome.transient_failures)
    database.execute_sql(
        f"UPDATE mailbox SET {direction}_enabled = 0, {direction}_status = ?, last_error_code = ?, last_error_text = ? "
        "WHERE id = ?", [CheckStatus.FAILURE.value, *error, mailbox_id])
    database.execute_sql(f"UPDATE mailbox SET overall_status = {OVERALL_STATUS_SQL} WHERE id = ?", [mailbox_id])
    failures = before + 1 if failure.transient else before
    due = ", next_due = NULL" if direction == "incoming" else ""
    database.execute_sql(
        f"UPDATE sync_status SET state = 'disabled', {direction}_failures = ?, last_error_code = ?, "
        f"last_error_text = ?{due} WHERE mailbox_id = ?", [failures, *error, mailbox_id])
    text = disabled_text(email, direction, failure, failures)
    raise_alert(AlertLevel.ERROR, failure.code.value, text, mailbox=mailbox, settings=settings)
    notices.mailbox_disabled(mailbox_id, email, owner_id, direction, failure.code.value, text, now)  # R32
    return DirectionFailure(True, None, failures)


def disabled_text(email: str, direction: str, failure: Failure, failures: int) -> str:
    after = f" (still failing after {failures} attempts)" if failure.transient else ""
    return (f"{direction} processing of {email} failed with {failure.code.value}: {failure.message}{after}. "
            f"{direction.capitalize()} is disabled for this mailbox: fix the cause, then run Test & Enable "
            f"for it again (mbxtui test-enable {email})")


def direction_succeeded(mailbox_id: int, direction: str, now: datetime) -> None:
    """R30: a cycle of ``direction`` went through: its transient count starts over, and the mailbox
    is idle with no last error unless the other direction waits for a retry (``waiting`` then); a
    direction disabled before stays disabled on the mailbox (its Test & Enable status). An incoming
    success also ends a stale stretch (R31); an outgoing one leaves an incoming cycle in progress
    as it is."""
    _direction(direction)
    ensure_row(mailbox_id, now)
    if direction == "incoming":
        incoming_succeeded([mailbox_id], now)
        return
    failing_profiles.passed(mailbox_id, [direction])  # R16
    database.execute_sql(
        "UPDATE sync_status SET last_outgoing_success = ?, outgoing_failures = 0, "
        "state = CASE WHEN state IN ('waiting', 'disabled') AND incoming_failures = 0 THEN 'idle' ELSE state END, "
        "last_error_code = CASE WHEN incoming_failures > 0 THEN last_error_code END, "
        "last_error_text = CASE WHEN incoming_failures > 0 THEN last_error_text END "
        "WHERE mailbox_id = ?", [now, mailbox_id])


def incoming_succeeded(mailbox_ids: list[int], now: datetime) -> None:
    """``direction_succeeded(id, "incoming", now)`` for each of these mailboxes, whose status rows
    exist: two statements a few hundred mailboxes (the runner writes the cycles that ended together)."""
    for marks, chunk in in_list_chunks(mailbox_ids):
        failing_profiles.passed_together(chunk, "incoming")  # R16
        database.execute_sql(
            "UPDATE sync_status SET state = CASE WHEN outgoing_failures > 0 THEN 'waiting' ELSE 'idle' END, "
            "last_incoming_success = ?, incoming_failures = 0, stale_alerted_on = NULL, "
            "last_error_code = CASE WHEN outgoing_failures > 0 THEN last_error_code END, "
            "last_error_text = CASE WHEN outgoing_failures > 0 THEN last_error_text END "
            f"WHERE mailbox_id IN ({marks})", [now, *chunk])


def reenabled(mailbox_id: int, directions: Iterable[str], now: datetime) -> None:
    """Test & Enable enabled ``directions`` of the mailbox: its sync status exists from now on
    (when it was first enabled counts for R24 and R31), the directions' failures are forgotten, a
    waiting or disabled mailbox is idle, and its next cycle due at once."""
    counts = [f"{d}_failures = 0" for d in directions if d in PROCESSED_DIRECTIONS]
    if not counts:
        return
    ensure_row(mailbox_id, now)
    database.execute_sql(
        f"UPDATE sync_status SET {', '.join(counts)}, last_error_code = NULL, last_error_text = NULL, next_due = NULL, "
        "state = CASE WHEN state IN ('waiting', 'disabled') THEN 'idle' ELSE state END WHERE mailbox_id = ?",
        [mailbox_id])


def raise_stale_alerts(now: datetime) -> int:
    """R31: one warning alert for each mailbox that went stale and has not been warned about in
    this stale stretch (``stale_alerted_on``; its next successful incoming sync ends the stretch).
    Returns how many were raised."""
    stale_sql, params = stale_ids(now)
    rows = database.execute_sql(
        "SELECT m.id, m.email, m.owner_id, m.profile_id, s.last_incoming_success FROM mailbox m "
        f"JOIN sync_status s ON s.mailbox_id = m.id WHERE +m.active = 1 AND m.id IN ({stale_sql}) "
        "AND s.stale_alerted_on IS NULL ORDER BY m.id", params).fetchall()
    hours = stale_hours()
    for mailbox_id, email, owner_id, profile_id, last_success in rows:
        since = f"since {str(last_success)[:16]} UTC" if last_success else "since it was enabled"
        raise_alert(AlertLevel.WARNING, STALE_CODE,
                    f"{email} is stale: no successful incoming sync {since}, more than {hours} hours (R31). Look "
                    f"at its last error (mbxtui mailbox show {email}) and whether a worker runs (mbxtui worker)",
                    mailbox=Mailbox(id=mailbox_id, email=email, owner=owner_id, profile=profile_id))
        database.execute_sql("UPDATE sync_status SET stale_alerted_on = ? WHERE mailbox_id = ?", [now, mailbox_id])
    return len(rows)


def pass_ended(now: datetime, failed_profiles: set[int], *, stale: bool = True) -> None:
    """What a sync pass does once at its end: R16 for the profiles that had a failure in it (the
    set is emptied; ``jobs/failing_profiles.py`` counts Test & Enable's failures with these), and
    the stale warnings of R31 (``stale``)."""
    failing_profiles.alert_failing_profiles(failed_profiles, now)
    failed_profiles.clear()
    if stale:
        raise_stale_alerts(now)
