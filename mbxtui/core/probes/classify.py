"""What went wrong in a probe, as a ``Failure``: an error code (permanent or transient, R14) and a
sentence a person can act on.

The sentences quote what the server said, never what the probe sent: a password or token can
only appear in them if a server echoes it back, and the probe session removes it even then.
"""

from __future__ import annotations

import errno
import imaplib
import poplib
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass, field

from imapclient.exceptions import LoginError

from mbxtui.core.descriptors import limit_sentence, out_of_descriptors
from mbxtui.core.probes.base import Endpoint, ErrorCode, Failure, Step
from mbxtui.core.probes.tls import TooMuchData
from mbxtui.core.secret_value import CONCEALED, Secret

_BUSY_MARKERS = (
    "[UNAVAILABLE]",
    "[IN-USE]",
    "[SYS/TEMP]",
    "[LOGIN-DELAY]",
    "TOO MANY",
    "MAXIMUM NUMBER OF CONNECTIONS",
    "TRY AGAIN LATER",
    "SERVER BUSY",
)
# Dovecot answers a passdb "nologin" with [CONTACTADMIN] (IMAP) or [AUTH] (POP3) and its reason.
_DISABLED_MARKERS = ("[CONTACTADMIN]", "DISABLED", "SUSPENDED", "LOCKED", "NOLOGIN", "INACTIVE")
# The password was right but the login may not act for the mailbox (or the mailbox is unknown).
_AUTHORIZATION_MARKERS = ("[AUTHORIZATIONFAILED]", "AUTHORIZATION FAILED")

_UNKNOWN_AUTHORITY_CODES = frozenset({2, 18, 19, 20, 21})  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT...
_EXPIRED_CODE = 10
_NOT_YET_VALID_CODE = 9
_NAME_MISMATCH_CODES = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, ..._IP_ADDRESS_MISMATCH
_UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN})

_STEP_PHRASES = {
    Step.RESOLVE: "looking up the host name",
    Step.CONNECT: "connecting",
    Step.TLS: "the TLS handshake",
    Step.GREETING: "the greeting",
    Step.AUTHENTICATE: "the login",
    Step.OPEN_INBOX: "opening the inbox",
    Step.SEND: "sending the test message",
    Step.VERIFY_DELIVERY: "looking for the test message",
    Step.CHECK: "the checks",
    Step.FETCH: "reading new messages",
    Step.DELETE: "deleting processed messages",
    Step.SEND_EMAIL: "sending an email",
    Step.TOKEN: "fetching the OAuth2 token",
}
# What a mail server of Microsoft 365 wants an app to hold to log in as a mailbox, by protocol.
_APP_PERMISSIONS = {"IMAP": "IMAP.AccessAsApp", "POP3": "POP.AccessAsApp", "SMTP": "SMTP.SendAsApp"}
# The statuses of an OAuth2 error challenge (RFC 7628 3.2.2, RFC 6750 3.1) for a valid token that may
# not do this: the login would pass with more permissions.
_INSUFFICIENT_SCOPE = frozenset({"insufficient_scope", "403"})
# Exchange Online's "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for
# the Tenant / the Mailbox" (and 5.7.139's kin: basic authentication turned off).
_SMTP_AUTH_DISABLED_MARKERS = ("5.7.139", "SMTPCLIENTAUTHENTICATION IS DISABLED")


@dataclass(frozen=True)
class ProbeContext:
    """What a sentence may name: the protocol (``IMAP``, ``POP3``, ``SMTP``), the server, who logs
    in (``login``, empty when no login is made), the mailbox it acts for with profile credentials
    (``acting_for``) and what the secret is called."""

    protocol: str
    endpoint: Endpoint
    login: str = ""
    acting_for: str | None = None
    secret_name: str = "password"
    concealed: list[Secret] = field(default_factory=list)  # secrets (and their encodings) never to quote
    token_issued: bool = False  # the login's token was just issued by the profile's OAuth provider
    # What the server's OAuth2 error challenge said (RFC 7628: status, scope), filled in during the login.
    oauth_error: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"

    @property
    def who(self) -> str:
        return f"{self.login} acting for {self.acting_for}" if self.acting_for else self.login


# The secrets of the probe being classified, for ``_text``: a server's words are quoted by many
# helpers, and each must blank a secret out before it squeezes or shortens the text.
_classifying = threading.local()


def classify(exc: BaseException, step: Step, context: ProbeContext) -> Failure:
    _classifying.concealed = context.concealed
    try:
        code, message = _classify(exc, step, context)
    finally:
        _classifying.concealed = ()
    return Failure(step, code, message)


