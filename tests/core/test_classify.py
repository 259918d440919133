"""Classification of what the mail libraries raise for replies the test servers cannot be made to
give (busy servers, temporary refusals, policy rejections), and how a probe session reports its own
bugs; the integration tests cover the rest against real servers."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket

import pytest
from imapclient.exceptions import LoginError

from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, Step
from mbxtui.core.probes.classify import ProbeContext, classify
from mbxtui.core.probes.session import ProbeSession

IMAP = ProbeContext(
    "IMAP", Endpoint("mail.example.com", 993, "implicit", timeout=7), "alice@example.com"
)
POP3 = ProbeContext("POP3", Endpoint("mail.example.com", 995, "implicit"), "alice@example.com")
SMTP = ProbeContext("SMTP", Endpoint("mail.example.com", 587, "starttls"), "alice@example.com")


def _timed_out_disconnect() -> smtplib.SMTPServerDisconnected:
    """What smtplib raises when a read times out: the TimeoutError is only its context."""
    try:
        try:
            raise TimeoutError("timed out")
        except OSError as exc:
            raise smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}")  # noqa: B904 (as smtplib does)
    except smtplib.SMTPServerDisconnected as disconnected:
        return disconnected


@pytest.mark.parametrize(
    ("exc", "step", "context", "code", "words"),
    [
        (
            smtplib.SMTPConnectError(421, b"4.3.2 Too many connections"),
            Step.GREETING,
            SMTP,
            ErrorCode.SERVER_BUSY,
            ["busy", "Too many connections"],
        ),
        (
            smtplib.SMTPConnectError(554, b"5.7.1 No service for you"),
            Step.GREETING,
            SMTP,
            ErrorCode.PROTOCOL_ERROR,
            ["refused the session", "No service for you"],
        ),
        (
            smtplib.SMTPAuthenticationError(454, b"4.7.0 Temporary authentication failure"),
            Step.AUTHENTICATE,
            SMTP,
            ErrorCode.SMTP_TEMPORARY,
            ["temporarily", "454"],
        ),
        (
            smtplib.SMTPAuthenticationError(538, b"5.7.11 Encryption required"),
            Step.AUTHENTICATE,
            SMTP,
            ErrorCode.AUTH_UNAVAILABLE,
            ["538", "TLS settings"],
        ),
        (
            smtplib.SMTPSenderRefused(553, b"5.7.1 Sender address rejected", "alice@example.com"),
            Step.SEND,
            SMTP,
            ErrorCode.SENDER_REJECTED,
            ["alice@example.com", "may send as"],
        ),
        (
            smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"),
            Step.SEND,
            SMTP,
            ErrorCode.MESSAGE_REJECTED,
            ["spam"],
        ),
        (
            smtplib.SMTPDataError(452, b"4.3.1 Insufficient system storage"),
            Step.SEND,
            SMTP,
            ErrorCode.SMTP_TEMPORARY,
            ["Insufficient system storage"],
        ),
        (
            smtplib.SMTPRecipientsRefused({"alice@example.com": (421, b"4.7.0 Closing")}),
            Step.SEND,
            SMTP,
            ErrorCode.SERVER_BUSY,
            ["busy"],
        ),
        (
            _timed_out_disconnect(),
            Step.GREETING,
            SMTP,
            ErrorCode.TIMEOUT,
            ["30 s timeout", "raise the timeout"],
        ),
        (
            LoginError("authenticate failed: [UNAVAILABLE] Temporary authentication failure."),
            Step.AUTHENTICATE,
            IMAP,
            ErrorCode.SERVER_BUSY,
            ["busy", "[UNAVAILABLE]"],
        ),
        (
            imaplib.IMAP4.abort(
                "command: SELECT => Maximum number of connections from user+IP "
                "exceeded (mail_max_userip_connections=10)"
            ),
            Step.OPEN_INBOX,
            IMAP,
            ErrorCode.SERVER_BUSY,
            ["busy", "mail_max_userip_connections"],
        ),
        (
            imaplib.IMAP4.error("select failed: Mailbox doesn't exist: INBOX"),
            Step.OPEN_INBOX,
            IMAP,
            ErrorCode.INBOX_UNAVAILABLE,
            ["inbox", "doesn't exist"],
        ),
        (
            imaplib.IMAP4.abort("socket error: EOF"),
            Step.AUTHENTICATE,
            IMAP,
            ErrorCode.CONNECTION_RESET,
            ["closed the connection", "the login"],
        ),
        (
            poplib.error_proto(b"-ERR [IN-USE] Mailbox is locked by another POP3 session"),
            Step.AUTHENTICATE,
            POP3,
            ErrorCode.SERVER_BUSY,
            ["busy", "[IN-USE]"],
        ),
        (
            poplib.error_proto(b"-ERR [SYS/TEMP] Temporary server failure"),
            Step.OPEN_INBOX,
            POP3,
            ErrorCode.SERVER_BUSY,
            ["busy"],
        ),
        (
            poplib.error_proto("-ERR EOF"),
            Step.OPEN_INBOX,
            POP3,
            ErrorCode.CONNECTION_RESET,
            ["closed the connection", "opening the inbox"],
        ),
        (
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
            Step.RESOLVE,
            IMAP,
            ErrorCode.TIMEOUT,
            ["name server", "mail.example.com"],
        ),
        (
            OSError(113, "No route to host"),
            Step.CONNECT,
            IMAP,
            ErrorCode.CONNECTION_REFUSED,
            ["cannot reach", "No route to host"],
        ),
        (
            TypeError("unsupported operand"),
            Step.OPEN_INBOX,
            IMAP,
            ErrorCode.INTERNAL_ERROR,
            ["TypeError", "bug"],
        ),
    ],
)
def test_library_exceptions_get_the_code_and_a_sentence_naming_the_cause(
    exc, step, context, code, words
):
    failure = classify(exc, step, context)
    assert (failure.step, failure.code) == (step, code)
    for word in words:
        assert word in failure.message


def test_transient_and_permanent_follow_r14():
    assert classify(smtplib.SMTPConnectError(421, b"busy"), Step.GREETING, SMTP).transient
    assert classify(_timed_out_disconnect(), Step.SEND, SMTP).transient
    assert not classify(smtplib.SMTPDataError(554, b"no"), Step.SEND, SMTP).transient
    assert not classify(TypeError("bug"), Step.SEND, SMTP).transient


def test_5_7_139_is_smtp_auth_disabled_whatever_the_credentials():
    for said in (b"5.7.139 Authentication unsuccessful, basic authentication is disabled.",
                 b"5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated"):
        failure = classify(smtplib.SMTPAuthenticationError(535, said), Step.AUTHENTICATE, SMTP)
        assert failure.code == ErrorCode.SMTP_AUTH_DISABLED and not failure.transient
        assert "Set-TransportConfig -SmtpClientAuthenticationDisabled $false" in failure.message


def test_a_hand_set_token_lacking_a_scope_is_told_apart_from_an_invalid_one_by_the_error_challenge():
    lacking = ProbeContext("IMAP", IMAP.endpoint, "alice@example.com", secret_name="OAuth2 token",
                           oauth_error={"status": "insufficient_scope", "scope": "mail.read"})
    invalid = ProbeContext("IMAP", IMAP.endpoint, "alice@example.com", secret_name="OAuth2 token",
                           oauth_error={"status": "invalid_token"})
    refused = LoginError("AUTHENTICATE failed.")

    assert classify(refused, Step.AUTHENTICATE, lacking).code == ErrorCode.OAUTH_PERMISSION_MISSING
    assert "lacks the scope mail.read" in classify(refused, Step.AUTHENTICATE, lacking).message
    assert classify(refused, Step.AUTHENTICATE, invalid).code == ErrorCode.AUTH_FAILED
    assert "invalid or expired" in classify(refused, Step.AUTHENTICATE, invalid).message


def _bug() -> None:
    raise TypeError("unsupported operand type(s)")


@pytest.mark.parametrize("inside_a_step", [True, False])
def test_a_bug_in_a_probe_becomes_an_internal_error_not_an_exception(inside_a_step):
    session = ProbeSession(
        "imap", Endpoint("127.0.0.1", 993, "implicit"), Credentials("password", "a", "pw")
    )

    def converse() -> None:
        if inside_a_step:
            with session.step(Step.GREETING):
                _bug()
        else:
            _bug()

    result = session.run(converse)

    assert result.failure is not None
    assert result.failure.code == ErrorCode.INTERNAL_ERROR
    assert "TypeError" in result.failure.message and "bug" in result.failure.message


def test_an_unknown_tls_mode_is_refused_before_connecting():
    session = ProbeSession(
        "smtp", Endpoint("127.0.0.1", 25, "ssl"), Credentials("none"), login_required=False
    )

    result = session.run(lambda: pytest.fail("the conversation must not start"))

    assert (result.failure.step, result.failure.code) == (Step.CHECK, ErrorCode.INTERNAL_ERROR)
    assert "'ssl'" in result.failure.message
