"""Test & Enable end to end (R8–R16): services schedule, the job runner connects to the real mail
lab through the probes, and the outcome lands in SQLite as statuses, enablement and alerts."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from mbxtui.core.jobs import queue as jobs
from mbxtui.core.models import Alert, EnablementJob
from mbxtui.core.probes.smtp import TEST_SUBJECT
from mbxtui.core.services import bulk, credentials, mailboxes, profiles, settings
from mbxtui.core.services.selection import Selection
from tests.integration.conftest import PROFILE_OWNER, Org
from tests.lab import ConnectionCounter

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
BOB = "bob@example.test"
JOSE = "jose@example.test"  # has a non-ASCII password
UNKNOWN_TO_THE_LAB = "ghost@example.test"
RETRY_INTERVAL_MINUTES = 5  # the organisation's default


def statuses(org: Org, email: str) -> dict[str, str]:
    row = org.row(email)
    return {"incoming": row.incoming_status, "outgoing": row.outgoing_status, "act": row.act_status,
            "overall": row.overall_status}


def enabled(org: Org, email: str) -> dict[str, bool]:
    row = org.row(email)
    return {"incoming": row.incoming_enabled, "outgoing": row.outgoing_enabled, "act": row.act_enabled}


def failure_codes(org: Org, email: str) -> dict[str, str]:
    """Direction -> error code of the mailbox's last finished test."""
    result = jobs.last_result(org.row(email).id)
    assert result is not None, f"{email} has no finished test"
    return {direction: probe["failure"]["code"]
            for direction, probe in result.directions.items() if probe["failure"]}


def step_names(org: Org, email: str, direction: str) -> list[str]:
    result = jobs.last_result(org.row(email).id)
    return [step["step"] for step in result.directions[direction]["steps"]]


def assert_alerted_both_owners(org: Org, alert: Alert, email: str) -> None:
    assert alert.mailbox_owner_id == org.user_id(email)
    assert alert.profile_owner_id == org.user_id(PROFILE_OWNER)


@contextlib.contextmanager
def counted_profile(org: Org, name: str) -> Iterator[tuple[ConnectionCounter, ConnectionCounter]]:
    """A profile whose IMAP and SMTP connections go through counting relays: (imaps, smtp)."""
    with org.lab.connection_counter("imaps") as imaps, org.lab.connection_counter("smtp") as smtp:
        org.profile(name, incoming_port=imaps.port, outgoing_port=smtp.port)
        yield imaps, smtp


# --- success ------------------------------------------------------------------------------------

def test_success_sends_the_test_message_reads_it_back_and_enables_the_mailbox(org):
    org.profile("lab")
    org.mailbox(ALICE, "lab")
    messages_before = len(org.lab.messages(ALICE))

    org.schedule(ALICE)
    assert org.row(ALICE).test_scheduled, "R8: test scheduled is set at once"
    summary = org.runner().run()

    assert (summary.tested, summary.passed) == (1, 1)
    assert statuses(org, ALICE) == {"incoming": "success", "outgoing": "success", "act": "not_run",
                                    "overall": "success"}
    assert enabled(org, ALICE) == {"incoming": True, "outgoing": True, "act": False}
    row = org.row(ALICE)
    assert not row.test_scheduled
    assert row.test_last_attempted_by == org.admin.login
    assert row.test_last_attempted_on == row.test_completed_on == org.clock.now
    assert (row.last_error_code, row.last_error_text, row.postponed_until) == (None, None, None)

    # The message the outgoing test sent is the one the incoming test found over IMAP.
    result = jobs.last_result(row.id)
    assert result.outcome == "passed"
    assert step_names(org, ALICE, "incoming")[-1] == "verify_delivery"
    delivered = org.lab.messages(ALICE)[messages_before:]
    assert [m["Subject"] for m in delivered] == [TEST_SUBJECT]
    message_id = delivered[0]["Message-ID"]
    assert message_id in result.directions["outgoing"]["steps"][-1]["detail"]
    assert result.directions["incoming"]["steps"][-1]["ok"]

    [alert] = org.alerts(ALICE)
    assert (alert.level, alert.code) == ("information", "CONNECTED")
    assert_alerted_both_owners(org, alert, ALICE)