def timeout_failure(step: Step, context: ProbeContext) -> Failure:
    return Failure(step, *_timed_out(step, context))


def _timed_out(step: Step, context: ProbeContext) -> tuple[ErrorCode, str]:
    return (
        ErrorCode.TIMEOUT,
        f"timed out: {_STEP_PHRASES[step]} with the {context.protocol} server at {context.where} "
        f"did not finish within the profile's {context.endpoint.timeout:g} s timeout; check that "
        f"the server is up and that the port and TLS mode are right, or raise the timeout",
    )


def _classify(exc: BaseException, step: Step, context: ProbeContext) -> tuple[ErrorCode, str]:
    if out_of_descriptors(exc):  # this machine's limit, never the server's fault
        return ErrorCode.TOO_MANY_OPEN_FILES, limit_sentence()
    if isinstance(exc, socket.gaierror):
        return _name_lookup(exc, context)
    if _caused_by_timeout(exc):
        return _timed_out(step, context)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ErrorCode.TLS_CERTIFICATE, _certificate_sentence(exc, context)
    if isinstance(exc, ssl.SSLError) or (step == Step.TLS and isinstance(exc, ConnectionError)):
        return _tls_failure(exc, step, context)
    if isinstance(exc, ConnectionRefusedError):
        return (
            ErrorCode.CONNECTION_REFUSED,
            f"nothing accepts connections at {context.where} (connection refused): check the "
            f"host, the port and that the {context.protocol} server is running",
        )
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return (
            ErrorCode.CONNECTION_REFUSED,
            f"cannot reach {context.where} ({exc.strerror}): check the network and the host name",
        )
    if isinstance(exc, smtplib.SMTPException):
        return _smtp_failure(exc, step, context)
    if isinstance(exc, poplib.error_proto):
        return _pop3_failure(exc, step, context)
    if isinstance(exc, imaplib.IMAP4.error):
        return _imap_failure(exc, step, context)
    if isinstance(exc, OSError):
        return _connection_lost(step, context, _exception_text(exc))
    if isinstance(exc, TooMuchData):
        return (
            ErrorCode.PROTOCOL_ERROR,
            f"the {context.protocol} server at {context.where} {exc} during "
            f"{_STEP_PHRASES[step]}, far more than any answer a probe reads: check that port "
            f"{context.endpoint.port} is the server's {context.protocol} port, and the server's log",
        )
    if isinstance(exc, ValueError):  # includes UnicodeError: a reply the library could not parse
        return _protocol_error(exc, step, context)
    failure = internal_error(exc, step, context)
    return failure.code, failure.message


def internal_error(exc: BaseException, step: Step, context: ProbeContext) -> Failure:
    return Failure(
        step,
        ErrorCode.INTERNAL_ERROR,
        f"the {context.protocol} probe failed unexpectedly during {_STEP_PHRASES[step]} "
        f"({type(exc).__name__}: {_exception_text(exc)}): this is a bug in mbxtui, please report "
        f"it",
    )


def _name_lookup(exc: socket.gaierror, context: ProbeContext) -> tuple[ErrorCode, str]:
    host = context.endpoint.host
    if exc.errno == socket.EAI_AGAIN:
        return (
            ErrorCode.TIMEOUT,
            f"the name server gave no answer for {host!r} ({exc.strerror}): check this machine's "
            f"DNS settings",
        )
    return (
        ErrorCode.HOST_NOT_FOUND,
        f"cannot find the host {host!r} ({exc.strerror}): check the profile's "
        f"{context.protocol} host name",
    )


