"""The POP3 probe against the real Dovecot of the mail lab."""

from __future__ import annotations

import base64
import time

import pytest

from mbxtui.core.probes import pop3
from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, ProbeResult, Step

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
JOSE = "jose@example.test"  # has a non-ASCII password
SILENT_TIMEOUT = 1.0
TIMEOUT_SLACK = 0.5


def _endpoint(
    lab, port_key: str, tls: str, timeout: float = 5.0, ca_file: str | None = None
) -> Endpoint:
    return Endpoint(
        lab.host, lab.ports[port_key], tls, timeout=timeout, ca_file=ca_file or lab.ca_file
    )


def _password(lab, login: str) -> Credentials:
    return Credentials("password", login, lab.users[login])


def _step_names(result: ProbeResult) -> list[str]:
    return [step.step.value for step in result.steps]


def _assert_failed(result: ProbeResult, step: Step, code: ErrorCode) -> str:
    assert result.failure is not None, result
    assert (result.failure.step, result.failure.code) == (step, code), result.failure
    assert result.steps[-1].step == step and not result.steps[-1].ok
    assert all(recorded.ok for recorded in result.steps[:-1])
    return result.failure.message


def test_implicit_tls_logs_in_and_stats_the_maildrop(mail_lab):
    result = pop3.probe(_endpoint(mail_lab, "pop3s", "implicit"), _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert _step_names(result) == [
        "resolve",
        "connect",
        "tls",
        "greeting",
        "authenticate",
        "open_inbox",
    ]
    assert result.steps[2].detail.startswith("TLSv1.")
    assert result.steps[-1].detail == f"{len(mail_lab.messages(ALICE))} messages"


def test_stls_negotiates_tls_after_the_greeting_and_before_the_login(mail_lab):
    result = pop3.probe(_endpoint(mail_lab, "pop3", "starttls"), _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert _step_names(result) == [
        "resolve",
        "connect",
        "greeting",
        "tls",
        "authenticate",
        "open_inbox",
    ]
    assert result.steps[3].detail.startswith("TLSv1.")


def test_tls_none_works_on_the_plain_port_when_the_profile_says_so(mail_lab):
    result = pop3.probe(_endpoint(mail_lab, "pop3", "none"), _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert "tls" not in _step_names(result)


def test_a_non_ascii_password_logs_in(mail_lab):
    assert not mail_lab.users[JOSE].isascii()

    result = pop3.probe(_endpoint(mail_lab, "pop3", "starttls"), _password(mail_lab, JOSE))

    assert result.ok, result.failure


def test_the_master_user_opens_alices_maildrop(mail_lab):
    credentials = Credentials("password", mail_lab.master_login, mail_lab.master_password, ALICE)

    result = pop3.probe(_endpoint(mail_lab, "pop3s", "implicit"), credentials)

    assert result.ok, result.failure
    assert result.steps[-2].detail == f"as {mail_lab.master_login} acting for {ALICE}"
    assert result.steps[-1].detail == f"{len(mail_lab.messages(ALICE))} messages"


@pytest.mark.parametrize(
    ("login", "wrong"),
    [(ALICE, "Wrong-password"), (JOSE, "fälsch-ñ"), (ALICE, "with-authzid")],
    ids=["user-pass", "auth-plain", "auth-plain-authzid"],
)
def test_a_wrong_password_fails_at_authenticate_without_repeating_it(mail_lab, login, wrong):
    authzid = ALICE if wrong == "with-authzid" else None
    credentials = Credentials(
        "password", mail_lab.master_login if authzid else login, wrong, authzid
    )

    result = pop3.probe(_endpoint(mail_lab, "pop3s", "implicit"), credentials)

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.AUTH_FAILED)
    assert not result.failure.transient
    assert "check the user name and the password" in sentence
    plain = base64.b64encode(f"{authzid or ''}\0{credentials.username}\0{wrong}".encode()).decode()
    for text in [sentence, *(step.detail for step in result.steps)]:
        assert wrong not in text and plain not in text


def test_a_disabled_account_is_reported_as_disabled(mail_lab):
    result = pop3.probe(
        _endpoint(mail_lab, "pop3s", "implicit"), _password(mail_lab, mail_lab.disabled_user)
    )

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.ACCOUNT_DISABLED)
    assert f"'{mail_lab.disabled_user}' is disabled" in sentence


def test_oauth2_is_refused_before_sending_a_token_when_the_server_lacks_xoauth2(mail_lab):
    token = "ya29.secret-token"
    result = pop3.probe(
        _endpoint(mail_lab, "pop3s", "implicit"), Credentials("oauth2", ALICE, token)
    )

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.AUTH_UNAVAILABLE)
    assert "XOAUTH2" in sentence and token not in sentence


