"""What an attempt at a mailbox leads to (R14–R16), decided without the database.

``decide`` turns what one attempt found (per direction: passed, or its classified failure), the
organisation's retry policy and what the mailbox went through before into an ``Outcome``: the
status and enabled flag of each direction, the mailbox's last error, its transient-failure count,
when to retry, and the alerts to raise. The runner writes exactly that. The same rules hold for a
failure while processing (R30), so nothing here is particular to Test & Enable: ``Attempt.activity``
names what was attempted in the alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from mbxtui.core.enums import DIRECTIONS, AlertLevel, CheckStatus, JobOutcome
from mbxtui.core.probes.base import Failure


class RetryPolicy(Protocol):
    """The organisation's retry policy for transient errors (``OrgSettings`` has these fields)."""

    retry_attempts: int
    retry_interval_minutes: int


@dataclass(frozen=True)
class Attempt:
    """What one attempt at a mailbox found. ``directions``: each direction the attempt covered
    (those the mailbox uses), ``None`` where it passed, else its failure; a direction left out
    was not attempted. ``not_read``: why no cycle will read the mailbox's incoming mail even once
    enabled (an Exchange profile), said with the enabled alert; None when it will be read."""

    email: str
    directions: Mapping[str, Failure | None]
    at: datetime
    activity: str = "test"
    not_read: str | None = None


@dataclass(frozen=True)
class History:
    """The mailbox as it was before the attempt."""

    active: bool
    transient_failures: int  # attempts in a row that failed only for now


@dataclass(frozen=True)
class AlertNotice:
    level: AlertLevel
    code: str
    text: str


@dataclass(frozen=True)
class Outcome:
    """``enabled`` holds the directions whose flag is set; a direction left out keeps its flag (a
    transient failure that is retried does not disable what worked before)."""

    verdict: JobOutcome
    statuses: Mapping[str, CheckStatus]
    enabled: Mapping[str, bool]
    failures: Mapping[str, str] = field(default_factory=dict)  # direction -> error code
    error: Failure | None = None  # the first failure, kept as the mailbox's last error
    transient_failures: int = 0
    retry_at: datetime | None = None
    alerts: tuple[AlertNotice, ...] = ()

    @property
    def retry(self) -> bool:
        return self.retry_at is not None


def decide(result: Attempt, settings: RetryPolicy, history: History) -> Outcome:
    """R14: a permanent failure disables its direction at once with an error alert; a transient
    one raises a warning and is tried again after the retry interval while attempts are left (the
    retry tries every direction again), and after the last attempt it counts as permanent. R15:
    when nothing failed, the directions that passed are enabled (an inactive mailbox enables
    nothing) with an information alert."""
    failures = {d: f for d, f in result.directions.items() if f is not None}
    attempt = history.transient_failures + 1
    will_retry = (any(f.transient for f in failures.values())
                  and settings.retry_attempts - history.transient_failures > 0)
    retry_at = result.at + timedelta(minutes=settings.retry_interval_minutes) if will_retry else None
    statuses: dict[str, CheckStatus] = {}
    enabled: dict[str, bool] = {}
    alerts: list[AlertNotice] = []
    alerted: set[tuple[str, str]] = set()
    for direction in DIRECTIONS:
        if direction not in result.directions:
            statuses[direction] = CheckStatus.NOT_RUN
            enabled[direction] = False
            continue
        failure = result.directions[direction]
        if failure is None:
            statuses[direction] = CheckStatus.SUCCESS
            enabled[direction] = history.active
            continue
        statuses[direction] = CheckStatus.FAILURE
        retrying = will_retry and failure.transient
        if not retrying:
            enabled[direction] = False
        if (failure.code, failure.message) not in alerted:  # one alert for a check failing every direction
            alerted.add((failure.code, failure.message))
            alerts.append(_failure_alert(result, direction, failure, retry_at if retrying else None, attempt,
                                         settings))
    if will_retry:
        verdict = JobOutcome.POSTPONED
    elif failures:
        verdict = JobOutcome.FAILED
    else:
        verdict = JobOutcome.PASSED
        enabled_now = [d for d in DIRECTIONS if d in result.directions and enabled[d]]
        text = f"{result.email} is connected: enabled for {', '.join(enabled_now) or 'nothing (no method set)'}"
        if result.not_read is not None and "incoming" in enabled_now:
            text += f". Its incoming mail will not be read: {result.not_read}"
        alerts.append(AlertNotice(AlertLevel.INFORMATION, "CONNECTED", text))
    return Outcome(
        verdict=verdict, statuses=statuses, enabled=enabled,
        failures={d: failures[d].code.value for d in DIRECTIONS if d in failures},
        error=next((failures[d] for d in DIRECTIONS if d in failures), None),
        transient_failures=attempt if will_retry else 0, retry_at=retry_at, alerts=tuple(alerts),
    )


def _failure_alert(result: Attempt, direction: str, failure: Failure, retry_at: datetime | None, attempt: int,
                   settings: RetryPolicy) -> AlertNotice:
    what = f"{direction} {result.activity} of {result.email}"
    if retry_at is not None:
        return AlertNotice(AlertLevel.WARNING, failure.code.value,
                           f"{what} failed for now: {failure.message} "
                           f"(retry {attempt} of {settings.retry_attempts} at {retry_at:%H:%M} UTC)")
    after = f" (still failing after {attempt} attempts)" if failure.transient else ""
    return AlertNotice(AlertLevel.ERROR, failure.code.value,
                       f"{what} failed: {failure.message}{after}; {direction} is disabled")


def profile_failing(mailboxes: int, failed_within_hour: int) -> bool:
    """R16: more than half of a profile's active mailboxes failed within the last hour."""
    return mailboxes > 0 and failed_within_hour * 2 > mailboxes


PROFILE_FAILING_CODE = "PROFILE_FAILING"


def profile_failing_alert(profile_name: str, mailboxes: int, failed_within_hour: int, *, in_test: int | None = None,
                          in_processing: int = 0) -> AlertNotice:
    """R16's one error alert to the profile owner (raised at most once an hour). ``in_test`` and
    ``in_processing``: of the mailboxes failing, how many failed their test and how many while
    being processed (all in their test when not said)."""
    tested = failed_within_hour if in_test is None else in_test
    if in_processing and not tested:
        how = "failed while being processed"
    elif in_processing:
        how = f"failed ({tested} their test, {in_processing} while being processed)"
    else:
        how = "failed their test"
    return AlertNotice(AlertLevel.ERROR, PROFILE_FAILING_CODE,
                       f"{failed_within_hour} of {mailboxes} mailboxes of profile {profile_name!r} {how} "
                       "within the last hour: check the profile's servers and settings")
