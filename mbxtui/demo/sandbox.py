"""The sandbox mail servers: IMAP, POP3 and SMTP on 127.0.0.1 at free ports, on one event loop in
a daemon thread of the demo's process (so they end with it however it ends), with deliberate
faults so that Test & Enable meets every kind of outcome.

Every port and what it does::

    imaps            IMAP, implicit TLS, demo CA                  Head office IMAP, Exchange Online
    submission       SMTP, STARTTLS then AUTH, demo CA            Head office IMAP, Exchange Online
    pop3             POP3 with STLS, demo CA                      Branch POP3
    smtps            SMTP, implicit TLS, demo CA                  Branch POP3
    legacy_imap      IMAP that does not offer STARTTLS            Legacy mail (incoming)
    untrusted_smtps  SMTP, implicit TLS, legacy CA, which the     Legacy mail (outgoing)
                     profile does not trust
    down             nothing listens: connection refused          Warehouse server (incoming)
    silent           accepts connections, never says a word       Warehouse server (outgoing)
    oauth            HTTPS, demo CA: the OAuth2 provider whose    Exchange Online (OAuth2)
                     tokens imaps, submission and pop3 take
    dns              DNS, UDP and TCP: SRV records of the demo    profile detect
                     domain naming imaps, pop3, smtps, submission

The imaps, submission and pop3 ports serve every profile using them, Exchange Online (OAuth2) too.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import socket
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from mbxtui.demo.certs import DemoCertificates
from mbxtui.demo import dns_server
from mbxtui.demo.connection import IDLE_TIMEOUT, MAX_LINE, TLS_HANDSHAKE_TIMEOUT, LineConnection
from mbxtui.demo.identity_provider import IdentityProvider
from mbxtui.demo.imap_server import ImapSession
from mbxtui.demo.mailsystem import MailSystem
from mbxtui.demo.pop3_server import Pop3Session
from mbxtui.demo.smtp_server import SandboxSMTP

log = logging.getLogger("mbxtui.demo.servers")

HOST = "127.0.0.1"
BACKLOG = 512
MAX_CONNECTIONS_PER_PORT = 512
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
LOG_FILE_BYTES = 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class SandboxPorts:
    imaps: int
    submission: int
    pop3: int
    smtps: int
    legacy_imap: int
    untrusted_smtps: int
    down: int
    silent: int
    oauth: int
    dns: int

    @property
    def oauth_url(self) -> str:
        """The identity provider's base URL (a profile's OAuth issuer)."""
        return f"https://{HOST}:{self.oauth}"

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Sandbox:
    """Start with :meth:`start`; :meth:`stop` closes every listening socket and connection.
    ``log_file``: where the servers note refused logins and unexpected errors."""

    def __init__(self, certificates: DemoCertificates, mail: MailSystem, *, log_file: Path | None = None) -> None:
        self.certificates = certificates
        self.mail = mail
        self.ports: SandboxPorts | None = None
        self._log_file = log_file
        self._log_setup: _LogSetup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._refusing_socket: socket.socket | None = None
        self._identity_provider: IdentityProvider | None = None
        self._lock = threading.Lock()
        self._started = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SandboxPorts:
        with self._lock:
            if self._started:
                raise RuntimeError("a sandbox starts only once")
            self._started = True
            if self._log_file is not None:
                self._log_setup = _LogSetup(self._log_file)
            self._loop = asyncio.new_event_loop()
            self._loop.set_exception_handler(_log_unexpected_errors)
            self._thread = threading.Thread(target=self._loop.run_forever, name="mbxtui-demo-servers",
                                            daemon=True)
            self._thread.start()
        try:
            self.ports = self._call(self._start_servers(), START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self.ports

    def stop(self) -> None:
        """Close every socket of the sandbox. Safe to call more than once, from any thread but the
        servers' own."""
        with self._lock:
            loop, self._loop = self._loop, None
            refusing, self._refusing_socket = self._refusing_socket, None
            log_setup, self._log_setup = self._log_setup, None
            identity_provider, self._identity_provider = self._identity_provider, None
        if refusing is not None:
            refusing.close()
        if identity_provider is not None:
            identity_provider.stop()
        if loop is not None and not loop.is_closed():
            try:
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(self._shut_down(), loop).result(STOP_TIMEOUT)
            except (TimeoutError, RuntimeError):
                log.warning("the sandbox servers did not shut down within %s s", STOP_TIMEOUT)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                if self._thread is not None:
                    self._thread.join(STOP_TIMEOUT)
                if self._thread is None or not self._thread.is_alive():
                    loop.close()
        if log_setup is not None:
            log_setup.undo()

    def _call(self, coroutine: Awaitable[T], timeout: float) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _start_servers(self) -> SandboxPorts:
        trusted = self.certificates.server_context
        untrusted = self.certificates.untrusted_server_context
        self._refusing_socket = _bound_but_not_listening()
        mail_ports = dict(
            imaps=await self._serve_lines(lambda c: ImapSession(c, self.mail, None), implicit_tls=trusted),
            submission=await self._serve_smtp(starttls=trusted),
            pop3=await self._serve_lines(lambda c: Pop3Session(c, self.mail, trusted)),
            smtps=await self._serve_smtp(implicit_tls=trusted),
            legacy_imap=await self._serve_lines(lambda c: ImapSession(c, self.mail, None)),
            untrusted_smtps=await self._serve_smtp(implicit_tls=untrusted),
            down=self._refusing_socket.getsockname()[1],
            silent=await self._serve_silence(),
        )
        self._identity_provider = IdentityProvider(self.mail.oauth, trusted, HOST, self.mail.check_password)
        oauth = self._identity_provider.start()
        answers = dns_server.DnsAnswers(dns_server.zone(self.mail.domain, HOST, mail_ports))
        dns, dns_over_tcp = await dns_server.serve(answers, HOST, self._transports.add)
        self._servers.append(dns_over_tcp)
        return SandboxPorts(**mail_ports, oauth=oauth, dns=dns)

    async def _serve_lines(self, session_for: Callable[[LineConnection], ImapSession | Pop3Session], *,
                           implicit_tls: ssl.SSLContext | None = None) -> int:
        open_connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal open_connections
            self._transports.add(writer.transport)
            if open_connections >= MAX_CONNECTIONS_PER_PORT:
                writer.close()
                return
            open_connections += 1
            try:
                connection = LineConnection(reader, writer, encrypted=implicit_tls is not None)
                await session_for(connection).run()
            except Exception:
                log.exception("a sandbox session failed")
            finally:
                open_connections -= 1
                writer.close()

        return await self._listen(asyncio.start_server(
            serve, HOST, 0, ssl=implicit_tls, limit=MAX_LINE, backlog=BACKLOG,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit_tls else None))

    async def _serve_smtp(self, *, starttls: ssl.SSLContext | None = None,
                          implicit_tls: ssl.SSLContext | None = None) -> int:
        loop = asyncio.get_running_loop()
        return await self._listen(loop.create_server(
            lambda: SandboxSMTP(self.mail, starttls_context=starttls, loop=loop,
                                on_connection=self._transports.add),
            HOST, 0, ssl=implicit_tls, backlog=BACKLOG,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit_tls else None))

    async def _serve_silence(self) -> int:
        """A server that accepts and never answers: the client's timeout is what ends it."""

        async def stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._transports.add(writer.transport)
            try:
                while await asyncio.wait_for(reader.read(4096), IDLE_TIMEOUT):
                    pass
            except (TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()

        return await self._listen(asyncio.start_server(stay_silent, HOST, 0, backlog=BACKLOG))

    async def _listen(self, starting: Awaitable[asyncio.base_events.Server]) -> int:
        server = await starting
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _shut_down(self) -> None:
        for server in self._servers:
            server.close()
        for transport in list(self._transports):
            transport.abort()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)


