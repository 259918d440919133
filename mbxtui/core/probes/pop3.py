"""The POP3 probe (R10): connect, negotiate TLS as the profile says, log in and STAT the
maildrop."""

from __future__ import annotations

import poplib
import socket
from collections.abc import Callable

from mbxtui.core.probes.base import Credentials, Endpoint, ProbeResult, Step
from mbxtui.core.probes.session import ProbeSession, oauth_mechanism
from mbxtui.core.probes.tls import describe_tls
from mbxtui.core.secret_value import Secret

Capabilities = dict[str, list[str]]
MAX_COMMAND_OCTETS = 255  # RFC 2449 4: a command line, CRLF included


def probe(endpoint: Endpoint, credentials: Credentials, *, connection_only: bool = False) -> ProbeResult:
    """Steps: resolve, connect, tls, greeting, authenticate, open_inbox (STAT).
    ``endpoint.timeout`` bounds the whole probe. With ``connection_only`` and credentials ``none``
    it stops after TLS."""
    session = ProbeSession("pop3", endpoint, credentials, login_required=not connection_only)
    return session.run(lambda: _converse(session))


class _POP3OnSocket(poplib.POP3):
    """A POP3 client over a socket the probe has already connected (and, for implicit TLS,
    encrypted), so that resolving, connecting and the handshake are steps of their own."""

    def __init__(self, sock: socket.socket, host: str, port: int) -> None:
        self._connected_socket = sock
        super().__init__(host, port, timeout=sock.gettimeout())

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._connected_socket


def _converse(session: ProbeSession) -> None:
    pop = open_session(session)
    try:
        if session.credentials.kind == "none":
            return
        with session.step(Step.OPEN_INBOX) as note:
            count, _ = pop.stat()
            note.detail = f"{count} messages"
    finally:
        close_session(pop, session)


def open_session(session: ProbeSession) -> poplib.POP3:
    """Connect, read the greeting, start TLS as the profile says and log in (unless the
    credentials are ``none``): the steps every POP3 conversation of the probe and of processing
    starts with. The caller ends it with ``close_session``."""
    sock = session.open_connection()
    with session.step(Step.GREETING) as note:
        pop = _POP3OnSocket(sock, session.endpoint.host, session.endpoint.port)
        note.detail = pop.getwelcome().decode("utf-8", "replace").removeprefix("+OK").strip()
        capabilities = _capabilities(pop)
    try:
        if session.endpoint.tls == "starttls":
            with session.step(Step.TLS) as note:
                if capabilities is None or "STLS" not in capabilities:
                    raise session.starttls_unavailable()
                try:
                    pop.stls(session.tls_context())
                except poplib.error_proto as refused:
                    if not isinstance(refused.args[0], bytes):  # not the server's -ERR
                        raise
                    raise session.starttls_refused(refused) from refused
                session.use_connection(pop.sock)
                note.detail = describe_tls(pop.sock)
                # RFC 2595: what the server said before TLS is not to be trusted after it.
                capabilities = _capabilities(pop)
        if session.credentials.kind != "none":
            with session.step(Step.AUTHENTICATE) as note:
                _log_in(pop, session, capabilities)
                note.detail = f"as {session.context.who}"
    except BaseException:
        close_session(pop, session)
        raise
    return pop


def _capabilities(pop: poplib.POP3) -> Capabilities | None:
    """The server's CAPA answer, or None for a server without CAPA (it is optional).

    ``POP3.capa()`` reports a lost connection or a garbled answer as a missing CAPA; the probe must
    tell them apart.
    """
    try:
        _, lines, _ = pop._longcmd("CAPA")
    except poplib.error_proto as exc:
        said = exc.args[0]
        if isinstance(said, bytes) and said.startswith(b"-ERR"):  # the server's own refusal
            return None
        raise
    capabilities: Capabilities = {}
    for line in lines:
        name, *arguments = line.decode("ascii", "replace").split() or [""]
        capabilities[name.upper()] = [argument.upper() for argument in arguments]
    return capabilities


def _log_in(pop: poplib.POP3, session: ProbeSession, capabilities: Capabilities | None) -> None:
    credentials = session.credentials
    if credentials.kind == "oauth2":
        offered = capabilities.get("SASL", []) if capabilities is not None else None
        # A server without CAPA says nothing of its mechanisms: XOAUTH2 is tried.
        mechanism = "XOAUTH2" if offered is None else oauth_mechanism(offered)
        if mechanism is None:
            raise session.auth_unavailable(" ".join(offered or []))
        _authenticate(pop, session, capabilities, mechanism, lambda: session.sasl_oauth(mechanism))
    elif (
        credentials.authorization_identity
        or not credentials.username.isascii()
        or not credentials.secret.reveal().isascii()
    ):
        _authenticate(pop, session, capabilities, "PLAIN", session.sasl_plain)
    else:
        pop.user(credentials.username)
        pop.pass_(credentials.secret.reveal())


def _authenticate(
    pop: poplib.POP3,
    session: ProbeSession,
    capabilities: Capabilities | None,
    mechanism: str,
    response: Callable[[], Secret],
) -> None:
    """``AUTH mechanism initial-response`` (RFC 5034), the response after the server's ``+`` when
    the command would be longer than POP3 allows (255 octets with its CRLF, RFC 5034 section 4: an
    OAuth2 token from Microsoft 365 always is, and Exchange Online insists)."""
    if capabilities is not None:
        offered = capabilities.get("SASL", [])
        if mechanism not in offered:
            raise session.auth_unavailable(" ".join(offered))
    session.result.mechanism = mechanism
    initial = response().reveal()
    if len(f"AUTH {mechanism} {initial}\r\n") <= MAX_COMMAND_OCTETS:
        reply = pop._shortcmd(f"AUTH {mechanism} {initial}")
    else:
        pop._shortcmd(f"AUTH {mechanism}")  # "+ ": the server waits for the response
        reply = pop._shortcmd(initial)
    if not reply.startswith(b"+OK"):
        # A "+" continuation: the server has more to say (an OAuth2 error as base64 JSON). The answer
        # that ends the exchange (XOAUTH2: empty; OAUTHBEARER: %x01) makes the server give its
        # verdict, -ERR raising.
        session.note_oauth_challenge(reply[1:])
        pop._shortcmd("AQ==" if mechanism == "OAUTHBEARER" else "")


def close_session(pop: poplib.POP3, session: ProbeSession) -> None:
    """Say QUIT when the server still follows the conversation; closing is best effort, the
    session closes the socket anyway."""
    try:
        if not session.may_say_goodbye:
            pop.close()
        else:
            pop.quit()
    except Exception:
        pass
