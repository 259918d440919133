"""Misbehaving mail servers on 127.0.0.1: the servers no administrator controls.

    with HostileServer(script) as server:   # script(conversation) plays each connection
        result = imap.probe(Endpoint("127.0.0.1", server.port, "starttls", ...), credentials)
    server.received_in_clear                # every byte the server read outside TLS

A script is a plain function of one ``Conversation``: it reads lines, sends bytes, starts TLS,
trickles, floods, stays silent or hangs up. ``imap_dialogue``, ``pop3_dialogue`` and
``smtp_dialogue`` play a correct server that misbehaves at one chosen point (a ``Plan``).

Everything is bounded: reads and writes poll in short slices, a conversation ends when its client
leaves, when the server stops or after ``conversation_limit`` seconds, a script answers at most
``MOST_COMMANDS`` commands, and leaving the ``with`` block cuts every connection and joins every
thread (failing loudly if one does not end).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
MOST_COMMANDS = 64
_POLL_SECONDS = 0.05
_HANDSHAKE_SECONDS = 5.0
_STOP_SECONDS = 5.0
_READ_SIZE = 65536


class ConversationOver(Exception):
    """The client left, the server is stopping or the conversation ran out of time: the script
    has nothing left to do."""


class Conversation:
    """The server's side of one connection. Every byte read is recorded, in ``in_clear`` while
    the connection is not encrypted and in ``decrypted`` once TLS has started; ``sent`` counts
    the bytes written."""

    def __init__(self, sock: socket.socket, stop: threading.Event, time_limit: float) -> None:
        self._sock = sock
        # Shutting a connection down through a duplicate descriptor ends it for the TLS layer
        # wrapped around the original too: this is how stopping interrupts a blocked handshake.
        self._cutter = sock.dup()
        self._stop = stop
        self._ends_at = time.monotonic() + time_limit
        self._unread = bytearray()
        self.in_clear = bytearray()
        self.decrypted = bytearray()
        self.encrypted = False
        self.sent = 0
        sock.settimeout(_POLL_SECONDS)

    @property
    def over(self) -> bool:
        return self._stop.is_set() or time.monotonic() >= self._ends_at

    def read_line(self, limit: int = _READ_SIZE) -> bytes:
        """The next line, with its line ending."""
        while True:
            end = self._unread.find(b"\n")
            if end >= 0:
                line = bytes(self._unread[: end + 1])
                del self._unread[: end + 1]
                return line
            if len(self._unread) > limit:
                raise ConversationOver(f"the client sent a line longer than {limit} bytes")
            self._unread += self._receive()

    def read_some(self) -> bytes:
        """Whatever arrives next (for instance a TLS ClientHello)."""
        if self._unread:
            data = bytes(self._unread)
            self._unread.clear()
            return data
        return self._receive()

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.over:
                raise ConversationOver("stopped while sending")
            try:
                written = self._sock.send(view)
            except TimeoutError:  # the client is not reading: try again until over
                continue
            self.sent += written
            view = view[written:]

    def send_line(self, line: str | bytes) -> None:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def trickle(self, data: bytes, interval: float) -> None:
        """Send ``data`` one byte every ``interval`` seconds."""
        for byte in data:
            if self._stop.wait(interval) or self.over:
                raise ConversationOver("stopped while trickling")
            self.send(bytes([byte]))

    def flood(self, prefix: bytes, filler: bytes, limit: int) -> None:
        """Send ``prefix``, then ``filler`` again and again: at most ``limit`` bytes in all, or
        until the client leaves."""
        self.send(prefix)
        while self.sent + len(filler) <= limit:
            self.send(filler)
        raise ConversationOver(f"flooded the client with {self.sent} bytes")

    def hold(self) -> None:
        """Say nothing, read whatever comes, until the conversation is over."""
        while True:
            self._receive()

    def start_tls(self, context: ssl.SSLContext) -> None:
        """The server's side of a TLS handshake; ``ConversationOver`` if the client breaks it off
        (refusing the certificate, for instance)."""
        if self._unread:
            raise ConversationOver("the client sent data before the TLS handshake")
        self._sock.settimeout(_HANDSHAKE_SECONDS)
        try:
            self._sock = context.wrap_socket(self._sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise ConversationOver(f"the TLS handshake failed: {exc}") from exc
        self._sock.settimeout(_POLL_SECONDS)
        self.encrypted = True

    def hang_up(self) -> None:
        """Close the connection (an orderly close: the client reads the end of it)."""
        self._cutter.close()
        self._sock.close()

    def reset(self) -> None:
        """Hang up with a TCP reset instead of an orderly close."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.hang_up()

    def cut(self) -> None:
        """End the connection from another thread: whatever the script is blocked on returns."""
        with contextlib.suppress(OSError):  # already closed by the client or by the script
            self._cutter.shutdown(socket.SHUT_RDWR)

    def _receive(self) -> bytes:
        while not self.over:
            try:
                data = self._sock.recv(_READ_SIZE)
            except TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError) as exc:
                raise ConversationOver(f"the connection broke: {exc}") from exc
            if not data:
                raise ConversationOver("the client closed the connection")
            (self.decrypted if self.encrypted else self.in_clear).extend(data)
            return data
        raise ConversationOver("stopped while reading")