def test_alerts_of_a_level_the_organisation_does_not_record_are_not_written(org):
    settings.update(org.admin, record_information_alerts=False)
    org.profile("lab")
    org.mailbox(ALICE, "lab")

    org.test_enable(ALICE)

    assert statuses(org, ALICE)["overall"] == "success"
    assert org.alerts(ALICE) == []


INCOMING_SHAPES = {
    "imap implicit": ("imap_smtp", "imaps", "implicit", ["resolve", "connect", "tls", "greeting"]),
    "imap starttls": ("imap_smtp", "imap", "starttls", ["resolve", "connect", "greeting", "tls"]),
    "pop3 implicit": ("pop3_smtp", "pop3s", "implicit", ["resolve", "connect", "tls", "greeting"]),
    "pop3 stls": ("pop3_smtp", "pop3", "starttls", ["resolve", "connect", "greeting", "tls"]),
}
OUTGOING_SHAPES = {
    "smtp starttls": ("smtp", "starttls", ["resolve", "connect", "greeting", "tls"]),
    "smtp implicit": ("smtps", "implicit", ["resolve", "connect", "tls", "greeting"]),
}


@pytest.mark.parametrize("incoming, outgoing", [
    ("imap implicit", "smtp starttls"),
    ("imap starttls", "smtp implicit"),
    ("pop3 implicit", "smtp implicit"),
    ("pop3 stls", "smtp starttls"),
])
def test_every_tls_mode_of_every_protocol_passes_with_tls_where_the_profile_says(org, incoming, outgoing):
    profile_type, in_port, in_tls, in_opening = INCOMING_SHAPES[incoming]
    out_port, out_tls, out_opening = OUTGOING_SHAPES[outgoing]
    org.profile("lab", type=profile_type, incoming_port=org.lab.ports[in_port], incoming_tls=in_tls,
                outgoing_port=org.lab.ports[out_port], outgoing_tls=out_tls,
                verify_delivery=profile_type == "imap_smtp")
    org.mailbox(ALICE, "lab")

    org.test_enable(ALICE)

    assert statuses(org, ALICE)["overall"] == "success", org.row(ALICE).last_error_text
    assert enabled(org, ALICE) == {"incoming": True, "outgoing": True, "act": False}
    result = jobs.last_result(org.row(ALICE).id)
    assert result.directions["incoming"]["protocol"] == profile_type.split("_")[0]
    assert step_names(org, ALICE, "incoming")[:4] == in_opening
    assert step_names(org, ALICE, "outgoing")[:4] == out_opening


def test_a_non_ascii_password_passes(org):
    org.profile("lab")
    org.mailbox(JOSE, "lab")

    org.test_enable(JOSE)

    assert statuses(org, JOSE)["overall"] == "success", org.row(JOSE).last_error_text
    assert step_names(org, JOSE, "incoming")[-1] == "verify_delivery"


def test_profile_credentials_act_for_a_mailbox_that_has_no_password(org):
    org.profile("master", incoming_auth="profile", outgoing_auth="profile", username=org.lab.master_login)
    org.mailbox(BOB, "master")
    assert not org.row(BOB).password_set
    messages_before = len(org.lab.messages(BOB))

    org.test_enable(BOB)

    assert statuses(org, BOB)["overall"] == "success", org.row(BOB).last_error_text
    result = jobs.last_result(org.row(BOB).id)
    logins = {direction: [s["detail"] for s in probe["steps"] if s["step"] == "authenticate"]
              for direction, probe in result.directions.items()}
    acting = f"as {org.lab.master_login} acting for {BOB}"
    assert logins == {"incoming": [acting], "outgoing": [acting]}
    assert [m["Subject"] for m in org.lab.messages(BOB)[messages_before:]] == [TEST_SUBJECT]


# --- permanent failures (R14) -------------------------------------------------------------------

