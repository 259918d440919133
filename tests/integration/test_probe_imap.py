"""The IMAP probe against the real Dovecot of the mail lab (and, for behaviours no real server can
be configured into, small servers started here)."""

from __future__ import annotations

import base64
import contextlib
import datetime
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
import trustme

from mbxtui.core.probes import imap
from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, ProbeResult, Step

pytestmark = pytest.mark.servers

ALICE = "alice@example.test"
JOSE = "jose@example.test"  # has a non-ASCII password
SILENT_TIMEOUT = 1.0
# What a probe may take beyond its timeout: closing, thread scheduling on a busy 2-core machine.
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
    """The failure is at that step with that code, and the step is recorded as the failing last
    one; returns the sentence."""
    assert result.failure is not None, result
    assert (result.failure.step, result.failure.code) == (step, code), result.failure
    assert result.steps[-1].step == step and not result.steps[-1].ok
    assert all(recorded.ok for recorded in result.steps[:-1])
    return result.failure.message


def test_implicit_tls_logs_in_and_opens_the_inbox(mail_lab):
    result = imap.probe(_endpoint(mail_lab, "imaps", "implicit"), _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert _step_names(result) == [
        "resolve",
        "connect",
        "tls",
        "greeting",
        "authenticate",
        "open_inbox",
    ]
    assert all(step.ok and step.seconds >= 0 for step in result.steps)
    assert result.steps[2].detail.startswith("TLSv1.")
    assert result.steps[-1].detail.endswith("messages")


def test_starttls_negotiates_tls_after_the_greeting_and_before_the_login(mail_lab):
    result = imap.probe(_endpoint(mail_lab, "imap", "starttls"), _password(mail_lab, ALICE))

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
    result = imap.probe(_endpoint(mail_lab, "imap", "none"), _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert _step_names(result) == ["resolve", "connect", "greeting", "authenticate", "open_inbox"]


def test_a_non_ascii_password_logs_in(mail_lab):
    assert not mail_lab.users[JOSE].isascii()

    result = imap.probe(_endpoint(mail_lab, "imap", "starttls"), _password(mail_lab, JOSE))

    assert result.ok, result.failure


def test_the_master_user_opens_alices_inbox(mail_lab):
    credentials = Credentials("password", mail_lab.master_login, mail_lab.master_password, ALICE)

    result = imap.probe(_endpoint(mail_lab, "imaps", "implicit"), credentials)

    assert result.ok, result.failure
    assert result.steps[-2].detail == f"as {mail_lab.master_login} acting for {ALICE}"
    assert result.steps[-1].detail == f"{len(mail_lab.messages(ALICE))} messages"


def test_the_master_user_acting_for_an_unknown_mailbox_is_refused(mail_lab):
    credentials = Credentials(
        "password", mail_lab.master_login, mail_lab.master_password, "nobody@example.test"
    )

    result = imap.probe(_endpoint(mail_lab, "imaps", "implicit"), credentials)

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.AUTH_FAILED)
    assert "act for 'nobody@example.test'" in sentence
    assert mail_lab.master_password not in sentence


def test_a_wrong_password_fails_at_authenticate_without_repeating_it(mail_lab):
    wrong = "Wr0ng-pässword"
    result = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit"), Credentials("password", ALICE, wrong)
    )

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.AUTH_FAILED)
    assert not result.failure.transient
    assert ALICE in sentence and "check the user name and the password" in sentence
    plain = base64.b64encode(f"\0{ALICE}\0{wrong}".encode()).decode()
    for text in [sentence, *(step.detail for step in result.steps)]:
        assert wrong not in text and plain not in text


def test_a_disabled_account_is_reported_as_disabled(mail_lab):
    result = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit"), _password(mail_lab, mail_lab.disabled_user)
    )

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.ACCOUNT_DISABLED)
    assert f"'{mail_lab.disabled_user}' is disabled" in sentence


def test_oauth2_is_refused_before_sending_a_token_when_the_server_lacks_xoauth2(mail_lab):
    token = "ya29.secret-token"
    result = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit"), Credentials("oauth2", ALICE, token)
    )

    sentence = _assert_failed(result, Step.AUTHENTICATE, ErrorCode.AUTH_UNAVAILABLE)
    assert "XOAUTH2" in sentence and "PLAIN" in sentence and token not in sentence


