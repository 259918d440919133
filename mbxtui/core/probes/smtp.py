"""The SMTP probe (R11): connect, negotiate TLS as the profile says, log in (unless the profile
sends without logging in) and send a test message to the mailbox's own address."""

from __future__ import annotations

import smtplib
import socket
import uuid
from email.message import EmailMessage
from email.utils import formatdate

from mbxtui.core.probes.base import Credentials, Endpoint, ProbeResult, Step
from mbxtui.core.probes.session import ProbeSession, oauth_mechanism
from mbxtui.core.probes.tls import describe_tls

MAX_COMMAND_OCTETS = 512  # RFC 5321 4.5.3.1.4: a command line, CRLF included
TEST_SUBJECT = "Your mailbox is now connected"
TEST_BODY = (
    "This message was sent by mbxtui to test that this mailbox can send email.\n"
    "Nothing needs to be done: you may delete it.\n"
)


def probe(
    endpoint: Endpoint,
    credentials: Credentials,
    *,
    sender: str,
    recipient: str,
    subject: str = TEST_SUBJECT,
    body: str = TEST_BODY,
    send: bool = True,
) -> ProbeResult:
    """Steps: resolve, connect, tls, greeting (EHLO), authenticate, send. ``sender`` is the
    envelope sender; the message's From and To are both ``recipient``. On success
    ``result.message_id`` is the Message-ID of the message sent. ``endpoint.timeout`` bounds the
    whole probe."""
    session = ProbeSession("smtp", endpoint, credentials, login_required=False)
    return session.run(lambda: _converse(session, sender, recipient, subject, body, send))


def new_message_id() -> str:
    return f"<mbxtui-test-{uuid.uuid4().hex}@mbxtui>"


def build_test_message(recipient: str, subject: str, body: str) -> tuple[bytes, str]:
    """The test message as sent, and its Message-ID."""
    message_id = new_message_id()
    date = formatdate(localtime=True)
    lines = body.splitlines()
    if _plain_ascii(recipient, subject) and body.isascii() and all(len(line) <= 998 for line in lines):
        # What EmailMessage writes for these headers and a short ASCII body, without its header
        # parsing: building the message through it cost more than the rest of the SMTP probe's
        # Python code together.
        head = (f"From: {recipient}\r\nTo: {recipient}\r\nSubject: {subject}\r\nDate: {date}\r\n"
                f"Message-ID: {message_id}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
                f"Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n")
        return (head + "".join(line + "\r\n" for line in lines)).encode("ascii"), message_id
    message = EmailMessage()
    message["From"] = recipient
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = date
    message["Message-ID"] = message_id
    message.set_content(body)
    international = not recipient.isascii()
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n", utf8=international)), message_id


def _smtputf8_options(sender: str, recipient: str) -> tuple[str, ...]:
    """Mail options for addresses beyond ASCII (smtplib refuses them if the server lacks SMTPUTF8)."""
    return () if sender.isascii() and recipient.isascii() else ("SMTPUTF8", "BODY=8BITMIME")


def _plain_ascii(*headers: str) -> bool:
    """Header values that go into a message as they are: ASCII, printable, short enough."""
    return all(value.isascii() and value.isprintable() and len(value) < 900 for value in headers)