def test_a_wrong_password_disables_at_once_with_an_error_alert_to_both_owners(org):
    org.profile("lab")
    org.mailbox(ALICE, "lab")
    org.test_enable(ALICE)
    assert enabled(org, ALICE)["incoming"] and enabled(org, ALICE)["outgoing"]

    wrong = "not-alices-password"
    credentials.set_mailbox_secret(org.admin, ALICE, wrong, org.store)
    summary = org.test_enable(ALICE)

    assert (summary.tested, summary.failed, summary.postponed) == (1, 1, 0)
    assert failure_codes(org, ALICE) == {"incoming": "AUTH_FAILED", "outgoing": "AUTH_FAILED"}
    assert statuses(org, ALICE)["overall"] == "failure"
    assert enabled(org, ALICE) == {"incoming": False, "outgoing": False, "act": False}
    row = org.row(ALICE)
    assert (row.transient_failures, row.postponed_until, row.test_scheduled) == (0, None, False)
    assert row.last_error_code == "AUTH_FAILED"
    assert [job.state for job in org.jobs_of(ALICE)] == ["done", "done"], "a permanent error is not retried"

    errors = org.alerts(ALICE, level="error")
    assert {a.code for a in errors} == {"AUTH_FAILED"} and len(errors) == 2  # one per direction
    for alert in errors:
        assert_alerted_both_owners(org, alert, ALICE)
        assert wrong not in alert.text
    assert not org.alerts(ALICE, level="warning")
    assert wrong not in row.last_error_text and wrong not in org.jobs_of(ALICE)[-1].result


def test_a_disabled_account_is_reported_as_disabled(org):
    org.profile("lab")
    org.mailbox(org.lab.disabled_user, "lab", outgoing_method="none")

    org.test_enable(org.lab.disabled_user)

    assert failure_codes(org, org.lab.disabled_user) == {"incoming": "ACCOUNT_DISABLED"}
    assert not org.row(org.lab.disabled_user).incoming_enabled
    [alert] = org.alerts(org.lab.disabled_user)
    assert (alert.level, alert.code) == ("error", "ACCOUNT_DISABLED")


@pytest.mark.parametrize("case", ["unknown CA", "hostname mismatch"])
def test_a_certificate_that_does_not_verify_fails_both_directions_for_good(org, case):
    if case == "unknown CA":
        org.profile("lab", ca_file=org.lab.wrong_ca_file)
        sentence = "unknown authority"
    else:
        org.profile("lab", incoming_port=org.lab.ports["imaps_wrong_host"],
                    outgoing_port=org.lab.ports["smtps_wrong_host"], outgoing_tls="implicit")
        sentence = "another host name"
    org.mailbox(ALICE, "lab")

    org.test_enable(ALICE)

    assert failure_codes(org, ALICE) == {"incoming": "TLS_CERTIFICATE", "outgoing": "TLS_CERTIFICATE"}
    assert sentence in org.row(ALICE).last_error_text
    assert enabled(org, ALICE) == {"incoming": False, "outgoing": False, "act": False}
    assert {a.level for a in org.alerts(ALICE)} == {"error"}
    assert step_names(org, ALICE, "incoming")[-1] == "tls"


@pytest.mark.parametrize("incoming_protocol", ["imap", "pop3"])
def test_starttls_required_but_not_offered_fails_before_any_credential_is_sent(org, incoming_protocol):
    lab = org.lab
    plaintext_front = {"imap": "imap_nostarttls", "pop3": "pop3_nostls"}[incoming_protocol]
    profile_type = f"{incoming_protocol}_smtp"
    org.profile("starttls", type=profile_type, incoming_port=lab.ports[plaintext_front],
                incoming_tls="starttls", outgoing_port=lab.ports["smtp_plain"], outgoing_tls="starttls",
                verify_delivery=False)
    org.mailbox(ALICE, "starttls")
    logins_before = lab.login_attempts(plaintext_front)
    auths_before = lab.smtp_auth_attempts("smtp_plain")

    org.test_enable(ALICE)

    assert failure_codes(org, ALICE) == {"incoming": "STARTTLS_UNAVAILABLE", "outgoing": "STARTTLS_UNAVAILABLE"}
    assert lab.login_attempts(plaintext_front) == logins_before, "R13: no credential before TLS"
    assert lab.smtp_auth_attempts("smtp_plain") == auths_before, "R13: no AUTH before TLS"
    assert enabled(org, ALICE) == {"incoming": False, "outgoing": False, "act": False}

    # The same ports with TLS mode none, which the profile must say explicitly, do log in: the
    # counters above would have seen credentials.
    profiles.update(org.admin, "starttls", incoming_tls="none", outgoing_tls="none")
    credentials.confirm_mailbox_secrets(org.admin, Selection.of_emails([ALICE]))  # R34: a new endpoint
    org.test_enable(ALICE)
    assert statuses(org, ALICE)["overall"] == "success", org.row(ALICE).last_error_text
    assert lab.login_attempts(plaintext_front) > logins_before
    assert lab.smtp_auth_attempts("smtp_plain") > auths_before


