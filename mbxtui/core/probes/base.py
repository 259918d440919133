"""Types shared by the protocol probes: what to connect to, with which credentials, and what happened.

A probe never raises for a server's behaviour: every outcome is a ``ProbeResult`` whose steps say
what was done, how long each took and, on failure, which step failed, with a classified
``Failure`` (error code, permanent or transient, and a sentence a person can act on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from mbxtui.core.secret_value import Secret, as_secret


class Step(StrEnum):
    RESOLVE = "resolve"
    CONNECT = "connect"
    TLS = "tls"
    GREETING = "greeting"
    AUTHENTICATE = "authenticate"
    OPEN_INBOX = "open_inbox"
    SEND = "send"
    VERIFY_DELIVERY = "verify_delivery"
    CHECK = "check"  # rule checks made before any network step (R9, R10, R12)
    FETCH = "fetch"  # processing: reading new messages (R24, R25)
    DELETE = "delete"  # processing: removing processed messages (R28)
    SEND_EMAIL = "send_email"  # processing: sending an outgoing email (R29)
    TOKEN = "oauth_token"  # fetching the profile's OAuth2 token from its provider, before connecting


class ErrorCode(StrEnum):
    MAILBOX_INACTIVE = "MAILBOX_INACTIVE"
    NO_PROFILE = "NO_PROFILE"
    PROFILE_INACTIVE = "PROFILE_INACTIVE"
    NOT_APPROVED = "NOT_APPROVED"
    NO_CREDENTIALS = "NO_CREDENTIALS"
    HOST_NOT_FOUND = "HOST_NOT_FOUND"
    CONNECTION_REFUSED = "CONNECTION_REFUSED"
    CONNECTION_RESET = "CONNECTION_RESET"
    TIMEOUT = "TIMEOUT"
    TLS_CERTIFICATE = "TLS_CERTIFICATE"
    TLS_HANDSHAKE = "TLS_HANDSHAKE"
    STARTTLS_UNAVAILABLE = "STARTTLS_UNAVAILABLE"
    AUTH_FAILED = "AUTH_FAILED"
    AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    INBOX_UNAVAILABLE = "INBOX_UNAVAILABLE"
    RECIPIENT_REJECTED = "RECIPIENT_REJECTED"
    SENDER_REJECTED = "SENDER_REJECTED"
    MESSAGE_REJECTED = "MESSAGE_REJECTED"
    SERVER_BUSY = "SERVER_BUSY"
    SMTP_TEMPORARY = "SMTP_TEMPORARY"
    PROTOCOL_ERROR = "PROTOCOL_ERROR"
    ACT_UNSUPPORTED = "ACT_UNSUPPORTED"
    NO_FORWARD_MAILBOX = "NO_FORWARD_MAILBOX"
    DELIVERY_NOT_CONFIRMED = "DELIVERY_NOT_CONFIRMED"
    OAUTH_CLIENT_REJECTED = "OAUTH_CLIENT_REJECTED"  # the provider refused the client's credential
    OAUTH_PROVIDER_UNREACHABLE = "OAUTH_PROVIDER_UNREACHABLE"  # no token: refused, timed out, 5xx
    OAUTH_PERMISSION_MISSING = "OAUTH_PERMISSION_MISSING"  # a freshly issued token refused by the mail server
    OAUTH_REAUTHORIZE = "OAUTH_REAUTHORIZE"  # a mailbox's own refresh token expired or was revoked
    OAUTH_CONSENT_MISSING = "OAUTH_CONSENT_MISSING"  # the provider: no admin consent for the app (AADSTS65001)
    SMTP_AUTH_DISABLED = "SMTP_AUTH_DISABLED"  # 5.7.139: SMTP AUTH turned off for the tenant or the mailbox
    TOO_MANY_OPEN_FILES = "TOO_MANY_OPEN_FILES"  # mbxtui's own process or machine ran out of descriptors
    KEYRING_UNAVAILABLE = "KEYRING_UNAVAILABLE"  # the keyring could not be read (gone, locked, re-keyed)
    INTERNAL_ERROR = "INTERNAL_ERROR"


# R14: everything not listed here is permanent. A test message not yet seen in the inbox may only
# be slow to arrive, so it is retried like a busy server.
TRANSIENT_CODES = frozenset(
    {
        ErrorCode.CONNECTION_REFUSED,
        ErrorCode.CONNECTION_RESET,
        ErrorCode.TIMEOUT,
        ErrorCode.SERVER_BUSY,
        ErrorCode.SMTP_TEMPORARY,
        ErrorCode.DELIVERY_NOT_CONFIRMED,
        ErrorCode.OAUTH_PROVIDER_UNREACHABLE,
        ErrorCode.TOO_MANY_OPEN_FILES,
        ErrorCode.KEYRING_UNAVAILABLE,
    }
)


def is_transient(code: ErrorCode) -> bool:
    return code in TRANSIENT_CODES


@dataclass(frozen=True)
class Endpoint:
    """One server to reach: ``tls`` is ``implicit``, ``starttls`` or ``none``; ``timeout`` in
    seconds bounds the whole probe; ``ca_file`` replaces the system CAs when set."""

    host: str
    port: int
    tls: str
    timeout: float = 30.0
    ca_file: str | None = None
    # Connect to this IP address instead of looking ``host`` up (which still names the certificate):
    # settings detection resolves names through the DNS server it was told to ask.
    address: str | None = None


@dataclass(frozen=True)
class Credentials:
    """``kind`` is ``password``, ``oauth2`` (``secret`` is the access token) or ``none``.

    ``authorization_identity`` is set when profile credentials act for a mailbox: the probe logs
    in as ``username`` (the profile's) on behalf of this identity (IMAP/SMTP ``AUTH PLAIN``
    authzid; POP3 ``AUTH PLAIN`` too). ``secret`` is kept as a ``Secret`` (text given is wrapped),
    revealed only where a probe sends it.
    """

    kind: str
    username: str = ""
    secret: Secret = field(default_factory=lambda: Secret(""), repr=False, compare=False)
    authorization_identity: str | None = None
    token_issued: bool = False  # the token was just issued by the profile's OAuth provider (core/oauth)
    # Called when the server refuses an issued token: the token cache forgets it, so the next attempt
    # carries a new one (with the permissions granted since).
    on_token_refused: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "secret", as_secret(self.secret))


@dataclass(frozen=True)
class StepResult:
    step: Step
    ok: bool
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Failure:
    step: Step
    code: ErrorCode
    message: str

    @property
    def transient(self) -> bool:
        return is_transient(self.code)


@dataclass
class ProbeResult:
    protocol: str  # imap, pop3, smtp, rules
    steps: list[StepResult] = field(default_factory=list)
    failure: Failure | None = None
    message_id: str | None = None  # the test message sent (SMTP) or found (IMAP verify)
    mechanism: str | None = None  # the SASL mechanism of the login (XOAUTH2, OAUTHBEARER, PLAIN), once tried

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)