def _bound_but_not_listening() -> socket.socket:
    """A port of 127.0.0.1 kept for the sandbox on which nothing listens: the kernel refuses every
    connection to it, and no other program can take it while the sandbox runs."""
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.bind((HOST, 0))
    return reserved


def _log_unexpected_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    # Clients that refuse a certificate (as they must on the untrusted port) or vanish mid-handshake
    # are part of the demo; cancelled sessions are how stop() ends them.
    if isinstance(context.get("exception"), (ssl.SSLError, ConnectionError, asyncio.CancelledError)):
        return
    log.error("sandbox servers: %s", context.get("message"), exc_info=context.get("exception"))


class _LogSetup:
    """Sends the servers' log, and aiosmtpd's, to a file of the demo while the sandbox runs."""

    LOGGERS = ("mbxtui.demo.servers", "mail.log")

    def __init__(self, path: Path) -> None:
        self.handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_FILE_BYTES, backupCount=1,
                                                            encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        # aiosmtpd warns about an attribute it sets itself on every successful AUTH.
        self.handler.addFilter(lambda record: "login_data is deprecated" not in record.getMessage())
        self.saved: list[tuple[logging.Logger, int, bool]] = []
        for name, level in zip(self.LOGGERS, (logging.INFO, logging.WARNING)):
            logger = logging.getLogger(name)
            self.saved.append((logger, logger.level, logger.propagate))
            logger.setLevel(level)
            logger.propagate = False
            logger.addHandler(self.handler)

    def undo(self) -> None:
        for logger, level, propagate in self.saved:
            logger.removeHandler(self.handler)
            logger.setLevel(level)
            logger.propagate = propagate
        self.handler.close()