class _SMTPOnSocket(smtplib.SMTP):
    """An SMTP client over a socket the probe has already connected (and, for implicit TLS,
    encrypted), so that resolving, connecting and the handshake are steps of their own."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self._connected_socket = sock
        # An address literal, as smtplib falls back to, without its reverse DNS lookup.
        address = sock.getsockname()[0]
        literal = f"[IPv6:{address}]" if ":" in address else f"[{address}]"
        super().__init__(local_hostname=literal, timeout=sock.gettimeout())
        self._host = host  # the name STARTTLS checks the certificate against

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._connected_socket


def _converse(session: ProbeSession, sender: str, recipient: str, subject: str, body: str, send: bool) -> None:
    message, message_id = build_test_message(recipient, subject, body)
    smtp = open_session(session)
    try:
        if not send:
            return
        with session.step(Step.SEND) as note:
            smtp.sendmail(sender, [recipient], message, _smtputf8_options(sender, recipient))
            session.result.message_id = message_id
            note.detail = f"{message_id} to {recipient}"
    finally:
        close_session(smtp, session)


def open_session(session: ProbeSession) -> smtplib.SMTP:
    """Connect, greet, negotiate TLS as the profile says and log in (unless the profile sends
    without logging in): the steps of the probe and of processing's sending alike. Whatever
    happens, ``close_session`` ends it."""
    endpoint = session.endpoint
    smtp = _SMTPOnSocket(session.open_connection(), endpoint.host)
    try:
        with session.step(Step.GREETING) as note:
            code, reply = smtp.connect(endpoint.host, endpoint.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            note.detail = reply.decode("utf-8", "replace")
            _say_hello(smtp)
        if endpoint.tls == "starttls":
            with session.step(Step.TLS) as note:
                if not smtp.has_extn("starttls"):
                    raise session.starttls_unavailable()
                try:
                    smtp.starttls(context=session.tls_context())
                except smtplib.SMTPResponseException as refused:
                    if 400 <= refused.smtp_code < 500:
                        raise  # "454 TLS not available due to temporary reason": retried later
                    raise session.starttls_refused(refused) from refused
                session.use_connection(smtp.sock)
                note.detail = describe_tls(smtp.sock)
                _say_hello(smtp)  # RFC 3207: extensions offered before TLS no longer count
        with session.step(Step.AUTHENTICATE) as note:
            if session.credentials.kind == "none":
                note.detail = "none: the profile sends without logging in"
            else:
                _log_in(smtp, session)
                note.detail = f"as {session.context.who}"
    except BaseException:
        close_session(smtp, session)
        raise
    return smtp


def _say_hello(smtp: smtplib.SMTP) -> None:
    code, reply = smtp.ehlo()
    if 500 <= code < 600:  # a server that knows only HELO (not one busy, or not speaking SMTP)
        code, reply = smtp.helo()
    if code != 250:
        raise smtplib.SMTPHeloError(code, reply)


def _log_in(smtp: smtplib.SMTP, session: ProbeSession) -> None:
    """``AUTH PLAIN``, ``XOAUTH2`` or ``OAUTHBEARER`` with an initial response built here:
    ``SMTP.login()`` encodes as ASCII and fails on non-ASCII passwords, and has no authorization
    identity."""
    oauth2 = session.credentials.kind == "oauth2"
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    mechanism = oauth_mechanism(offered) if oauth2 else ("PLAIN" if "PLAIN" in offered else None)
    if mechanism is None:
        raise session.auth_unavailable(" ".join(offered))
    session.result.mechanism = mechanism
    response = session.sasl_oauth(mechanism) if oauth2 else session.sasl_plain()
    if len(f"AUTH {mechanism} {response.reveal()}\r\n") <= MAX_COMMAND_OCTETS:
        code, reply = smtp.docmd("AUTH", f"{mechanism} {response.reveal()}")
    else:
        # RFC 4954 4: an initial response that would make the command too long for SMTP (an Entra ID
        # token usually does) follows the server's empty 334 challenge instead.
        code, reply = smtp.docmd("AUTH", mechanism)
        if code == 334:
            code, reply = smtp.docmd(response.reveal())
    if code == 334:
        if oauth2:
            # The OAuth2 error as a base64 JSON challenge, answered so the server ends the exchange
            # (XOAUTH2: an empty line; OAUTHBEARER: %x01, RFC 7628 3.2.3).
            session.note_oauth_challenge(reply)
            code, reply = smtp.docmd("AQ==" if mechanism == "OAUTHBEARER" else "")
        else:  # a PLAIN server that ignored the initial response asks for it
            code, reply = smtp.docmd(response.reveal())
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def close_session(smtp: smtplib.SMTP, session: ProbeSession) -> None:
    """Say QUIT when the server still follows the conversation; closing is best effort, the
    session closes the socket anyway."""
    try:
        if not session.may_say_goodbye or smtp.sock is None:
            smtp.close()
        else:
            smtp.quit()
    except Exception:
        pass