Script = Callable[[Conversation], None]


class HostileServer:
    """A TCP listener on 127.0.0.1 that plays ``script`` on each connection, in a thread of its
    own; with ``implicit_tls`` every connection starts with a TLS handshake. At most
    ``max_connections`` are accepted; later ones are closed at once."""

    def __init__(self, script: Script, *, implicit_tls: ssl.SSLContext | None = None,
                 max_connections: int = 16, conversation_limit: float = 30.0) -> None:
        self._script = script
        self._implicit_tls = implicit_tls
        self._max_connections = max_connections
        self._conversation_limit = conversation_limit
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0  # known once started
        self.conversations: list[Conversation] = []
        self.script_errors: list[BaseException] = []

    @property
    def received_in_clear(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c.in_clear) for c in self.conversations)

    @property
    def received_decrypted(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c.decrypted) for c in self.conversations)

    @property
    def sent(self) -> int:
        with self._lock:
            return sum(c.sent for c in self.conversations)

    def __enter__(self) -> HostileServer:
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(_POLL_SECONDS)
        self.port = self._listener.getsockname()[1]
        self._start_thread(self._accept, "hostile accept")
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self.stop()
        if exc_type is None and self.script_errors:
            raise AssertionError(f"a hostile server's script failed: {self.script_errors!r}")

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conversations = list(self.conversations)
        for conversation in conversations:
            conversation.cut()
        gives_up_at = time.monotonic() + _STOP_SECONDS
        for thread in self._threads:
            thread.join(max(gives_up_at - time.monotonic(), 0.0))
        still_running = [thread.name for thread in self._threads if thread.is_alive()]
        if still_running:
            raise RuntimeError(f"hostile server threads did not stop: {still_running}")

    def _start_thread(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed: stopping
                return
            with self._lock:
                full = len(self.conversations) >= self._max_connections
                if not full:
                    conversation = Conversation(sock, self._stop, self._conversation_limit)
                    self.conversations.append(conversation)
            if full:
                sock.close()
                continue
            self._start_thread(self._converse, f"hostile conversation {len(self.conversations)}",
                               conversation)

    def _converse(self, conversation: Conversation) -> None:
        try:
            if self._implicit_tls is not None:
                conversation.start_tls(self._implicit_tls)
            self._script(conversation)
        except ConversationOver:
            pass
        except (ConnectionError, ssl.SSLError):
            pass  # the client left while the script was writing
        except Exception as exc:
            self.script_errors.append(exc)
        finally:
            conversation.hang_up()


# --- mail dialogues: correct servers that misbehave at one chosen point ---------------------------

ACCEPT, REFUSE, CUT, ABSENT = "accept", "refuse", "cut", "absent"


@dataclass(frozen=True)
class Plan:
    """Where a dialogue misbehaves; by default it serves the probe correctly.

    ``starttls``: ``accept`` (with ``tls``'s certificate), ``refuse`` (offered, then refused with
    ``refusal`` or the protocol's usual answer), ``cut`` (accepted, then the connection is cut
    after the client's first TLS bytes) or ``absent`` (not offered, refused if asked).
    ``auth``: ``accept`` or ``cut`` (hang up on the first command that carries credentials).
    ``data`` (SMTP): ``accept`` or ``cut`` (hang up after 354 and the message's first line).
    Whatever STARTTLS does, the server goes on offering to log in: a probe that falls back to
    sending credentials in clear would be recorded doing it.
    """

    starttls: str = ACCEPT
    tls: ssl.SSLContext | None = None
    refusal: str | None = None
    auth: str = ACCEPT
    data: str = ACCEPT

    def offers_starttls(self, conversation: Conversation) -> bool:
        return self.starttls != ABSENT and not conversation.encrypted

    def answer_starttls(self, conversation: Conversation, go_ahead: str, refusal: str,
                        tag: str = "") -> None:
        """Answer the client's STARTTLS command as planned; ``refusal`` is the protocol's usual
        one, and ``{tag}`` in the plan's own stands for the IMAP command's tag."""
        if self.starttls in (REFUSE, ABSENT) or conversation.encrypted:
            conversation.send_line(self.refusal.format(tag=tag) if self.refusal else refusal)
            return
        conversation.send_line(go_ahead)
        if self.starttls == CUT:
            conversation.read_some()
            raise ConversationOver("cut in the middle of the TLS handshake")
        assert self.tls is not None, "Plan(starttls='accept') needs tls, the server's context"
        conversation.start_tls(self.tls)

    def cut_auth(self) -> None:
        if self.auth == CUT:
            raise ConversationOver("cut after the login command")


def imap_dialogue(plan: Plan = Plan()) -> Script:
    def play(conversation: Conversation) -> None:
        conversation.send_line("* OK hostile IMAP server ready")
        for _ in range(MOST_COMMANDS):
            tag, command, arguments = _words(conversation.read_line(), 3)
            if command == "CAPABILITY":
                starttls = " STARTTLS" if plan.offers_starttls(conversation) else ""
                conversation.send_line(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN{starttls}")
                conversation.send_line(f"{tag} OK CAPABILITY done")
            elif command == "STARTTLS":
                plan.answer_starttls(conversation, f"{tag} OK begin TLS now",
                                     f"{tag} NO STARTTLS is not available now", tag)
            elif command in ("LOGIN", "AUTHENTICATE"):
                plan.cut_auth()
                if command == "AUTHENTICATE" and len(arguments.split()) < 2:
                    conversation.send_line("+ ")
                    conversation.read_line()
                conversation.send_line(f"{tag} OK logged in")
            elif command in ("SELECT", "EXAMINE"):
                conversation.send_line("* 0 EXISTS")
                conversation.send_line(f"{tag} OK [READ-ONLY] opened")
            elif command == "LOGOUT":
                conversation.send_line("* BYE logging out")
                conversation.send_line(f"{tag} OK LOGOUT done")
                return
            else:
                conversation.send_line(f"{tag} BAD unknown command")

    return play


def pop3_dialogue(plan: Plan = Plan()) -> Script:
    def play(conversation: Conversation) -> None:
        conversation.send_line("+OK hostile POP3 server ready")
        for _ in range(MOST_COMMANDS):
            command, arguments = _words(conversation.read_line(), 2)
            if command == "CAPA":
                conversation.send_line("+OK capabilities follow")
                conversation.send_line("USER")
                conversation.send_line("SASL PLAIN")
                if plan.offers_starttls(conversation):
                    conversation.send_line("STLS")
                conversation.send_line(".")
            elif command == "STLS":
                plan.answer_starttls(conversation, "+OK begin TLS now", "-ERR STLS is not available now")
            elif command in ("USER", "PASS", "APOP", "AUTH"):
                plan.cut_auth()
                if command == "AUTH" and len(arguments.split()) < 2:
                    conversation.send_line("+ ")
                    conversation.read_line()
                conversation.send_line("+OK")
            elif command == "STAT":
                conversation.send_line("+OK 0 0")
            elif command == "QUIT":
                conversation.send_line("+OK bye")
                return
            else:
                conversation.send_line("-ERR unknown command")

    return play


def smtp_dialogue(plan: Plan = Plan()) -> Script:
    def play(conversation: Conversation) -> None:
        conversation.send_line("220 hostile.test ESMTP ready")
        for _ in range(MOST_COMMANDS):
            command, arguments = _words(conversation.read_line(), 2)
            if command in ("EHLO", "HELO"):
                conversation.send_line("250-hostile.test")
                if plan.offers_starttls(conversation):
                    conversation.send_line("250-STARTTLS")
                conversation.send_line("250 AUTH PLAIN LOGIN")
            elif command == "STARTTLS":
                plan.answer_starttls(conversation, "220 2.0.0 begin TLS now",
                                     "454 4.7.0 TLS not available due to temporary reason")
            elif command == "AUTH":
                plan.cut_auth()
                _smtp_auth_exchange(conversation, arguments.split())
                conversation.send_line("235 2.7.0 authenticated")
            elif command in ("MAIL", "RCPT", "RSET", "NOOP"):
                conversation.send_line("250 2.0.0 ok")
            elif command == "DATA":
                conversation.send_line("354 end with <CRLF>.<CRLF>")
                if plan.data == CUT:
                    conversation.read_line()
                    raise ConversationOver("cut in the middle of DATA")
                _read_message(conversation)
                conversation.send_line("250 2.0.0 queued")
            elif command == "QUIT":
                conversation.send_line("221 2.0.0 bye")
                return
            else:
                conversation.send_line("502 5.5.2 unknown command")

    return play


def _smtp_auth_exchange(conversation: Conversation, arguments: list[str]) -> None:
    mechanism = arguments[0].upper() if arguments else ""
    if mechanism == "LOGIN":
        for prompt in ("VXNlcm5hbWU6", "UGFzc3dvcmQ6"):  # "Username:", "Password:"
            conversation.send_line(f"334 {prompt}")
            conversation.read_line()
    elif len(arguments) < 2:
        conversation.send_line("334 ")
        conversation.read_line()


def _read_message(conversation: Conversation) -> None:
    for _ in range(10_000):
        if conversation.read_line() in (b".\r\n", b".\n"):
            return
    raise ConversationOver("the message did not end")


def _words(line: bytes, count: int) -> list[str]:
    """A command line split into ``count - 1`` words and the rest of the line, the last word (the
    command) upper-cased; missing parts are empty."""
    words = line.decode("utf-8", "replace").strip().split(None, count - 1)
    words += [""] * (count - len(words))
    words[count - 2] = words[count - 2].upper()
    return words


# --- certificates ---------------------------------------------------------------------------------

class TestAuthority:
    """A CA the probes are told to trust (``ca_file``), issuing the hostile servers'
    certificates."""

    __test__ = False

    def __init__(self, directory: Path) -> None:
        self._ca = trustme.CA(organization_name="hostile servers CA")
        self.ca_file = str(directory / "hostile-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)

    def server_context(self, *hosts: str, not_before: datetime.datetime | None = None,
                       not_after: datetime.datetime | None = None) -> ssl.SSLContext:
        """A server context whose certificate names ``hosts`` (default 127.0.0.1)."""
        certificate = self._ca.issue_cert(*(hosts or (HOST,)), not_before=not_before,
                                          not_after=not_after)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        return context

    def expired_context(self) -> ssl.SSLContext:
        now = datetime.datetime.now(datetime.UTC)
        return self.server_context(not_before=now - datetime.timedelta(days=60),
                                   not_after=now - datetime.timedelta(days=1))

    def other_host_context(self) -> ssl.SSLContext:
        return self.server_context("mail.other-host.test")


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server context whose certificate for 127.0.0.1 signs itself (no CA vouches for it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "self-signed.pem", directory / "self-signed.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


# --- finding a secret in what a server received ---------------------------------------------------

def secret_leaks(received: bytes, secret: str) -> list[str]:
    """How ``secret`` shows in ``received``: as is (IMAP LOGIN, POP3 PASS) or inside base64 (SASL
    PLAIN, LOGIN, XOAUTH2), whatever the bytes around it. Empty when it does not."""
    found = []
    raw = secret.encode("utf-8")
    if raw in received:
        found.append("as is")
    for offset, core in enumerate(_base64_cores(raw)):
        if core in received:
            found.append(f"base64 (offset {offset})")
    return found


def _base64_cores(raw: bytes) -> list[bytes]:
    """For each of the three alignments ``raw`` can have in a base64 stream, the characters that
    encode only its bytes (whatever comes before or after it)."""
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        core = encoded[4 if offset else 0 : -4]
        assert len(core) >= 8, "use a secret of at least 12 bytes"
        cores.append(core)
    return cores
