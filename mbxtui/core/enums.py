"""The closed vocabularies of the domain (DOMAIN.md, "Records")."""

from enum import StrEnum


class Role(StrEnum):
    GLOBAL_ADMIN = "global_admin"
    SERVICE_ADMIN = "service_admin"
    SYSTEM_ADMIN = "system_admin"
    VIEWER = "viewer"


class ProfileType(StrEnum):
    IMAP_SMTP = "imap_smtp"
    POP3_SMTP = "pop3_smtp"
    EXCHANGE_ONLINE = "exchange_online"
    EXCHANGE_SERVER = "exchange_server"


EXCHANGE_TYPES = frozenset({ProfileType.EXCHANGE_ONLINE, ProfileType.EXCHANGE_SERVER})


class TlsMode(StrEnum):
    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


class IncomingAuth(StrEnum):
    MAILBOX = "mailbox"
    PROFILE = "profile"
    OAUTH2 = "oauth2"


class OutgoingAuth(StrEnum):
    MAILBOX = "mailbox"
    PROFILE = "profile"
    OAUTH2 = "oauth2"
    NONE = "none"


class OAuthProvider(StrEnum):
    """Who issues a profile's OAuth2 tokens (core/oauth)."""

    MICROSOFT365 = "microsoft365"
    GOOGLE = "google"
    GENERIC = "generic"


class OAuthCredential(StrEnum):
    """The kind of client credential a profile keeps in the keyring for its provider."""

    CLIENT_SECRET = "client_secret"
    CERTIFICATE = "certificate"
    SERVICE_ACCOUNT = "service_account"


class IncomingMethod(StrEnum):
    NONE = "none"
    SERVER_SIDE_SYNC = "server_side_sync"
    FORWARD_MAILBOX = "forward_mailbox"


class OutgoingMethod(StrEnum):
    NONE = "none"
    SERVER_SIDE_SYNC = "server_side_sync"


class ActMethod(StrEnum):
    NONE = "none"
    SERVER_SIDE_SYNC = "server_side_sync"


class Tracking(StrEnum):
    """R27: which incoming messages become activities for a user or a queue."""

    ALL = "all"
    REPLIES = "replies"
    NONE = "none"


class Approval(StrEnum):
    EMPTY = "empty"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class CheckStatus(StrEnum):
    """The status of one direction of a mailbox, as its last Test & Enable left it."""

    NOT_RUN = "not_run"
    SUCCESS = "success"
    FAILURE = "failure"


class AlertLevel(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFORMATION = "information"


class Regarding(StrEnum):
    USER = "user"
    QUEUE = "queue"
    FORWARD = "forward"


class View(StrEnum):
    """The mailbox views of R20."""

    ACTIVE = "active"
    ALL = "all"
    MINE = "mine"
    FORWARD = "forward"
    PENDING = "pending"
    FAILED = "failed"
    DISABLED = "disabled"
    STALE = "stale"  # R31: enabled for incoming, no successful sync for longer than the stale threshold


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


class JobOutcome(StrEnum):
    """How a job ended: every direction passed, one failed for good, or a retry is queued."""

    PASSED = "passed"
    FAILED = "failed"
    POSTPONED = "postponed"
    CANCELLED = "cancelled"


DIRECTIONS = ("incoming", "outgoing", "act")


class ActivityDirection(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class ActivityState(StrEnum):
    """Outgoing: pending, sending, sent, failed, uncertain (R29). Incoming: received; unresolved (a
    forward mailbox's message for nobody, R26); unparseable (kept with the reason, R25)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    RECEIVED = "received"
    UNRESOLVED = "unresolved"
    UNPARSEABLE = "unparseable"