def test_a_certificate_from_an_unknown_authority_is_refused(mail_lab):
    endpoint = _endpoint(mail_lab, "imaps", "implicit", ca_file=mail_lab.wrong_ca_file)

    result = imap.probe(endpoint, _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert "unknown authority" in sentence and "CA file" in sentence


def test_the_system_cas_are_used_when_the_profile_has_no_ca_file(mail_lab):
    endpoint = Endpoint(mail_lab.host, mail_lab.ports["imaps"], "implicit", timeout=5.0)

    result = imap.probe(endpoint, _password(mail_lab, ALICE))

    _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)


def test_starttls_verifies_the_certificate_too(mail_lab):
    endpoint = _endpoint(mail_lab, "imap", "starttls", ca_file=mail_lab.wrong_ca_file)

    result = imap.probe(endpoint, _password(mail_lab, ALICE))

    _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)


def test_a_certificate_for_another_host_name_is_refused(mail_lab):
    result = imap.probe(
        _endpoint(mail_lab, "imaps_wrong_host", "implicit"), _password(mail_lab, ALICE)
    )

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert "for another host name" in sentence and "'127.0.0.1'" in sentence


def test_an_expired_certificate_is_reported_as_expired(tmp_path):
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    expired.configure_cert(server_context)

    with _serve_once(lambda conn, stop: _handshake(server_context, conn)) as port:
        endpoint = Endpoint("127.0.0.1", port, "implicit", timeout=5.0, ca_file=str(ca_file))
        result = imap.probe(endpoint, Credentials("password", ALICE, "irrelevant"))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert "has expired" in sentence


def test_an_unreadable_ca_file_is_reported_before_any_tls(mail_lab, tmp_path):
    missing = tmp_path / "no-such-ca.pem"

    result = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit", ca_file=str(missing)), _password(mail_lab, ALICE)
    )

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_CERTIFICATE)
    assert str(missing) in sentence and "CA file" in sentence


def test_implicit_tls_on_a_plaintext_port_is_a_handshake_failure(mail_lab):
    result = imap.probe(_endpoint(mail_lab, "imap", "implicit"), _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.TLS, ErrorCode.TLS_HANDSHAKE)
    assert "'implicit'" in sentence


def test_starttls_not_offered_fails_before_any_credentials_are_sent(mail_lab):
    attempts_before = mail_lab.imap_login_attempts("imap_nostarttls")

    result = imap.probe(
        _endpoint(mail_lab, "imap_nostarttls", "starttls"), _password(mail_lab, ALICE)
    )

    sentence = _assert_failed(result, Step.TLS, ErrorCode.STARTTLS_UNAVAILABLE)
    assert "does not offer STARTTLS" in sentence
    assert "authenticate" not in _step_names(result)
    assert mail_lab.imap_login_attempts("imap_nostarttls") == attempts_before


def test_the_front_without_starttls_does_count_logins(mail_lab):
    """The proof above only holds if the lab counts a login that is sent."""
    attempts_before = mail_lab.imap_login_attempts("imap_nostarttls")

    result = imap.probe(_endpoint(mail_lab, "imap_nostarttls", "none"), _password(mail_lab, ALICE))

    assert result.ok, result.failure
    assert mail_lab.imap_login_attempts("imap_nostarttls") == attempts_before + 1


def test_connection_refused_is_transient(mail_lab):
    result = imap.probe(_endpoint(mail_lab, "refused", "implicit"), _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.CONNECT, ErrorCode.CONNECTION_REFUSED)
    assert result.failure.transient
    assert f"127.0.0.1:{mail_lab.ports['refused']}" in sentence


def test_an_unknown_host_is_not_found():
    endpoint = Endpoint("no-such-host.invalid", 993, "implicit", timeout=5.0)

    result = imap.probe(endpoint, Credentials("password", ALICE, "x"))

    sentence = _assert_failed(result, Step.RESOLVE, ErrorCode.HOST_NOT_FOUND)
    assert "'no-such-host.invalid'" in sentence


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_silent_server_times_out_within_the_timeout(mail_lab, tls):
    started = time.perf_counter()
    result = imap.probe(
        _endpoint(mail_lab, "silent", tls, timeout=SILENT_TIMEOUT), _password(mail_lab, ALICE)
    )
    elapsed = time.perf_counter() - started

    failed_step = Step.TLS if tls == "implicit" else Step.GREETING
    sentence = _assert_failed(result, failed_step, ErrorCode.TIMEOUT)
    assert result.failure.transient
    assert "1 s timeout" in sentence
    assert SILENT_TIMEOUT * 0.9 <= elapsed < SILENT_TIMEOUT + TIMEOUT_SLACK


