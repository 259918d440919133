"""The mail system behind the sandbox servers: its accounts, their passwords and their inboxes,
in memory.

Every address of the demo domain is a mailbox (so mailboxes added in the console work too), and
every mailbox's password is ``MAILBOX_PASSWORD``. One service account may act for any mailbox
(profile credentials, ``AUTH PLAIN`` with an authorization identity); one OAuth2 access token, set
by hand on the "Exchange Online" profile, is accepted for any mailbox (``XOAUTH2``), and so are the
tokens the demo's identity provider issues, for the mailboxes its app was granted (``oauth``).
"""

from __future__ import annotations

import hmac
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.message import Message as ParsedHeaders
from email.parser import BytesHeaderParser
from email.utils import formatdate

from mbxtui.demo.identity_provider import TokenRegistry

DOMAIN = "fernhill.example"
MAILBOX_PASSWORD = "fernhill-demo"
SERVICE_LOGIN = f"svc-mailsync@{DOMAIN}"
SERVICE_PASSWORD = "sync-service-demo"
OAUTH2_TOKEN = "demo-oauth2-access-token"

MAX_MESSAGES_PER_INBOX = 500  # the oldest go first beyond this
OUTSIDE_KEPT = 200  # mail sent to addresses outside the sandbox, the newest kept
MAX_PRELOADED_MESSAGES = 24
PRELOADED_ARRIVAL = 1704067200.0  # 2024-01-01 UTC: before any demo mailbox was enabled

_PRELOADED_SUBJECTS = (
    "Weekly operations summary",
    "Shift roster for next week",
    "Re: Delivery schedule for the Leeds depot",
    "Invoice 2024-0412",
    "Fleet maintenance window",
    "Minutes of Monday's planning meeting",
    "Customer feedback digest",
    "Reminder: timesheets due Friday",
)


@dataclass
class StoredMessage:
    uid: int
    data: bytes
    headers: ParsedHeaders = field(repr=False)
    arrived: float = 0.0  # the IMAP INTERNALDATE, as time.time()
    flags: set[str] = field(default_factory=set)

    def header_contains(self, name: str, text: str) -> bool:
        """IMAP SEARCH HEADER: a case-insensitive substring of any header of that name."""
        wanted = text.lower()
        return any(wanted in str(value).lower() for value in self.headers.get_all(name, []))


@dataclass
class Inbox:
    uid_validity: int
    messages: list[StoredMessage] = field(default_factory=list)
    next_uid: int = 1


