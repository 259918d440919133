"""The SMTP probe against the mail lab's real SMTP servers, which deliver into Dovecot, and the
outgoing-then-incoming round trip."""

from __future__ import annotations

import base64
import re
import time

import pytest

from mbxtui.core.probes import imap, smtp
from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, ProbeResult, Step

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
BOB = "bob@example.test"
JOSE = "jose@example.test"  # has a non-ASCII password
SILENT_TIMEOUT = 1.0
TIMEOUT_SLACK = 0.5
MESSAGE_ID = re.compile(r"^<mbxtui-test-[0-9a-f]{32}@mbxtui>$")


def _endpoint(
    lab, port_key: str, tls: str, timeout: float = 5.0, ca_file: str | None = None
) -> Endpoint:
    return Endpoint(
        lab.host, lab.ports[port_key], tls, timeout=timeout, ca_file=ca_file or lab.ca_file
    )


def _password(lab, login: str) -> Credentials:
    return Credentials("password", login, lab.users[login])


def _send(
    lab,
    port_key: str,
    tls: str,
    credentials: Credentials,
    recipient: str = ALICE,
    **endpoint_options,
) -> ProbeResult:
    return smtp.probe(
        _endpoint(lab, port_key, tls, **endpoint_options),
        credentials,
        sender=recipient,
        recipient=recipient,
    )


def _step_names(result: ProbeResult) -> list[str]:
    return [step.step.value for step in result.steps]


def _assert_failed(result: ProbeResult, step: Step, code: ErrorCode) -> str:
    assert result.failure is not None, result
    assert (result.failure.step, result.failure.code) == (step, code), result.failure
    assert result.steps[-1].step == step and not result.steps[-1].ok
    assert all(recorded.ok for recorded in result.steps[:-1])
    assert result.message_id is None
    return result.failure.message