def test_an_address_the_server_does_not_know_is_rejected_on_sending_and_only_outgoing_is_disabled(org):
    org.profile("lab")
    # Logs in as alice, but its own address (the test message's recipient) has no mailbox there.
    org.mailbox(UNKNOWN_TO_THE_LAB, "lab", username=ALICE)

    org.test_enable(UNKNOWN_TO_THE_LAB)

    assert failure_codes(org, UNKNOWN_TO_THE_LAB) == {"outgoing": "RECIPIENT_REJECTED"}
    assert statuses(org, UNKNOWN_TO_THE_LAB) == {"incoming": "success", "outgoing": "failure", "act": "not_run",
                                                 "overall": "failure"}
    assert enabled(org, UNKNOWN_TO_THE_LAB) == {"incoming": True, "outgoing": False, "act": False}
    [alert] = org.alerts(UNKNOWN_TO_THE_LAB)
    assert (alert.level, alert.code) == ("error", "RECIPIENT_REJECTED")


# --- transient failures and retries (R14) -------------------------------------------------------

def test_connection_refused_is_retried_per_the_policy_then_disables(org):
    settings.update(org.admin, retry_attempts=2)
    org.profile("lab")
    org.mailbox(ALICE, "lab", outgoing_method="none")
    org.test_enable(ALICE)
    assert enabled(org, ALICE)["incoming"]
    profiles.update(org.admin, "lab", incoming_port=org.lab.ports["refused"])
    credentials.confirm_mailbox_secrets(org.admin, Selection.of_emails([ALICE]))  # R34: a new endpoint
    org.schedule(ALICE)

    for retry in (1, 2):
        started = org.clock.now
        summary = org.runner().run()
        assert (summary.tested, summary.postponed) == (1, 1)
        row = org.row(ALICE)
        assert row.last_error_code == "CONNECTION_REFUSED"
        assert row.incoming_status == "failure"
        assert row.incoming_enabled, "still enabled while a retry is due"
        assert row.transient_failures == retry
        assert row.postponed_until == started + timedelta(minutes=RETRY_INTERVAL_MINUTES)
        warnings = org.alerts(ALICE, level="warning")
        assert len(warnings) == retry and warnings[-1].code == "CONNECTION_REFUSED"
        assert f"retry {retry} of 2" in warnings[-1].text
        assert_alerted_both_owners(org, warnings[-1], ALICE)
        queued = [job for job in org.jobs_of(ALICE) if job.state == "queued"]
        assert [(job.attempt, job.not_before) for job in queued] == [(retry + 1, row.postponed_until)]

        assert org.runner().run().tested == 0, "nothing is due before postponed_until"
        org.clock.advance(minutes=RETRY_INTERVAL_MINUTES)

    summary = org.runner().run()

    assert (summary.tested, summary.failed) == (1, 1)
    row = org.row(ALICE)
    assert not row.incoming_enabled
    assert (row.postponed_until, row.transient_failures) == (None, 0)
    assert [job.state for job in org.jobs_of(ALICE)] == ["done"] * 4
    assert [job.outcome for job in org.jobs_of(ALICE)] == ["passed", "postponed", "postponed", "failed"]
    [error] = org.alerts(ALICE, level="error")
    assert error.code == "CONNECTION_REFUSED" and "after 3 attempts" in error.text
    assert_alerted_both_owners(org, error, ALICE)
    assert org.runner().run().tested == 0


