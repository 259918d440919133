"""``decide``: what one attempt at a mailbox leads to (R14-R16), as a table. No database: the
function is given the attempt, the retry policy and the mailbox's history, and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from mbxtui.core.enums import AlertLevel, CheckStatus, JobOutcome
from mbxtui.core.jobs.outcome import (
    Attempt, History, Outcome, decide, profile_failing, profile_failing_alert,
)
from mbxtui.core.probes.base import ErrorCode, Failure, Step

AT = datetime(2026, 3, 14, 9, 26)
EMAIL = "ann@corp.test"
PASSED = None  # a direction that passed


@dataclass(frozen=True)
class Policy:
    retry_attempts: int
    retry_interval_minutes: int


DEFAULT = Policy(10, 5)
SHORT = Policy(3, 30)
NO_RETRIES = Policy(0, 5)
POLICIES = {"10x5min": DEFAULT, "3x30min": SHORT, "0 retries": NO_RETRIES}

PERMANENT = {
    "auth refused": Failure(Step.AUTHENTICATE, ErrorCode.AUTH_FAILED, "the server refused the password"),
    "bad certificate": Failure(Step.TLS, ErrorCode.TLS_CERTIFICATE, "the certificate is not trusted"),
    "no STARTTLS": Failure(Step.TLS, ErrorCode.STARTTLS_UNAVAILABLE, "the server offers no STARTTLS"),
    "host not found": Failure(Step.RESOLVE, ErrorCode.HOST_NOT_FOUND, "no such host"),
    "inbox missing": Failure(Step.OPEN_INBOX, ErrorCode.INBOX_UNAVAILABLE, "no INBOX"),
    "not approved": Failure(Step.CHECK, ErrorCode.NOT_APPROVED, "not approved"),
    "profile inactive": Failure(Step.CHECK, ErrorCode.PROFILE_INACTIVE, "the profile is inactive"),
    "unsupported": Failure(Step.CHECK, ErrorCode.ACT_UNSUPPORTED, "not supported by this profile type"),
    "internal error": Failure(Step.CHECK, ErrorCode.INTERNAL_ERROR, "the test could not run"),
}
TRANSIENT = {
    "refused": Failure(Step.CONNECT, ErrorCode.CONNECTION_REFUSED, "connection refused"),
    "reset": Failure(Step.GREETING, ErrorCode.CONNECTION_RESET, "connection reset"),
    "timeout": Failure(Step.CONNECT, ErrorCode.TIMEOUT, "no answer within 10 s"),
    "server busy": Failure(Step.AUTHENTICATE, ErrorCode.SERVER_BUSY, "server busy"),
    "SMTP 4xx": Failure(Step.SEND, ErrorCode.SMTP_TEMPORARY, "451 try again later"),
    "not delivered yet": Failure(Step.VERIFY_DELIVERY, ErrorCode.DELIVERY_NOT_CONFIRMED, "not seen in the inbox"),
}
EARLIER_FAILURES = (0, 1, 2, 3, 9, 10, 11)


def one_direction_failing(failure: Failure) -> Attempt:
    """Incoming fails, outgoing passes, ACT is not used."""
    return Attempt(EMAIL, {"incoming": failure, "outgoing": PASSED}, AT)


def permanent_rows() -> list[Any]:
    return [pytest.param(failure, before, policy, id=f"{name}-after {before}-{policy_name}")
            for name, failure in PERMANENT.items() for before in EARLIER_FAILURES
            for policy_name, policy in POLICIES.items()]


@pytest.mark.parametrize(("failure", "before", "policy"), permanent_rows())
def test_a_permanent_failure_disables_its_direction_at_once_with_an_error_alert(failure: Failure, before: int,
                                                                                policy: Policy):
    outcome = decide(one_direction_failing(failure), policy, History(active=True, transient_failures=before))
    assert outcome.verdict == JobOutcome.FAILED
    assert outcome.statuses == {"incoming": CheckStatus.FAILURE, "outgoing": CheckStatus.SUCCESS,
                                "act": CheckStatus.NOT_RUN}
    assert outcome.enabled == {"incoming": False, "outgoing": True, "act": False}
    assert outcome.failures == {"incoming": failure.code.value}
    assert outcome.error == failure
    assert (outcome.transient_failures, outcome.retry_at, outcome.retry) == (0, None, False)
    assert [(a.level, a.code) for a in outcome.alerts] == [(AlertLevel.ERROR, failure.code.value)]
    assert outcome.alerts[0].text == (f"incoming test of {EMAIL} failed: {failure.message}; incoming is disabled")


# (earlier transient failures, policy) -> retried? The last attempt counts as permanent (R14).
RETRIED = {
    (0, "10x5min"): True, (1, "10x5min"): True, (2, "10x5min"): True, (3, "10x5min"): True,
    (9, "10x5min"): True, (10, "10x5min"): False, (11, "10x5min"): False,
    (0, "3x30min"): True, (1, "3x30min"): True, (2, "3x30min"): True, (3, "3x30min"): False,
    (9, "3x30min"): False, (10, "3x30min"): False, (11, "3x30min"): False,
    **{(before, "0 retries"): False for before in EARLIER_FAILURES},
}


def transient_rows() -> list[Any]:
    return [pytest.param(failure, before, policy_name, id=f"{name}-after {before}-{policy_name}")
            for name, failure in TRANSIENT.items() for before in EARLIER_FAILURES for policy_name in POLICIES]


@pytest.mark.parametrize(("failure", "before", "policy_name"), transient_rows())
def test_a_transient_failure_is_retried_per_the_policy_and_after_the_last_attempt_counts_as_permanent(
        failure: Failure, before: int, policy_name: str):
    policy = POLICIES[policy_name]
    outcome = decide(one_direction_failing(failure), policy, History(active=True, transient_failures=before))
    assert outcome.statuses["incoming"] == CheckStatus.FAILURE
    assert outcome.failures == {"incoming": failure.code.value} and outcome.error == failure
    assert outcome.enabled["outgoing"] is True
    (alert,) = outcome.alerts
    assert alert.code == failure.code.value
    if RETRIED[(before, policy_name)]:
        retry_at = AT + timedelta(minutes=policy.retry_interval_minutes)
        assert outcome.verdict == JobOutcome.POSTPONED
        assert "incoming" not in outcome.enabled, "a retried direction keeps its flag"
        assert (outcome.transient_failures, outcome.retry_at, outcome.retry) == (before + 1, retry_at, True)
        assert alert.level == AlertLevel.WARNING
        assert alert.text == (f"incoming test of {EMAIL} failed for now: {failure.message} "
                              f"(retry {before + 1} of {policy.retry_attempts} at {retry_at:%H:%M} UTC)")
    else:
        assert outcome.verdict == JobOutcome.FAILED
        assert outcome.enabled["incoming"] is False
        assert (outcome.transient_failures, outcome.retry_at, outcome.retry) == (0, None, False)
        assert alert.level == AlertLevel.ERROR
        assert alert.text == (f"incoming test of {EMAIL} failed: {failure.message} (still failing after "
                              f"{before + 1} attempts); incoming is disabled")


AUTH = PERMANENT["auth refused"]
TIMEOUT = TRANSIENT["timeout"]
NOT_APPROVED = PERMANENT["not approved"]
ALL_OFF = {"incoming": False, "outgoing": False, "act": False}
NOT_RUN = {"incoming": CheckStatus.NOT_RUN, "outgoing": CheckStatus.NOT_RUN, "act": CheckStatus.NOT_RUN}


def alerts_of(outcome: Outcome) -> list[tuple[AlertLevel, str, str]]:
    return [(a.level, a.code, a.text) for a in outcome.alerts]


# (id, directions, active, earlier transient failures, policy) -> what decide must say
CASES = [
    ("every direction passed", {"incoming": PASSED, "outgoing": PASSED, "act": PASSED}, True, 0, DEFAULT,
     dict(verdict=JobOutcome.PASSED, enabled={"incoming": True, "outgoing": True, "act": True},
          statuses={d: CheckStatus.SUCCESS for d in ("incoming", "outgoing", "act")},
          alerts=[(AlertLevel.INFORMATION, "CONNECTED",
                   f"{EMAIL} is connected: enabled for incoming, outgoing, act")])),
    ("passed after transient failures clears the count", {"outgoing": PASSED}, True, 7, DEFAULT,
     dict(verdict=JobOutcome.PASSED, transient_failures=0, enabled={"incoming": False, "outgoing": True, "act": False},
          alerts=[(AlertLevel.INFORMATION, "CONNECTED", f"{EMAIL} is connected: enabled for outgoing")])),
    ("an inactive mailbox enables nothing", {"incoming": PASSED, "outgoing": PASSED}, False, 0, DEFAULT,
     dict(verdict=JobOutcome.PASSED, enabled=ALL_OFF,
          alerts=[(AlertLevel.INFORMATION, "CONNECTED", f"{EMAIL} is connected: enabled for nothing (no method set)")])),
    ("no method set", {}, True, 0, DEFAULT,
     dict(verdict=JobOutcome.PASSED, enabled=ALL_OFF, statuses=NOT_RUN, error=None,
          alerts=[(AlertLevel.INFORMATION, "CONNECTED", f"{EMAIL} is connected: enabled for nothing (no method set)")])),
    ("a rule check failing every direction raises one alert",
     {"incoming": NOT_APPROVED, "outgoing": NOT_APPROVED}, True, 0, DEFAULT,
     dict(verdict=JobOutcome.FAILED, enabled=ALL_OFF, error=NOT_APPROVED,
          failures={"incoming": "NOT_APPROVED", "outgoing": "NOT_APPROVED"},
          alerts=[(AlertLevel.ERROR, "NOT_APPROVED", f"incoming test of {EMAIL} failed: not approved; incoming is disabled")])),
    ("permanent and transient, retries left: the transient direction waits, the other is disabled",
     {"incoming": AUTH, "outgoing": TIMEOUT}, True, 2, DEFAULT,
     dict(verdict=JobOutcome.POSTPONED, enabled={"incoming": False, "act": False}, transient_failures=3,
          retry_at=AT + timedelta(minutes=5), error=AUTH,
          alerts=[(AlertLevel.ERROR, "AUTH_FAILED",
                   f"incoming test of {EMAIL} failed: the server refused the password; incoming is disabled"),
                  (AlertLevel.WARNING, "TIMEOUT",
                   f"outgoing test of {EMAIL} failed for now: no answer within 10 s (retry 3 of 10 at 09:31 UTC)")])),
    ("permanent and transient, no retry left: both disabled",
     {"incoming": AUTH, "outgoing": TIMEOUT}, True, 3, SHORT,
     dict(verdict=JobOutcome.FAILED, enabled=ALL_OFF, transient_failures=0, retry_at=None,
          alerts=[(AlertLevel.ERROR, "AUTH_FAILED",
                   f"incoming test of {EMAIL} failed: the server refused the password; incoming is disabled"),
                  (AlertLevel.ERROR, "TIMEOUT", f"outgoing test of {EMAIL} failed: no answer within 10 s "
                                                "(still failing after 4 attempts); outgoing is disabled")])),
    ("the first failing direction is the mailbox's last error",
     {"incoming": PASSED, "outgoing": AUTH, "act": PERMANENT["unsupported"]}, True, 0, DEFAULT,
     dict(verdict=JobOutcome.FAILED, error=AUTH, enabled={"incoming": True, "outgoing": False, "act": False},
          failures={"outgoing": "AUTH_FAILED", "act": "ACT_UNSUPPORTED"})),
    ("a retry in the evening falls after midnight", {"incoming": TIMEOUT}, True, 0, Policy(10, 90),
     dict(verdict=JobOutcome.POSTPONED, retry_at=datetime(2026, 3, 15, 0, 50),
          alerts=[(AlertLevel.WARNING, "TIMEOUT",
                   f"incoming test of {EMAIL} failed for now: no answer within 10 s (retry 1 of 10 at 00:50 UTC)")]),
     datetime(2026, 3, 14, 23, 20)),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in CASES])
def test_decide(case: tuple[Any, ...]):
    name, directions, active, before, policy, expected, *at = case
    outcome = decide(Attempt(EMAIL, directions, at[0] if at else AT), policy,
                     History(active=active, transient_failures=before))
    for field_name, value in expected.items():
        if field_name == "alerts":
            assert alerts_of(outcome) == value
        else:
            assert getattr(outcome, field_name) == value, field_name


def test_the_alerts_name_what_was_attempted():
    outcome = decide(Attempt(EMAIL, {"incoming": AUTH}, AT, activity="processing"), DEFAULT,
                     History(active=True, transient_failures=0))
    assert alerts_of(outcome) == [(AlertLevel.ERROR, "AUTH_FAILED", f"incoming processing of {EMAIL} failed: "
                                                                   "the server refused the password; incoming is disabled")]


@pytest.mark.parametrize(("mailboxes", "failed", "failing"), [
    (0, 0, False), (1, 0, False), (1, 1, True), (2, 1, False), (2, 2, True), (3, 1, False), (3, 2, True),
    (10, 5, False), (10, 6, True), (1_000_000, 500_000, False), (1_000_000, 500_001, True),
])
def test_a_profile_is_failing_when_more_than_half_its_mailboxes_failed_within_the_hour(mailboxes: int, failed: int,
                                                                                      failing: bool):
    assert profile_failing(mailboxes, failed) is failing


def test_the_profile_alert_says_how_many_failed():
    alert = profile_failing_alert("imap", 10, 6)
    assert (alert.level, alert.code) == (AlertLevel.ERROR, "PROFILE_FAILING")
    assert alert.text == ("6 of 10 mailboxes of profile 'imap' failed their test within the last hour: "
                          "check the profile's servers and settings")


def test_the_enabled_alert_says_once_when_the_incoming_mail_will_not_be_read():
    why = "reading mail over Exchange is not supported yet"
    enabled = decide(Attempt(EMAIL, {"incoming": PASSED, "outgoing": PASSED}, AT, not_read=why), DEFAULT,
                     History(active=True, transient_failures=0))
    assert alerts_of(enabled) == [(AlertLevel.INFORMATION, "CONNECTED", f"{EMAIL} is connected: enabled for "
                                   f"incoming, outgoing. Its incoming mail will not be read: {why}")]
    outgoing_only = decide(Attempt(EMAIL, {"outgoing": PASSED}, AT, not_read=why), DEFAULT,
                           History(active=True, transient_failures=0))
    assert alerts_of(outgoing_only) == [(AlertLevel.INFORMATION, "CONNECTED", f"{EMAIL} is connected: enabled for "
                                         "outgoing")]