def _delivered(lab, login: str, message_id: str):
    """The message with that Message-ID in the login's Maildir, waiting briefly for delivery."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        for message in lab.messages(login):
            if message["Message-ID"] == message_id:
                return message
        time.sleep(0.02)
    pytest.fail(f"{message_id} was not delivered to {login}")


def test_starttls_sends_the_test_message_to_the_mailbox(mail_lab):
    result = _send(mail_lab, "smtp", "starttls", _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert _step_names(result) == ["resolve", "connect", "greeting", "tls", "authenticate", "send"]
    assert MESSAGE_ID.match(result.message_id)
    message = _delivered(mail_lab, ALICE, result.message_id)
    assert message["Subject"] == "Your mailbox is now connected"
    assert message["From"] == message["To"] == ALICE
    assert message["Date"] is not None
    assert "mbxtui" in message.get_content()


def test_every_test_message_has_its_own_message_id(mail_lab):
    first = _send(mail_lab, "smtps", "implicit", _password(mail_lab, ALICE))
    second = _send(mail_lab, "smtps", "implicit", _password(mail_lab, ALICE))

    assert first.ok and second.ok
    assert first.message_id != second.message_id


def test_implicit_tls_sends_the_test_message(mail_lab):
    result = _send(mail_lab, "smtps", "implicit", _password(mail_lab, BOB), recipient=BOB)

    assert result.ok, result.failure
    assert _step_names(result) == ["resolve", "connect", "tls", "greeting", "authenticate", "send"]
    _delivered(mail_lab, BOB, result.message_id)


def test_the_envelope_sender_may_differ_from_the_mailbox(mail_lab):
    result = smtp.probe(
        _endpoint(mail_lab, "smtps", "implicit"),
        _password(mail_lab, ALICE),
        sender=BOB,
        recipient=ALICE,
        subject="custom subject",
        body="custom body\n",
    )

    assert result.ok, result.failure
    message = _delivered(mail_lab, ALICE, result.message_id)
    assert message["From"] == message["To"] == ALICE
    assert message["Subject"] == "custom subject"
    assert message.get_content() == "custom body\n"


def test_the_sent_message_is_found_by_the_imap_probe(mail_lab):
    sent = _send(mail_lab, "smtp", "starttls", _password(mail_lab, ALICE))
    assert sent.ok, sent.failure

    found = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit"),
        _password(mail_lab, ALICE),
        verify_message_id=sent.message_id,
    )

    assert found.ok, found.failure
    assert found.steps[-1].step == Step.VERIFY_DELIVERY and found.steps[-1].ok
    assert found.message_id == sent.message_id


def test_a_non_ascii_password_sends(mail_lab):
    assert not mail_lab.users[JOSE].isascii()

    result = _send(mail_lab, "smtp", "starttls", _password(mail_lab, JOSE), recipient=JOSE)

    assert result.ok, result.failure
    _delivered(mail_lab, JOSE, result.message_id)


def test_the_master_user_sends_for_alice_and_imap_finds_it(mail_lab):
    master = Credentials("password", mail_lab.master_login, mail_lab.master_password, ALICE)

    sent = _send(mail_lab, "smtp", "starttls", master)
    found = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit"), master, verify_message_id=sent.message_id
    )

    assert sent.ok, sent.failure
    assert sent.steps[-2].detail == f"as {mail_lab.master_login} acting for {ALICE}"
    assert found.ok, found.failure


def test_a_wrong_password_fails_at_authenticate_without_repeating_it(mail_lab):
    wrong = "Wr0ng-pässword"
    attempts_before = mail_lab.smtp_auth_attempts("smtp")

    result = _send(mail_lab, "smtp", "starttls", Credentials("password", ALICE, wrong))

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.AUTH_FAILED)
    assert not result.failure.transient
    assert "535" in sentence and "check the user name and the password" in sentence
    plain = base64.b64encode(f"\0{ALICE}\0{wrong}".encode()).decode()
    for text in [sentence, *(step.detail for step in result.steps)]:
        assert wrong not in text and plain not in text
    assert mail_lab.smtp_auth_attempts("smtp") == attempts_before + 1


def test_starttls_not_offered_fails_before_auth_is_sent(mail_lab):
    attempts_before = mail_lab.smtp_auth_attempts("smtp_plain")

    result = _send(mail_lab, "smtp_plain", "starttls", _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.STARTTLS_UNAVAILABLE)
    assert "does not offer STARTTLS" in sentence
    assert mail_lab.smtp_auth_attempts("smtp_plain") == attempts_before


def test_tls_none_sends_on_the_plain_port_when_the_profile_says_so(mail_lab):
    attempts_before = mail_lab.smtp_auth_attempts("smtp_plain")

    result = _send(mail_lab, "smtp_plain", "none", _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert "tls" not in _step_names(result)
    assert mail_lab.smtp_auth_attempts("smtp_plain") == attempts_before + 1


def test_no_authentication_skips_auth_and_says_so_when_the_server_requires_it(mail_lab):
    attempts_before = mail_lab.smtp_auth_attempts("smtp")

    result = _send(mail_lab, "smtp", "starttls", Credentials("none"))

    sentence = _assert_failed(result, Step.SEND, ErrorCode.NO_CREDENTIALS)
    assert "530" in sentence and "outgoing authentication" in sentence
    assert result.steps[-2].step == Step.AUTHENTICATE and result.steps[-2].detail.startswith("none")
    assert mail_lab.smtp_auth_attempts("smtp") == attempts_before


def test_an_unknown_recipient_is_rejected_for_good(mail_lab):
    result = _send(
        mail_lab, "smtp", "starttls", _password(mail_lab, ALICE), recipient="nobody@example.test"
    )

    sentence = _assert_failed(result, Step.SEND, ErrorCode.RECIPIENT_REJECTED)
    assert not result.failure.transient
    assert "'nobody@example.test'" in sentence and "550" in sentence


def test_a_busy_recipient_is_a_temporary_failure(mail_lab):
    result = _send(
        mail_lab, "smtp", "starttls", _password(mail_lab, ALICE), recipient="busy@example.test"
    )

    sentence = _assert_failed(result, Step.SEND, ErrorCode.SMTP_TEMPORARY)
    assert result.failure.transient
    assert "451" in sentence and "temporarily" in sentence


def test_oauth2_is_refused_before_sending_a_token_when_the_server_lacks_xoauth2(mail_lab):
    token = "ya29.secret-token"
    attempts_before = mail_lab.smtp_auth_attempts("smtp")

    result = _send(mail_lab, "smtp", "starttls", Credentials("oauth2", ALICE, token))

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.AUTH_UNAVAILABLE)
    assert "XOAUTH2" in sentence and token not in sentence
    assert mail_lab.smtp_auth_attempts("smtp") == attempts_before


def test_a_certificate_for_another_host_name_is_refused(mail_lab):
    result = _send(mail_lab, "smtps_wrong_host", "implicit", _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert "for another host name" in sentence


def test_starttls_with_an_unknown_authority_stops_before_auth(mail_lab):
    attempts_before = mail_lab.smtp_auth_attempts("smtp")

    result = _send(
        mail_lab, "smtp", "starttls", _password(mail_lab, ALICE), ca_file=mail_lab.wrong_ca_file
    )

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert "unknown authority" in sentence
    assert mail_lab.smtp_auth_attempts("smtp") == attempts_before


def test_connection_refused_is_transient(mail_lab):
    result = _send(mail_lab, "refused", "starttls", _password(mail_lab, ALICE))

    _assert_failed(result, Step.CONNECT, ErrorCode.CONNECTION_REFUSED)
    assert result.failure.transient


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_silent_server_times_out_within_the_timeout(mail_lab, tls):
    started = time.perf_counter()
    result = _send(mail_lab, "silent", tls, _password(mail_lab, ALICE), timeout=SILENT_TIMEOUT)
    elapsed = time.perf_counter() - started

    _assert_failed(result, Step.TLS if tls == "implicit" else Step.GREETING, ErrorCode.TIMEOUT)
    assert result.failure.transient
    assert SILENT_TIMEOUT * 0.9 <= elapsed < SILENT_TIMEOUT + TIMEOUT_SLACK


def test_a_server_of_another_protocol_is_a_protocol_error(mail_lab):
    result = _send(mail_lab, "imap", "starttls", _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.GREETING, ErrorCode.PROTOCOL_ERROR)
    assert "server's SMTP port" in sentence


def test_the_connection_is_closed_after_the_probe(mail_lab):
    with mail_lab.connection_counter("smtps") as counter:
        endpoint = Endpoint(
            mail_lab.host, counter.port, "implicit", timeout=5.0, ca_file=mail_lab.ca_file
        )
        result = smtp.probe(endpoint, _password(mail_lab, ALICE), sender=ALICE, recipient=ALICE)

        assert result.ok, result.failure
        deadline = time.monotonic() + 2.0
        while counter.current and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (counter.total, counter.current) == (1, 0)