def test_asking_again_while_a_retry_waits_tests_at_once(org):
    org.profile("lab", incoming_port=org.lab.ports["refused"])
    org.mailbox(ALICE, "lab", outgoing_method="none")
    org.test_enable(ALICE)
    assert org.row(ALICE).postponed_until is not None
    profiles.update(org.admin, "lab", incoming_port=org.lab.ports["imaps"])  # the server is back
    credentials.confirm_mailbox_secrets(org.admin, Selection.of_emails([ALICE]))  # R34: a new endpoint

    org.schedule(ALICE)
    assert org.row(ALICE).test_scheduled
    summary = org.runner().run()

    assert summary.passed == 1, "R8: a request runs now, not at the retry's time"
    row = org.row(ALICE)
    assert row.incoming_enabled and row.postponed_until is None and not row.test_scheduled
    assert [job.state for job in org.jobs_of(ALICE)] == ["done", "cancelled", "done"], "the retry was superseded"


def test_a_server_that_never_answers_times_out_within_the_profile_timeout(org):
    org.profile("silent", incoming_port=org.lab.ports["silent"], timeout_seconds=1)
    org.mailbox(ALICE, "silent", outgoing_method="none")
    org.schedule(ALICE)

    started = time.monotonic()
    summary = org.runner().run()
    took = time.monotonic() - started

    assert took < 3.0, f"a 1 s timeout took {took:.1f} s"
    assert summary.postponed == 1
    assert failure_codes(org, ALICE) == {"incoming": "TIMEOUT"}
    [warning] = org.alerts(ALICE)
    assert (warning.level, warning.code) == ("warning", "TIMEOUT")
    assert org.row(ALICE).postponed_until is not None


# --- rules checked before any network step (R9, R10, R12) ----------------------------------------

def _not_approved(org: Org) -> None:
    org.mailbox(ALICE, "counted", approve=False)


def _profile_inactive(org: Org) -> None:
    org.mailbox(ALICE, "counted")
    profiles.update(org.admin, "counted", active=False)


def _mailbox_inactive(org: Org) -> None:
    org.mailbox(ALICE, "counted")
    bulk.deactivate(org.admin, Selection.of_emails([ALICE]))


@pytest.mark.parametrize("make_it_so, code", [
    (_not_approved, "NOT_APPROVED"),
    (_profile_inactive, "PROFILE_INACTIVE"),
    (_mailbox_inactive, "MAILBOX_INACTIVE"),
])
def test_a_failed_rule_check_sends_nothing_and_fails_with_its_code(org, make_it_so, code):
    with counted_profile(org, "counted") as (imaps, smtp):
        make_it_so(org)
        auths_before = org.lab.smtp_auth_attempts("smtp")

        summary = org.test_enable(ALICE)

        assert imaps.total == smtp.total == 0, "R9: nothing is sent"
    assert org.lab.smtp_auth_attempts("smtp") == auths_before
    assert summary.failed == 1
    assert failure_codes(org, ALICE) == {"incoming": code, "outgoing": code}
    assert statuses(org, ALICE)["overall"] == "failure"
    assert enabled(org, ALICE) == {"incoming": False, "outgoing": False, "act": False}
    [alert] = org.alerts(ALICE)  # one alert for a check that fails every direction
    assert (alert.level, alert.code) == ("error", code)


def test_act_on_an_imap_profile_fails_as_unsupported_while_mail_passes(org):
    org.profile("lab")
    org.mailbox(ALICE, "lab", act_method="server_side_sync")

    org.test_enable(ALICE)

    assert failure_codes(org, ALICE) == {"act": "ACT_UNSUPPORTED"}
    assert statuses(org, ALICE) == {"incoming": "success", "outgoing": "success", "act": "failure",
                                    "overall": "failure"}
    assert enabled(org, ALICE) == {"incoming": True, "outgoing": True, "act": False}
    assert "not supported by this profile type" in org.row(ALICE).last_error_text
    assert [(a.level, a.code) for a in org.alerts(ALICE)] == [("error", "ACT_UNSUPPORTED")]


