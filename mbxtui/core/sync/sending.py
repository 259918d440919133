"""Sending one mailbox's queued email over SMTP (R29), as Test & Enable's SMTP probe connects: the
same session (TLS, timeouts, credentials, classification; core/probes/smtp.py), then one email
after another while the profile's timeout allows.

Each email is claimed (``sending``, committed) right before its MAIL command: a worker that dies
after that leaves it ``sending``, and the next pass makes it ``uncertain`` instead of sending it a
second time. What happens to an email is told by an ``Attempt``: ``sent``; ``refused`` (the server
answered no, so it was not sent: retried or failed); ``unknown`` (the connection broke while the
message itself was on its way, so it may have been taken: ``uncertain``)."""

from __future__ import annotations

import quopri
import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.header import Header
from email.utils import format_datetime

from mbxtui.core.mailbox_check import ProfileSnapshot, endpoint
from mbxtui.core.probes import smtp
from mbxtui.core.probes.base import Credentials, ErrorCode, Failure, ProbeResult, Step
from mbxtui.core.probes.classify import ProbeContext
from mbxtui.core.probes.session import ProbeSession

MOST_EMAILS_PER_PASS = 100  # per mailbox: the rest wait for the next pass
_LONGEST_LINE = 998


@dataclass(frozen=True)
class QueuedEmail:
    """One ``pending`` outgoing activity as it is sent."""

    id: int
    message_id: str
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str
    in_reply_to: str
    references: tuple[str, ...]
    attempts: int  # attempts that failed for now so far

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc]

    @property
    def needs_smtputf8(self) -> bool:
        return not all(address.isascii() for address in [self.sender, *self.recipients])


@dataclass(frozen=True)
class Attempt:
    """What one email's attempt came to. ``failure``: why it was not sent (``refused``), or why the
    conversation broke (``unknown``); ``refused_recipients``: some recipients refused, the others
    got it (``sent``)."""

    email: QueuedEmail
    outcome: str  # sent, refused, unknown
    failure: Failure | None = None
    size: int = 0
    refused_recipients: str = ""


@dataclass
class MailboxSending:
    """What sending from one mailbox did: each email's attempt in order, and the session, whose
    failure (if any) is the outgoing direction's: connecting, TLS, logging in, the sender refused."""

    probe: ProbeResult
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class EmailQueue:
    """How the conversation reaches the database, each call its own committed transaction:
    ``next_due`` is the email to send next (None when none is due); ``claim`` marks it
    ``sending`` and says whether it still was ``pending``; ``record`` writes an attempt's result."""

    next_due: Callable[[], QueuedEmail | None]
    claim: Callable[[QueuedEmail], bool]
    record: Callable[[Attempt], None]


def send_queued(profile: ProfileSnapshot, credentials: Credentials, queue: EmailQueue) -> MailboxSending:
    """Connect as the SMTP probe does and send the mailbox's due emails, one after another, while
    at least half the profile's timeout is left. Nothing is claimed until the login passed."""
    session = ProbeSession("smtp", endpoint(profile, "outgoing"), credentials, login_required=False)
    sending = MailboxSending(session.result)
    first = queue.next_due()
    if first is None:
        return sending
    in_flight: list[_InFlight] = []  # claimed and being sent: if the conversation breaks, in this one

    def converse() -> None:
        client = smtp.open_session(session)
        try:
            email: QueuedEmail | None = first
            while email is not None and len(sending.attempts) < MOST_EMAILS_PER_PASS:
                if not queue.claim(email):
                    return  # an operator or another worker changed it meanwhile
                in_flight.append(_InFlight(email))
                with session.step(Step.SEND_EMAIL) as note:
                    attempt = _send(client, session.context, in_flight[0])
                    note.detail = f"{email.message_id}: {attempt.outcome}"
                in_flight.clear()
                sending.attempts.append(attempt)
                queue.record(attempt)
                if session.deadline.remaining() < session.endpoint.timeout / 2:
                    return
                email = queue.next_due()
        finally:
            smtp.close_session(client, session)

    session.run(converse)
    failure = session.result.failure
    if failure is not None:
        if in_flight:
            # The conversation broke while this email was on its way: past the start of DATA the
            # server may have taken it (R29: never twice), before it nothing was sent.
            broken = in_flight[0]
            attempt = Attempt(broken.email, "unknown" if broken.data_started else "refused", failure)
            sending.attempts.append(attempt)
            queue.record(attempt)
        elif not sending.attempts:
            # Connecting or logging in failed: the first email's attempt failed with it.
            attempt = Attempt(first, "refused", failure)
            sending.attempts.append(attempt)
            queue.record(attempt)
    return sending


@dataclass
class _InFlight:
    """The email claimed and being sent; ``data_started``: its DATA command was under way, so a
    broken connection leaves its fate unknown."""

    email: QueuedEmail
    data_started: bool = False