class MailSystem:
    """Thread-safe: the servers run on one event loop, but tests and tools may read from others."""

    def __init__(self, domain: str = DOMAIN) -> None:
        self.domain = domain.lower()
        self._inboxes: dict[str, Inbox] = {}
        self._lock = threading.Lock()
        self._uid_validity = int(time.time())
        self._parser = BytesHeaderParser(policy=policy.default)  # headers decoded, for SEARCH
        self.sent_outside: deque[tuple[str, bytes]] = deque(maxlen=OUTSIDE_KEPT)
        self.oauth = TokenRegistry(self.domain)

    # -- accounts --

    def is_mailbox(self, address: str) -> bool:
        local, at, domain = address.strip().lower().rpartition("@")
        return bool(at and local and domain == self.domain) and address.lower() != SERVICE_LOGIN

    def check_password(self, login: str, password: str) -> bool:
        login = login.strip().lower()
        if login == SERVICE_LOGIN:
            return _same(password, SERVICE_PASSWORD)
        return self.is_mailbox(login) and _same(password, MAILBOX_PASSWORD)

    def check_token(self, address: str, token: str) -> bool:
        if not self.is_mailbox(address):
            return False
        return _same(token, OAUTH2_TOKEN) or self.oauth.allows(token, address)

    def may_act_for(self, login: str, mailbox: str) -> bool:
        """Whether ``login`` (already authenticated) may work in ``mailbox``."""
        login, mailbox = login.strip().lower(), mailbox.strip().lower()
        if login == mailbox:
            return self.is_mailbox(mailbox)
        return login == SERVICE_LOGIN and self.is_mailbox(mailbox)

    # -- inboxes --

    def deliver(self, address: str, data: bytes) -> None:
        address = address.strip().lower()
        headers = self._parser.parsebytes(data)
        with self._lock:
            inbox = self._inbox(address)
            self._append(inbox, data, headers, time.time())

    def send_outside(self, address: str, data: bytes) -> None:
        """Mail for an address outside the sandbox: kept (the last ``OUTSIDE_KEPT``), never sent."""
        with self._lock:
            self.sent_outside.append((address.strip(), data))

    def messages(self, address: str) -> tuple[int, list[StoredMessage]]:
        """The UID validity and the messages of ``address``'s inbox, oldest first."""
        with self._lock:
            inbox = self._inbox(address.strip().lower())
            return inbox.uid_validity, list(inbox.messages)

    def next_uid(self, address: str) -> int:
        with self._lock:
            return self._inbox(address.strip().lower()).next_uid

    def flag(self, address: str, uids: set[int], flags: set[str], *, add: bool = True) -> None:
        with self._lock:
            for message in self._inbox(address.strip().lower()).messages:
                if message.uid in uids:
                    message.flags = message.flags | flags if add else message.flags - flags

    def remove(self, address: str, uids: set[int]) -> None:
        """Delete these messages of ``address``'s inbox (POP3 QUIT after DELE)."""
        with self._lock:
            inbox = self._inbox(address.strip().lower())
            inbox.messages = [m for m in inbox.messages if m.uid not in uids]

    def expunge(self, address: str) -> list[int]:
        """Remove the messages flagged \\Deleted; returns their sequence numbers as EXPUNGE
        reports them (each counted after the removals before it)."""
        with self._lock:
            inbox = self._inbox(address.strip().lower())
            reported, kept = [], []
            for number, message in enumerate(inbox.messages, start=1):
                if "\\Deleted" in message.flags:
                    reported.append(number - len(reported))
                else:
                    kept.append(message)
            inbox.messages = kept
            return reported

    def _inbox(self, address: str) -> Inbox:
        inbox = self._inboxes.get(address)
        if inbox is None:
            inbox = self._inboxes[address] = Inbox(self._uid_validity)
            # Preloaded mail arrived before the demo's mailboxes were enabled: processing starts after it.
            for data in _preloaded_messages(address):
                self._append(inbox, data, self._parser.parsebytes(data), PRELOADED_ARRIVAL)
        return inbox

    @staticmethod
    def _append(inbox: Inbox, data: bytes, headers: ParsedHeaders, arrived: float) -> None:
        inbox.messages.append(StoredMessage(inbox.next_uid, data, headers, arrived))
        inbox.next_uid += 1
        del inbox.messages[:-MAX_MESSAGES_PER_INBOX]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _preloaded_messages(address: str) -> list[bytes]:
    """A few ordinary messages, so inboxes are not all empty; the same ones on every start, Date and
    Message-ID included, dated before any demo mailbox was enabled (processing reads none of them,
    and one that it read once would be the same activity on the next start)."""
    digest = zlib.crc32(address.encode("utf-8"))
    count = digest % (MAX_PRELOADED_MESSAGES + 1)
    domain = address.rpartition("@")[2]
    messages = []
    for number in range(count):
        subject = _PRELOADED_SUBJECTS[number % len(_PRELOADED_SUBJECTS)]
        messages.append(
            f"From: Fernhill Operations <operations@{domain}>\r\n"
            f"To: {address}\r\n"
            f"Subject: {subject}\r\n"
            f"Date: {formatdate(PRELOADED_ARRIVAL - (count - number) * 3600)}\r\n"
            f"Message-ID: <preloaded.{digest:08x}.{number}@{domain}>\r\n"
            "\r\n"
            f"{subject}.\r\n".encode("utf-8")
        )
    return messages