def test_forward_mailbox_rule_needs_an_enabled_forward_mailbox_on_the_profile(org):
    with counted_profile(org, "counted") as (imaps, smtp):
        org.mailbox(ALICE, "counted", incoming_method="forward_mailbox", outgoing_method="none")

        org.test_enable(ALICE)

        assert failure_codes(org, ALICE) == {"incoming": "NO_FORWARD_MAILBOX"}
        assert imaps.total == smtp.total == 0, "R10 is a rule: checked without the network"
        assert not org.row(ALICE).incoming_enabled

        mailboxes.create_forward_mailbox(org.admin, name="Forward", email=BOB, profile="counted")
        bulk.approve(org.admin, Selection.of_emails([BOB]))
        credentials.set_mailbox_secret(org.admin, BOB, org.lab.users[BOB], org.store)
        org.test_enable(BOB)
        assert enabled(org, BOB)["incoming"], org.row(BOB).last_error_text
        assert imaps.total == 1 and smtp.total == 0, "a forward mailbox only receives"

        org.test_enable(ALICE)

    assert statuses(org, ALICE)["incoming"] == "success"
    assert enabled(org, ALICE) == {"incoming": True, "outgoing": False, "act": False}
    assert imaps.total == 1, "served by the forward mailbox: no connection of its own"


# --- R16 ----------------------------------------------------------------------------------------

def test_a_profile_failing_for_most_of_its_mailboxes_alerts_its_owner_once(org):
    org.profile("lab")
    for email in (ALICE, BOB, JOSE):
        org.mailbox(email, "lab")
    credentials.set_mailbox_secret(org.admin, JOSE, "wrong", org.store)

    def profile_alerts() -> list[Alert]:
        return [a for a in org.alerts(code="PROFILE_FAILING") if a.mailbox_id is None]

    org.test_enable(ALICE, BOB, JOSE)
    assert profile_alerts() == [], "one of three failing is not most of them"

    credentials.set_mailbox_secret(org.admin, BOB, "wrong", org.store)
    org.test_enable(ALICE, BOB, JOSE)
    [alert] = profile_alerts()
    assert alert.level == "error"
    assert alert.profile_id == profiles.get("lab").id
    assert alert.profile_owner_id == org.user_id(PROFILE_OWNER)
    assert "2 of 3" in alert.text

    org.clock.advance(minutes=10)
    org.test_enable(ALICE, BOB, JOSE)
    assert len(profile_alerts()) == 1, "once within the hour"


# --- the connection bound (R8) ------------------------------------------------------------------

def test_no_more_connections_than_each_profiles_bound_are_open_at_once(org):
    bounds = {"narrow": 3, "wide": 8}
    logins = org.lab.add_users(60, prefix="bound")
    halves = {"narrow": logins[:30], "wide": logins[30:]}
    with contextlib.ExitStack() as stack:
        counters = {}
        for name, bound in bounds.items():
            imaps = stack.enter_context(org.lab.connection_counter("imaps"))
            smtp = stack.enter_context(org.lab.connection_counter("smtp"))
            counters[name] = (imaps, smtp)
            org.profile(name, incoming_port=imaps.port, outgoing_port=smtp.port, max_connections=bound,
                        incoming_auth="profile", outgoing_auth="profile", username=org.lab.master_login)
            org.bulk_mailboxes(halves[name], name)

        summary = org.test_enable(*logins, threads=32)

    assert (summary.tested, summary.passed) == (60, 60), [
        (m.email, m.last_error_text) for m in map(org.row, logins) if m.last_error_code]
    for name, bound in bounds.items():
        imaps, smtp = counters[name]
        assert imaps.total == smtp.total == 30
        assert max(imaps.max_concurrent, smtp.max_concurrent) == bound, (name, imaps, smtp)
    assert EnablementJob.select().where(EnablementJob.state != "done").count() == 0