def test_a_server_trickling_one_byte_at_a_time_cannot_stretch_the_timeout():
    """Every byte arrives well within a per-read timeout; only a whole-probe deadline stops it."""

    def trickle(conn: socket.socket, stop: threading.Event) -> None:
        for byte in b"* OK " + b"x" * 500:
            if stop.wait(0.1):
                return
            conn.sendall(bytes([byte]))

    with _serve_once(trickle) as port:
        started = time.perf_counter()
        result = imap.probe(
            Endpoint("127.0.0.1", port, "none", timeout=SILENT_TIMEOUT),
            Credentials("password", ALICE, "x"),
        )
        elapsed = time.perf_counter() - started

    _assert_failed(result, Step.GREETING, ErrorCode.TIMEOUT)
    assert elapsed < SILENT_TIMEOUT + TIMEOUT_SLACK


def test_a_server_of_another_protocol_is_a_protocol_error(mail_lab):
    result = imap.probe(_endpoint(mail_lab, "pop3", "none"), _password(mail_lab, ALICE))

    sentence = _assert_failed(result, Step.GREETING, ErrorCode.PROTOCOL_ERROR)
    assert f"port {mail_lab.ports['pop3']} is the server's IMAP port" in sentence


def test_missing_credentials_fail_before_connecting(mail_lab):
    with mail_lab.connection_counter("imaps") as counter:
        endpoint = Endpoint(
            mail_lab.host, counter.port, "implicit", timeout=5.0, ca_file=mail_lab.ca_file
        )
        no_password = imap.probe(endpoint, Credentials("password", ALICE, ""))
        no_login = imap.probe(endpoint, Credentials("none"))

        for result in (no_password, no_login):
            _assert_failed(result, Step.CHECK, ErrorCode.NO_CREDENTIALS)
            assert _step_names(result) == ["check"]
        assert counter.total == 0


@pytest.mark.parametrize("password", ["alice-secret", "wrong"], ids=["success", "refused"])
def test_the_connection_is_closed_after_the_probe(mail_lab, password):
    with mail_lab.connection_counter("imaps") as counter:
        endpoint = Endpoint(
            mail_lab.host, counter.port, "implicit", timeout=5.0, ca_file=mail_lab.ca_file
        )
        imap.probe(endpoint, Credentials("password", ALICE, password))

        assert counter.total == 1
        _wait_until(lambda: counter.current == 0, "the probe's connection to close")


def test_verify_delivery_finds_a_delivered_message(mail_lab):
    message_id = _deliver_to(mail_lab, ALICE)

    result = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit"),
        _password(mail_lab, ALICE),
        verify_message_id=message_id,
    )

    assert result.ok, result.failure
    assert _step_names(result)[-1] == "verify_delivery"
    assert result.message_id == message_id


def test_verify_delivery_gives_up_after_the_wait(mail_lab):
    started = time.perf_counter()
    result = imap.probe(
        _endpoint(mail_lab, "imaps", "implicit"),
        _password(mail_lab, ALICE),
        verify_message_id="<never-sent@mbxtui>",
        verify_wait=0.5,
    )
    elapsed = time.perf_counter() - started

    sentence = _assert_failed(result, Step.VERIFY_DELIVERY, ErrorCode.DELIVERY_NOT_CONFIRMED)
    assert "<never-sent@mbxtui>" in sentence and "0.5 s" in sentence
    assert result.message_id is None
    assert 0.5 <= elapsed < 0.5 + 2.0


def _deliver_to(lab, login: str) -> str:
    """Send a message to ``login`` through the lab's SMTP server with plain smtplib."""
    message = EmailMessage()
    message["From"] = message["To"] = login
    message["Subject"] = "delivered for the IMAP probe"
    message["Message-ID"] = make_msgid(domain="example.test")
    message.set_content("body")
    with smtplib.SMTP(lab.host, lab.ports["smtp_plain"], timeout=5) as client:
        client.login(login, lab.users[login])
        client.send_message(message)
    return message["Message-ID"]


def _handshake(server_context: ssl.SSLContext, conn: socket.socket) -> None:
    conn.settimeout(5.0)
    try:
        with server_context.wrap_socket(conn, server_side=True):
            pass
    except (ssl.SSLError, OSError):
        pass  # the client refusing the certificate is what the test wants


@contextmanager
def _serve_once(serve: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A listener on 127.0.0.1 that hands its first connection to ``serve``; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5.0)
    stop = threading.Event()

    def accept_and_serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):  # the client went away
            serve(conn, stop)

    thread = threading.Thread(target=accept_and_serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5.0)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