def _caused_by_timeout(exc: BaseException) -> bool:
    """smtplib turns a timed-out read into ``SMTPServerDisconnected``; the timeout stays in the
    exception's context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TimeoutError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _certificate_sentence(exc: ssl.SSLCertVerificationError, context: ProbeContext) -> str:
    if exc.verify_code in _UNKNOWN_AUTHORITY_CODES:
        return (
            f"the server's certificate at {context.where} is signed by an unknown authority "
            f"({exc.verify_message}): set the profile's CA file or fix the server's certificate"
        )
    if exc.verify_code in _NAME_MISMATCH_CODES:
        return (
            f"the server's certificate at {context.where} is for another host name, not "
            f"{context.endpoint.host!r}: use a host name the certificate names, or fix the "
            f"server's certificate"
        )
    if exc.verify_code == _EXPIRED_CODE:
        return (
            f"the server's certificate at {context.where} has expired: renew the certificate on "
            f"the server"
        )
    if exc.verify_code == _NOT_YET_VALID_CODE:
        return (
            f"the server's certificate at {context.where} is not valid yet: check the clocks of "
            f"this machine and of the server"
        )
    return (
        f"the server's certificate at {context.where} was refused ({exc.verify_message}): fix the "
        f"server's certificate or set the profile's CA file"
    )


def _tls_failure(exc: OSError, step: Step, context: ProbeContext) -> tuple[ErrorCode, str]:
    if step != Step.TLS:
        return _connection_lost(step, context, f"TLS error: {_exception_text(exc)}")
    if isinstance(exc, (ssl.SSLEOFError, ConnectionError)):
        reason = "the server closed the connection"
    else:
        reason = getattr(exc, "reason", None) or _exception_text(exc)
    return (
        ErrorCode.TLS_HANDSHAKE,
        f"the TLS handshake with {context.where} failed ({reason}): check that this port "
        f"expects TLS mode {context.endpoint.tls!r}",
    )


def _connection_lost(step: Step, context: ProbeContext, detail: str) -> tuple[ErrorCode, str]:
    return (
        ErrorCode.CONNECTION_RESET,
        f"the {context.protocol} server at {context.where} closed the connection during "
        f"{_STEP_PHRASES[step]} ({detail}): check the server is running and its log",
    )


def _protocol_error(exc: BaseException, step: Step, context: ProbeContext) -> tuple[ErrorCode, str]:
    text = (
        _reply_text(exc) if isinstance(exc, smtplib.SMTPResponseException) else _exception_text(exc)
    )
    cause = f"{type(exc).__qualname__}: {text}" if text else type(exc).__qualname__
    return (
        ErrorCode.PROTOCOL_ERROR,
        f"unexpected answer from {context.where} during {_STEP_PHRASES[step]} ({cause}): check "
        f"that port {context.endpoint.port} is the server's {context.protocol} port and that the "
        f"TLS mode is right",
    )


def _server_busy(context: ProbeContext, said: str) -> tuple[ErrorCode, str]:
    return (
        ErrorCode.SERVER_BUSY,
        f"the {context.protocol} server at {context.where} is busy (server said: {said}): try "
        f"again later, or raise the server's connection limits",
    )


def _login_refused(context: ProbeContext, said: str) -> tuple[ErrorCode, str]:
    challenge = context.oauth_error
    wanted = challenge.get("scope")
    if challenge and not context.token_issued:
        # A token set by hand: what the server's error challenge says (RFC 7628 3.2.2) decides.
        if challenge.get("status") in _INSUFFICIENT_SCOPE:
            return (
                ErrorCode.OAUTH_PERMISSION_MISSING,
                f"the {context.protocol} server at {context.where} accepted the OAuth2 token of "
                f"{context.login!r} but it lacks the scope {wanted or 'the server needs'} (server said: {said}; "
                f"status {challenge.get('status', '?')}): get a token granted that scope, then set it again",
            )
        return (
            ErrorCode.AUTH_FAILED,
            f"the {context.protocol} server at {context.where} refused the OAuth2 token of {context.login!r} "
            f"as invalid or expired (server said: {said}; status {challenge.get('status', '?')}"
            f"{f', scope {wanted}' if wanted else ''}): set a new token granted that scope, or let the profile "
            f"fetch its own (--oauth-provider)",
        )
    if context.token_issued:
        # The provider accepted the client and issued the token a moment ago: what the server
        # refuses is what the token may do, or whom it may act for.
        permission = _APP_PERMISSIONS.get(context.protocol, "mail")
        if challenge:  # what the server's error challenge said, as the server's own words
            said = "; ".join([said] + [f"{key} {challenge[key]}" for key in ("status", "scope") if key in challenge])
        return (
            ErrorCode.OAUTH_PERMISSION_MISSING,
            f"the {context.protocol} server at {context.where} refused the OAuth2 token the provider "
            f"issued for {context.login!r} (server said: {said}): give the app the {permission} "
            f"permission with admin consent and its service principal access to this mailbox "
            f"(Microsoft 365: Add-MailboxPermission; Google: domain-wide delegation of the scope)",
        )
    if _has_marker(said, _DISABLED_MARKERS):
        account = context.acting_for or context.login
        return (
            ErrorCode.ACCOUNT_DISABLED,
            f"the {context.protocol} server says the account {account!r} is disabled "
            f"(server said: {said}): enable it on the mail server",
        )
    if context.acting_for and _has_marker(said, _AUTHORIZATION_MARKERS):
        return (
            ErrorCode.AUTH_FAILED,
            f"the {context.protocol} server accepted {context.login!r} but refused to let it act "
            f"for {context.acting_for!r} (server said: {said}): check that this mailbox exists "
            f"on the server and that the profile's user may act for it",
        )
    return (
        ErrorCode.AUTH_FAILED,
        f"the {context.protocol} server refused the login of {context.who!r} (server said: "
        f"{said}): check the user name and the {context.secret_name}",
    )


def _inbox_unavailable(context: ProbeContext, said: str) -> tuple[ErrorCode, str]:
    return (
        ErrorCode.INBOX_UNAVAILABLE,
        f"logged in, but the inbox of {context.acting_for or context.login!r} cannot be opened "
        f"(server said: {said}): check on the mail server that the mailbox exists and is not "
        f"locked",
    )


def _imap_failure(
    exc: imaplib.IMAP4.error, step: Step, context: ProbeContext
) -> tuple[ErrorCode, str]:
    if isinstance(exc, LoginError) and isinstance(exc.__context__, imaplib.IMAP4.abort):
        exc = exc.__context__  # imapclient reports a connection lost during the login this way
    said = _server_text(exc)
    if isinstance(exc, imaplib.IMAP4.abort):
        if "unexpected" in said or "unterminated" in said:
            return _protocol_error(exc, step, context)
        if said.startswith("socket error"):
            return _connection_lost(step, context, said)
    if _has_marker(said, _BUSY_MARKERS):
        return _server_busy(context, said)
    if isinstance(exc, imaplib.IMAP4.abort):
        return _connection_lost(step, context, f"server said: {said}")
    if isinstance(exc, LoginError) and step == Step.AUTHENTICATE:
        return _login_refused(context, said)
    if step == Step.OPEN_INBOX:
        return _inbox_unavailable(context, said)
    return _protocol_error(exc, step, context)


def _pop3_failure(
    exc: poplib.error_proto, step: Step, context: ProbeContext
) -> tuple[ErrorCode, str]:
    said = _server_text(exc)
    if said == "-ERR EOF":  # what poplib raises when the connection ends, not a server reply
        return _connection_lost(step, context, "end of connection")
    if _has_marker(said, _BUSY_MARKERS):
        return _server_busy(context, said)
    if step == Step.AUTHENTICATE and said.startswith("-ERR"):
        return _login_refused(context, said)
    if step == Step.OPEN_INBOX and said.startswith("-ERR"):
        return _inbox_unavailable(context, said)
    return _protocol_error(exc, step, context)


def starttls_unavailable_sentence(context: ProbeContext) -> str:
    return (
        f"the {context.protocol} server at {context.where} does not offer STARTTLS, so nothing "
        f"was sent: enable STARTTLS on the server, use the implicit TLS port, or (only on a "
        f"trusted network) set the profile's TLS mode to none"
    )


def starttls_refused_sentence(context: ProbeContext, refusal: Exception) -> str:
    if isinstance(refusal, smtplib.SMTPResponseException):
        said = _reply_text(refusal)
    else:
        said = _exception_text(refusal)
    return (
        f"the {context.protocol} server at {context.where} offers STARTTLS but refused it "
        f"(server said: {said}), so nothing was sent: check the server's TLS settings and "
        f"log, use the implicit TLS port, or (only on a trusted network) set the profile's TLS "
        f"mode to none"
    )


def _smtp_failure(
    exc: smtplib.SMTPException, step: Step, context: ProbeContext
) -> tuple[ErrorCode, str]:
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return _connection_lost(step, context, _exception_text(exc))
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipient_refused(exc, context)
    if not isinstance(exc, smtplib.SMTPResponseException):
        return _protocol_error(exc, step, context)

    code = exc.smtp_code
    said = _reply_text(exc)
    if code == 421:
        return _server_busy(context, said)
    if isinstance(exc, smtplib.SMTPConnectError) and code != -1 and 400 <= code < 500:
        return _server_busy(context, said)
    if 400 <= code < 500:
        return (
            ErrorCode.SMTP_TEMPORARY,
            f"the SMTP server at {context.where} temporarily refused {_STEP_PHRASES[step]} "
            f"({said}): it may accept it later",
        )
    if code == 530:  # "authentication required", or "must issue STARTTLS first"
        if not context.login:
            return (
                ErrorCode.NO_CREDENTIALS,
                f"the SMTP server at {context.where} requires a login before sending ({said}): "
                f"set the profile's outgoing authentication",
            )
        return (
            ErrorCode.AUTH_UNAVAILABLE,
            f"the SMTP server at {context.where} still requires authentication ({said}): check "
            f"the profile's authentication and TLS settings",
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError) and _has_marker(said, _SMTP_AUTH_DISABLED_MARKERS):
        return _smtp_auth_disabled(context, said)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if code in (504, 534, 538):
            return (
                ErrorCode.AUTH_UNAVAILABLE,
                f"the SMTP server at {context.where} does not accept this way of logging in "
                f"({said}): check the profile's authentication and TLS settings",
            )
        return _login_refused(context, said)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        allowed = f"{context.who!r} may send as" if context.who else "the server accepts mail from"
        return (
            ErrorCode.SENDER_REJECTED,
            f"the SMTP server refused the sender {_text(exc.sender)!r} ({said}): check that "
            f"{allowed} this address",
        )
    if isinstance(exc, smtplib.SMTPDataError):
        return (
            ErrorCode.MESSAGE_REJECTED,
            f"the SMTP server refused the test message ({said}): check the server's content and "
            f"sending policies",
        )
    if isinstance(exc, smtplib.SMTPConnectError):
        if code == -1:
            return _protocol_error(exc, step, context)
        return (
            ErrorCode.PROTOCOL_ERROR,
            f"the SMTP server at {context.where} refused the session ({said}): check the "
            f"server's log and its client restrictions",
        )
    return _protocol_error(exc, step, context)


def _smtp_auth_disabled(context: ProbeContext, said: str) -> tuple[ErrorCode, str]:
    """Exchange Online refuses every login, whatever the credentials, where SMTP AUTH is off."""
    mailbox = context.acting_for or context.login
    if "MAILBOX" in said.upper():
        where = (f"for the mailbox {mailbox!r}: turn on Authenticated SMTP in the Microsoft 365 admin "
                 f"center > Users > Active users > {mailbox} > Mail > Manage email apps, or "
                 f"`Set-CASMailbox -Identity {mailbox} -SmtpClientAuthenticationDisabled $false`")
    else:
        where = ("for the tenant: turn it on in the Microsoft 365 admin center > Settings > Org settings > "
                 "Mail > Authenticated SMTP, or `Set-TransportConfig -SmtpClientAuthenticationDisabled "
                 "$false` (or for this mailbox alone: `Set-CASMailbox -Identity "
                 f"{mailbox} -SmtpClientAuthenticationDisabled $false`)")
    return (
        ErrorCode.SMTP_AUTH_DISABLED,
        f"the SMTP server at {context.where} says SMTP AUTH is disabled (server said: {said}), so no "
        f"login can pass: it is off {where}",
    )


def _recipient_refused(
    exc: smtplib.SMTPRecipientsRefused, context: ProbeContext
) -> tuple[ErrorCode, str]:
    recipient, (code, reply) = next(iter(exc.recipients.items()))
    said = f"{code} {_text(reply)}"
    if code == 421:
        return _server_busy(context, said)
    if 400 <= code < 500:
        return (
            ErrorCode.SMTP_TEMPORARY,
            f"the SMTP server temporarily refused the recipient {_text(recipient)!r} ({said}): "
            f"it may accept it later",
        )
    return (
        ErrorCode.RECIPIENT_REJECTED,
        f"the SMTP server refused the recipient {_text(recipient)!r} ({said}): check that the "
        f"mailbox's email address exists on this mail system",
    )


def _reply_text(exc: smtplib.SMTPResponseException) -> str:
    """An SMTP reply as the server sent it; smtplib uses code -1 for a line with no code."""
    text = _text(exc.smtp_error)
    return text if exc.smtp_code == -1 else f"{exc.smtp_code} {text}"


def _server_text(exc: BaseException) -> str:
    """What the server said, without the library's prefix (imapclient adds ``login failed: ``)."""
    text = _exception_text(exc)
    head, separator, tail = text.partition(" failed: ")
    if separator and " " not in head:
        return tail
    return text


def _exception_text(exc: BaseException) -> str:
    if len(exc.args) == 1:
        return "" if exc.args[0] is None else _text(exc.args[0])
    return _text(str(exc))


def _text(value: object, limit: int = 200) -> str:
    """What a server said, on one line and shortened; its control characters (a terminal escape
    sequence, say) are shown as escapes, never passed on to a terminal."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    for secret in getattr(_classifying, "concealed", ()):  # before any squeezing or cutting
        if secret:
            text = text.replace(secret.reveal(), CONCEALED)
    text = "".join(_visible(character) for character in " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _visible(character: str) -> str:
    if character.isprintable():
        return character
    return repr(character)[1:-1]


def _has_marker(said: str, markers: tuple[str, ...]) -> bool:
    upper = said.upper()
    return any(marker in upper for marker in markers)
