"""The IMAP probe (R10): connect, negotiate TLS as the profile says, log in, open INBOX read-only
and, after an outgoing test, look for the test message in it."""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import socket
import time

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mbxtui.core.probes.base import Credentials, Endpoint, ErrorCode, ProbeResult, Step
from mbxtui.core.probes.session import ProbeSession, StepFailed, oauth_mechanism
from mbxtui.core.probes.tls import MOST_BYTES_RECEIVED, TooMuchData, describe_tls

_POLL_INTERVAL = 0.2
_GREETING_PREFIX = re.compile(r"^\*\s+OK\s+(\[[^\]]*\]\s*)?", re.IGNORECASE)


def probe(
    endpoint: Endpoint,
    credentials: Credentials,
    *,
    verify_message_id: str | None = None,
    verify_wait: float = 5.0,
    connection_only: bool = False,
) -> ProbeResult:
    """Steps: resolve, connect, tls, greeting, authenticate, open_inbox and, when
    ``verify_message_id`` is given, verify_delivery (searching INBOX for that Message-ID for up to
    ``verify_wait`` seconds). ``endpoint.timeout`` bounds the whole probe. With
    ``connection_only`` and credentials ``none`` it stops after TLS (checking a profile's server
    without an account)."""
    session = ProbeSession("imap", endpoint, credentials, login_required=not connection_only)
    return session.run(lambda: _converse(session, verify_message_id, verify_wait))


class _IMAP4OnSocket(imaplib.IMAP4):
    def __init__(self, sock: socket.socket, host: str, port: int) -> None:
        self._connected_socket = sock
        super().__init__(host, port, timeout=sock.gettimeout())

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return self._connected_socket

    def read(self, size: int) -> bytes:
        # imaplib reads a literal ("{size}" then that many bytes) into a buffer of the announced
        # size, allocated before a byte arrives.
        if size > MOST_BYTES_RECEIVED:
            raise TooMuchData(f"announced {size} bytes of data")
        return super().read(size)


class _IMAPClientOnSocket(IMAPClient):
    """An IMAPClient over a socket the probe has already connected (and, for implicit TLS,
    encrypted), so that resolving, connecting and the handshake are steps of their own."""

    def __init__(self, sock: socket.socket, endpoint: Endpoint) -> None:
        self._connected_socket = sock
        super().__init__(
            endpoint.host,
            endpoint.port,
            ssl=endpoint.tls == "implicit",
            timeout=sock.gettimeout(),
        )
        # imapclient turns imaplib's debug output on and sends every line to a logger; at debug
        # level off that still costs three logging calls for every line the server sends.
        if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
            self._imap.debug = 0

    def _create_IMAP4(self) -> imaplib.IMAP4:
        return _IMAP4OnSocket(self._connected_socket, self.host, self.port)


def _converse(session: ProbeSession, verify_message_id: str | None, verify_wait: float) -> None:
    client = open_session(session)
    try:
        if session.credentials.kind == "none":
            return
        with session.step(Step.OPEN_INBOX) as note:
            selected = client.select_folder("INBOX", readonly=True)
            note.detail = f"{selected[b'EXISTS']} messages"
        if verify_message_id:
            with session.step(Step.VERIFY_DELIVERY) as note:
                found = _search_until_found(client, verify_message_id, verify_wait)
                if not found:
                    raise StepFailed(
                        ErrorCode.DELIVERY_NOT_CONFIRMED,
                        f"the test message {verify_message_id} did not arrive in this mailbox's "
                        f"inbox within {verify_wait:g} s: check that the outgoing server delivers "
                        f"mail to this address, then test again",
                    )
                session.result.message_id = verify_message_id
                note.detail = f"found as UID {found[0]}"
    finally:
        close_session(client, session)


def open_session(session: ProbeSession) -> IMAPClient:
    """Connect, read the greeting, start TLS as the profile says and log in (unless the
    credentials are ``none``): the steps every IMAP conversation of the probe and of processing
    starts with. The caller ends it with ``close_session``."""
    sock = session.open_connection()
    with session.step(Step.GREETING) as note:
        client = _IMAPClientOnSocket(sock, session.endpoint)
        note.detail = _GREETING_PREFIX.sub("", client.welcome.decode("utf-8", "replace"))
    try:
        if session.endpoint.tls == "starttls":
            with session.step(Step.TLS) as note:
                if not client.has_capability("STARTTLS"):
                    raise session.starttls_unavailable()
                try:
                    client.starttls(session.tls_context())
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error as refused:  # NO or BAD: TLS never started
                    raise session.starttls_refused(refused) from refused
                session.use_connection(client.socket())
                note.detail = describe_tls(client.socket())
        if session.credentials.kind != "none":
            with session.step(Step.AUTHENTICATE) as note:
                _log_in(client, session)
                note.detail = f"as {session.context.who}"
    except BaseException:
        close_session(client, session)
        raise
    return client


def _log_in(client: IMAPClient, session: ProbeSession) -> None:
    credentials = session.credentials
    capabilities = client.capabilities()
    offered = [c.decode()[5:].upper() for c in capabilities if c.startswith(b"AUTH=")]
    if credentials.kind == "oauth2":
        mechanism = oauth_mechanism(offered)
        if mechanism is None:
            raise session.auth_unavailable(" ".join(offered))
        session.result.mechanism = mechanism
        _oauth_login(client, session, mechanism)
        return
    if "PLAIN" not in offered:
        raise session.auth_unavailable(" ".join(offered))
    # imapclient builds the SASL string itself; building the same one here registers its base64
    # form with the session, so a server that quotes it back never gets it into a message.
    session.sasl_plain()
    # AUTHENTICATE PLAIN sends UTF-8, where LOGIN fails on non-ASCII passwords.
    client.plain_login(
        credentials.username,
        credentials.secret.reveal(),
        authorization_identity=credentials.authorization_identity,
    )


def _oauth_login(client: IMAPClient, session: ProbeSession, mechanism: str) -> None:
    """``AUTHENTICATE XOAUTH2`` or ``OAUTHBEARER``: a second challenge is the server's JSON error
    (kept for the refusal's sentence), answered as each mechanism wants to end the exchange."""
    response = base64.b64decode(session.sasl_oauth(mechanism).reveal())
    challenges = 0

    def answer(challenge: bytes) -> bytes:
        nonlocal challenges
        challenges += 1
        if challenges == 1:
            return response
        session.note_oauth_challenge(challenge)
        return b"\x01" if mechanism == "OAUTHBEARER" else b""

    try:
        client._command_and_check("authenticate", mechanism, answer)
    except imaplib.IMAP4.error as refused:  # as imapclient's own oauth2_login reports it
        raise LoginError(str(refused)) from refused


def _search_until_found(client: IMAPClient, message_id: str, wait: float) -> list[int]:
    gives_up_at = time.perf_counter() + wait
    while True:
        client.noop()  # lets the server report messages delivered since the last look
        found = client.search(["HEADER", "Message-ID", message_id])
        left = gives_up_at - time.perf_counter()
        if found or left <= 0:
            return found
        time.sleep(min(_POLL_INTERVAL, left))


def close_session(client: IMAPClient, session: ProbeSession) -> None:
    """Log out when the server still follows the conversation; closing is best effort, the
    session closes the socket anyway."""
    try:
        if not session.may_say_goodbye:
            client.shutdown()
        else:
            client.logout()
    except Exception:
        pass