def _send(client: smtplib.SMTP, context: ProbeContext, flight: _InFlight) -> Attempt:
    """MAIL, RCPT and DATA as ``SMTP.sendmail`` does them, so that a refusal of the message is this
    email's failure (the session goes on), while a refusal of the sender, a server closing (421)
    or a broken connection raises: the session classifies it and stops."""
    email = flight.email
    international = email.needs_smtputf8
    if international and not client.has_extn("smtputf8"):
        return Attempt(email, "refused", Failure(
            Step.SEND_EMAIL, ErrorCode.MESSAGE_REJECTED,
            f"the SMTP server at {context.where} does not offer SMTPUTF8, which the address "
            f"{_first_international(email)!r} needs: send to addresses in ASCII, or enable SMTPUTF8 on the server"))
    message = build_message(email, datetime.now(timezone.utc), international=international)
    options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
    if client.has_extn("size"):
        options.append(f"SIZE={len(message)}")
    code, reply = client.mail(email.sender, options)
    if code != 250:
        _end_transaction(client, code)
        raise smtplib.SMTPSenderRefused(code, reply, email.sender)
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in email.recipients:
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
        if code == 421:
            client.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(email.recipients):
        client.rset()
        return Attempt(email, "refused", _recipients_refused(context, refused))
    flight.data_started = True
    try:
        code, reply = client.data(message)
    except smtplib.SMTPDataError as refusal:  # DATA itself refused: nothing of the message was sent
        code, reply = refusal.smtp_code, refusal.smtp_error
    flight.data_started = False  # the server answered the message: its fate is known
    if code != 250:
        _end_transaction(client, code)
        return Attempt(email, "refused", _message_refused(context, code, reply))
    return Attempt(email, "sent", size=len(message), refused_recipients=_said_of(refused))


def _end_transaction(client: smtplib.SMTP, code: int) -> None:
    if code == 421:
        client.close()
        raise smtplib.SMTPResponseException(code, b"service not available, closing the connection")
    client.rset()


def _recipients_refused(context: ProbeContext, refused: dict[str, tuple[int, bytes]]) -> Failure:
    temporary = any(400 <= code < 500 for code, _ in refused.values())
    said = _said_of(refused)
    if temporary:
        return Failure(Step.SEND_EMAIL, ErrorCode.SMTP_TEMPORARY,
                       f"the SMTP server at {context.where} refused the recipients for now ({said}): "
                       "the email is tried again later")
    return Failure(Step.SEND_EMAIL, ErrorCode.RECIPIENT_REJECTED,
                   f"the SMTP server at {context.where} refused every recipient ({said}): check the addresses "
                   "and queue the email again")


def _message_refused(context: ProbeContext, code: int, reply: bytes) -> Failure:
    said = f"{code} {_text(reply)}"
    if 400 <= code < 500:
        return Failure(Step.SEND_EMAIL, ErrorCode.SMTP_TEMPORARY,
                       f"the SMTP server at {context.where} refused the email for now ({said}): it is tried "
                       "again later")
    return Failure(Step.SEND_EMAIL, ErrorCode.MESSAGE_REJECTED,
                   f"the SMTP server at {context.where} refused the email ({said}): check the server's content "
                   "and sending policies")


def _said_of(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{address!r}: {code} {_text(reply)}" for address, (code, reply) in refused.items())


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    text = " ".join(text.split())
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)[:200]


def _first_international(email: QueuedEmail) -> str:
    return next(address for address in [email.sender, *email.recipients] if not address.isascii())


# -- the message ---------------------------------------------------------------------------------------

def build_message(email: QueuedEmail, date: datetime, *, international: bool) -> bytes:
    """The email as sent: headers written here (the ``email`` package folds a long Message-ID
    into encoded words, which breaks threading), a text/plain UTF-8 body, CRLF line ends.
    ``international``: addresses go in UTF-8 as they are (SMTPUTF8, RFC 6532)."""
    lines = [f"From: {email.sender}", *_address_header("To", email.to), *_address_header("Cc", email.cc),
             _subject(email.subject), f"Date: {format_datetime(date.astimezone(timezone.utc))}",
             f"Message-ID: {email.message_id}"]
    if email.in_reply_to:
        lines.append(f"In-Reply-To: {email.in_reply_to}")
    if email.references:
        lines.append("References: " + "\r\n ".join(email.references))
    body, encoding = _body(email.body)
    lines += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"',
              f"Content-Transfer-Encoding: {encoding}"]
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8" if international else "ascii") + body


def _address_header(name: str, addresses: tuple[str, ...]) -> list[str]:
    return [f"{name}: " + ",\r\n ".join(addresses)] if addresses else []


def _subject(subject: str) -> str:
    if subject.isascii() and subject.isprintable():
        return f"Subject: {subject}"
    return "Subject: " + Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")


def _body(text: str) -> tuple[bytes, str]:
    lines = text.split("\n")
    if text.isascii() and all(len(line) <= _LONGEST_LINE for line in lines):
        return "".join(line + "\r\n" for line in lines).encode("ascii"), "7bit"
    encoded = quopri.encodestring(text.encode("utf-8"))
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n", "quoted-printable"