def test_a_certificate_from_an_unknown_authority_is_refused(mail_lab):
    endpoint = _endpoint(mail_lab, "pop3s", "implicit", ca_file=mail_lab.wrong_ca_file)

    result = pop3.probe(endpoint, _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert "unknown authority" in sentence


def test_stls_verifies_the_certificate_too(mail_lab):
    endpoint = _endpoint(mail_lab, "pop3", "starttls", ca_file=mail_lab.wrong_ca_file)

    result = pop3.probe(endpoint, _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert "unknown authority" in sentence


def test_stls_not_offered_fails_before_any_credentials_are_sent(mail_lab):
    attempts_before = mail_lab.pop3_login_attempts("pop3_nostls")

    result = pop3.probe(_endpoint(mail_lab, "pop3_nostls", "starttls"), _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.STARTTLS_UNAVAILABLE)
    assert "does not offer STARTTLS" in sentence
    assert mail_lab.pop3_login_attempts("pop3_nostls") == attempts_before


def test_the_front_without_stls_does_count_logins(mail_lab):
    """The proof above only holds if the lab counts a login that is sent (USER and PASS)."""
    attempts_before = mail_lab.pop3_login_attempts("pop3_nostls")

    result = pop3.probe(_endpoint(mail_lab, "pop3_nostls", "none"), _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert mail_lab.pop3_login_attempts("pop3_nostls") == attempts_before + 2


def test_connection_refused_is_transient(mail_lab):
    result = pop3.probe(_endpoint(mail_lab, "refused", "implicit"), _password(mail_lab, ALICE))

    _assert_failed(result, Step.CONNECT, ErrorCode.CONNECTION_REFUSED)
    assert result.failure.transient


def test_a_silent_server_times_out_within_the_timeout(mail_lab):
    started = time.perf_counter()
    result = pop3.probe(
        _endpoint(mail_lab, "silent", "starttls", timeout=SILENT_TIMEOUT),
        _password(mail_lab, ALICE),
    )
    elapsed = time.perf_counter() - started

    _assert_failed(result, Step.GREETING, ErrorCode.TIMEOUT)
    assert result.failure.transient
    assert SILENT_TIMEOUT * 0.9 <= elapsed < SILENT_TIMEOUT + TIMEOUT_SLACK


def test_a_server_of_another_protocol_is_a_protocol_error(mail_lab):
    result = pop3.probe(_endpoint(mail_lab, "imap", "none"), _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.GREETING, ErrorCode.PROTOCOL_ERROR)
    assert "server's POP3 port" in sentence


def test_the_connection_is_closed_after_the_probe(mail_lab):
    with mail_lab.connection_counter("pop3s") as counter:
        endpoint = Endpoint(
            mail_lab.host, counter.port, "implicit", timeout=5.0, ca_file=mail_lab.ca_file
        )
        result = pop3.probe(endpoint, _password(mail_lab, ALICE))

        assert result.ok, result.failure
        deadline = time.monotonic() + 2.0
        while counter.current and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (counter.total, counter.current) == (1, 0)
