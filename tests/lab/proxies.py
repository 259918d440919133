"""Small TCP servers in front of the real ones: the behaviours Dovecot cannot be configured into."""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
import time
import weakref

from . import tcp_state
from .loop import LabLoop, relay, relay_both_ways, server_port, stop_and_close, until_one_ends

# An IMAP line that ends in a literal announces that many raw bytes follow: "{12}" or "{12+}".
IMAP_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n$")
IMAP_CAPABILITY_LINE = re.compile(rb"^(\* OK \[CAPABILITY |\* CAPABILITY |\S+ OK \[CAPABILITY )",
                                  re.IGNORECASE)
IMAP_CREDENTIAL_COMMANDS = {b"LOGIN", b"AUTHENTICATE"}
POP3_CREDENTIAL_COMMANDS = {b"USER", b"PASS", b"APOP", b"AUTH"}


async def start_silent_listener(lab_loop: LabLoop) -> int:
    """Accepts connections and never sends a byte; lab_loop.stop() closes them."""

    async def stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    return server_port(await lab_loop.serve(stay_silent))


async def start_tls_front(lab_loop: LabLoop, server_context: ssl.SSLContext, upstream_port: int,
                          upstream_context: ssl.SSLContext) -> int:
    """Implicit TLS with server_context's certificate, relaying to a TLS upstream."""

    async def relay_to_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await lab_loop.connect(upstream_port, upstream_context)
        await relay_both_ways((reader, writer), upstream)

    return server_port(await lab_loop.serve(relay_to_upstream, server_context))


class PlaintextOnlyFront:
    """IMAP or POP3 in front of a Dovecot plaintext port that neither offers nor accepts
    STARTTLS/STLS, counting the commands that carry credentials (IMAP LOGIN, AUTHENTICATE;
    POP3 USER, PASS, APOP, AUTH) so a test can prove a client sent none. IMAP ``hidden``: more
    capabilities (e.g. ``MOVE``) left out of what the server says and refused as commands
    (``UID MOVE`` too)."""

    def __init__(self, lab_loop: LabLoop, protocol: str, upstream_port: int, *,
                 hidden: frozenset[bytes] = frozenset()):
        if protocol not in ("imap", "pop3"):
            raise ValueError(f"protocol must be imap or pop3, not {protocol!r}")
        self.lab_loop = lab_loop
        self.protocol = protocol
        self.upstream_port = upstream_port
        self.hidden = hidden
        self.login_attempts = 0

    async def start(self) -> int:
        return server_port(await self.lab_loop.serve(self._serve_client))

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            ) -> None:
        upstream_reader, upstream_writer = await self.lab_loop.connect(self.upstream_port)
        if self.protocol == "imap":
            directions = [self._imap_from_client(reader, writer, upstream_writer),
                          self._imap_from_server(upstream_reader, writer)]
        else:
            capa_requests = asyncio.Queue()
            directions = [self._pop3_from_client(reader, writer, upstream_writer, capa_requests),
                          self._pop3_from_server(upstream_reader, writer, capa_requests)]
        await until_one_ends(directions, upstream_writer)

    async def _imap_from_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                upstream: asyncio.StreamWriter) -> None:
        starts_command = True
        while line := await reader.readline():
            words = line.split(maxsplit=2)
            command = words[1].upper() if starts_command and len(words) >= 2 else b""
            if command == b"UID" and len(words) > 2:
                command = words[2].split(maxsplit=1)[0].upper()
            if command == b"STARTTLS" or command in self.hidden:
                writer.write(words[0] + b" BAD " + command + b" is not available on this port\r\n")
                await writer.drain()
                continue
            if command in IMAP_CREDENTIAL_COMMANDS:
                self.login_attempts += 1
            upstream.write(line)
            starts_command = not await _relay_imap_literal(line, reader, upstream)
            await upstream.drain()

    async def _imap_from_server(self, upstream: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        while line := await upstream.readline():
            if IMAP_CAPABILITY_LINE.match(line):
                for name in (b"STARTTLS", *self.hidden):
                    line = re.sub(rb" " + re.escape(name) + rb"(?=[ \]\r\n])", b"", line, flags=re.IGNORECASE)
            writer.write(line)
            await _relay_imap_literal(line, upstream, writer)
            await writer.drain()

    async def _pop3_from_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                upstream: asyncio.StreamWriter, capa_requests: asyncio.Queue,
                                ) -> None:
        while line := await reader.readline():
            words = line.split(maxsplit=1)
            command = words[0].upper() if words else b""
            if command == b"STLS":
                writer.write(b"-ERR STLS is not available on this port\r\n")
                await writer.drain()
                continue
            if command in POP3_CREDENTIAL_COMMANDS:
                self.login_attempts += 1
            if command == b"CAPA":
                capa_requests.put_nowait(command)
            upstream.write(line)
            await upstream.drain()

    async def _pop3_from_server(self, upstream: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, capa_requests: asyncio.Queue,
                                ) -> None:
        in_capa_list = False
        while line := await upstream.readline():
            if in_capa_list:
                if line.rstrip(b"\r\n") == b".":
                    in_capa_list = False
                elif line.rstrip(b"\r\n").upper() == b"STLS":
                    continue
            elif line.startswith(b"+OK") and not capa_requests.empty():
                capa_requests.get_nowait()
                in_capa_list = True
            elif line.startswith(b"-ERR") and not capa_requests.empty():
                capa_requests.get_nowait()
            writer.write(line)
            await writer.drain()


async def _relay_imap_literal(line: bytes, source: asyncio.StreamReader,
                              destination: asyncio.StreamWriter) -> bool:
    """Copy the literal that line announces, if any; whether there was one."""
    literal = IMAP_LITERAL.search(line)
    if literal is None:
        return False
    destination.write(await source.readexactly(int(literal[1])))
    return True


class ConnectionCounter:
    """A TCP relay in front of one lab port that counts the connections its clients hold open.

    Connect to `port` instead of the lab port; bytes pass through unchanged (TLS included: the
    certificates are valid for 127.0.0.1). A connection counts from its accept until its client
    closes it, as the kernel has the client's own socket (tcp_state.py) each time a connection is
    accepted: not when the relay's loop gets to the close, which may be long after (the loop shares
    the GIL with the product's threads, and takes a burst of accepts before the ends of stream
    queued beside them), nor when the client's FIN reaches this side (a busy machine may hold it in
    a queue a while). A client that closed a connection before it opened the next never has both
    counted at once. When the server closes first, its end of stream is passed on and the relay
    waits for the client's. ``current``: connections whose client the relay's loop has not yet seen
    close. Use as a context manager, or call close().
    """

    def __init__(self, lab_loop: LabLoop, upstream_port: int):
        self._lab_loop = lab_loop
        self._upstream_port = upstream_port
        self._server: asyncio.base_events.Server | None = None
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._clients: dict[asyncio.StreamWriter, tuple[str, int]] = {}  # accepted -> the client's address
        self.port = 0
        self.current = 0
        self.total = 0
        self.max_concurrent = 0
        # At the last new most: the ports of the clients counted open and whether this process held
        # each (else another did), so that a count above a bound names what it counted.
        self.at_most: list[tuple[int, int | None, bool]] = []

    async def start(self) -> ConnectionCounter:
        self._server = await self._lab_loop.serve(self._count_and_relay)
        self.port = server_port(self._server)
        return self

    def close(self) -> None:
        if self._server is not None and not self._lab_loop.loop.is_closed():
            self._lab_loop.call(self._close())

    def __enter__(self) -> ConnectionCounter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open_now(self) -> int:
        """The connections whose client has not closed them, as the kernel has it now."""
        return self._lab_loop.call(self._count_open())

    def start_counting(self, timeout: float = 10.0) -> int:
        """Wait (bounded) until the clients of every earlier connection have closed them, then
        count the most at once afresh; returns the total so far."""
        deadline = time.monotonic() + timeout
        while (still_open := self.open_now()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert still_open == 0, f"earlier connections still open: {self!r}"
        self._lab_loop.call(self._count_afresh())
        return self.total

    def __repr__(self) -> str:
        return (f"ConnectionCounter(port={self.port}, current={self.current}, total={self.total}, "
                f"max_concurrent={self.max_concurrent}, at_most={self.at_most} (client port, TCP state, "
                "held by this process))")

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            transport.abort()

    async def _count_open(self) -> int:
        here = ("127.0.0.1", self.port)
        return sum(1 for client in self._clients.values() if tcp_state.still_open(client, here))

    async def _count_afresh(self) -> None:
        self.max_concurrent = await self._count_open()
        self.at_most = []

    async def _count_and_relay(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        self.current += 1
        self.total += 1
        client = writer.get_extra_info("peername")
        if client is not None:  # else gone already, before this accept
            self._clients[writer] = client
        open_now = await self._count_open()
        if open_now > self.max_concurrent:
            here = ("127.0.0.1", self.port)
            self.max_concurrent = open_now
            self.at_most = [(client[1], tcp_state.tcp_state(client, here), tcp_state.held_here(client, here))
                            for client in self._clients.values()]
        try:
            self._transports.add(writer.transport)
            upstream_reader, upstream_writer = await self._lab_loop.connect(self._upstream_port)
            self._transports.add(upstream_writer.transport)
            await self._relay_until_the_client_closes(reader, writer, upstream_reader, upstream_writer)
        finally:
            self._clients.pop(writer, None)
            self.current -= 1

    @staticmethod
    async def _relay_until_the_client_closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                             upstream_reader: asyncio.StreamReader,
                                             upstream_writer: asyncio.StreamWriter) -> None:
        from_client = asyncio.create_task(relay(reader, upstream_writer))
        from_server = asyncio.create_task(relay(upstream_reader, writer))
        try:
            await asyncio.wait([from_client, from_server], return_when=asyncio.FIRST_COMPLETED)
            if not from_client.done():  # the server closed first: so does this side's writing
                try:
                    if not writer.is_closing() and writer.can_write_eof():
                        writer.write_eof()
                    from_client.cancel()
                    await asyncio.wait([from_client])
                    while await reader.read(65536):  # what the client still says goes nowhere
                        pass
                except OSError:  # the client went meanwhile (ENOTCONN, a reset): nothing left to relay
                    pass
        finally:
            await stop_and_close([from_client, from_server], writer, upstream_writer)


class Pop3Front:
    """POP3 over implicit TLS in front of Dovecot's plaintext POP3 port, recording every command
    word clients send. With ``uidl=False`` it answers -ERR to UIDL and leaves UIDL out of CAPA, as a
    server without UIDL does: Dovecot cannot be configured so (``pop3_uidl_format`` only shapes
    them). Everything else is Dovecot's own answer."""

    def __init__(self, lab_loop: LabLoop, server_context: ssl.SSLContext, upstream_port: int, *,
                 uidl: bool = True):
        self.lab_loop = lab_loop
        self.server_context = server_context
        self.upstream_port = upstream_port
        self.uidl = uidl
        self.hold: str | None = None  # a command word never relayed nor answered (the client waits)
        self.commands: list[str] = []
        self.port = 0

    async def start(self) -> Pop3Front:
        self.port = server_port(await self.lab_loop.serve(self._serve_client, self.server_context))
        return self

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await self.lab_loop.connect(self.upstream_port)
        capa_requests: asyncio.Queue = asyncio.Queue()
        await until_one_ends([self._from_client(reader, writer, upstream_writer, capa_requests),
                              self._from_server(upstream_reader, writer, capa_requests)], upstream_writer)

    async def _from_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           upstream: asyncio.StreamWriter, capa_requests: asyncio.Queue) -> None:
        while line := await reader.readline():
            words = line.split(maxsplit=1)
            command = words[0].upper().decode("ascii", "replace") if words else ""
            self.commands.append(command)
            if command == self.hold:
                continue
            if command == "UIDL" and not self.uidl:
                writer.write(b"-ERR Unknown command: UIDL\r\n")
                await writer.drain()
                continue
            if command == "CAPA":
                capa_requests.put_nowait(command)
            upstream.write(line)
            await upstream.drain()

    async def _from_server(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           capa_requests: asyncio.Queue) -> None:
        in_capa_list = False
        while line := await upstream.readline():
            if in_capa_list:
                if line.rstrip(b"\r\n") == b".":
                    in_capa_list = False
                elif line.rstrip(b"\r\n").upper() == b"UIDL" and not self.uidl:
                    continue
            elif line.startswith(b"+OK") and not capa_requests.empty():
                capa_requests.get_nowait()
                in_capa_list = True
            elif line.startswith(b"-ERR") and not capa_requests.empty():
                capa_requests.get_nowait()
            writer.write(line)
            await writer.drain()


class ImapFront:
    """IMAP over implicit TLS in front of Dovecot's plaintext IMAP port, recording every command
    clients send (``UID FETCH``, ``UID STORE``...). ``holding(command, after)``: the first such
    command after ``after`` others is neither relayed nor answered (the client waits) and ``held``
    is set, so that a test can stop the client at that very point; ``release()`` relays it after
    all, and ``answered`` is set once the server's tagged answer to it has gone to the client.
    While a command is held, anything more from the client counts as the client gone (the
    connection ends): of commands sent one behind the other (an IMAP cycle's FETCH of the next
    batch's headers behind the texts), hold the last."""

    def __init__(self, lab_loop: LabLoop, server_context: ssl.SSLContext, upstream_port: int):
        self.lab_loop = lab_loop
        self.server_context = server_context
        self.upstream_port = upstream_port
        self.hold: str | None = None
        self.hold_after = 0
        self.held = threading.Event()
        self.answered = threading.Event()
        self.commands: list[str] = []
        self.port = 0
        self._held_tag: bytes | None = None
        self._release: asyncio.Event | None = None

    async def start(self) -> ImapFront:
        self._release = asyncio.Event()
        self.port = server_port(await self.lab_loop.serve(self._serve_client, self.server_context))
        return self

    def holding(self, command: str, after: int = 0) -> None:
        self.commands.clear()
        self.held.clear()
        self.answered.clear()
        self.lab_loop.loop.call_soon_threadsafe(self._release.clear)
        self.hold, self.hold_after = command.upper(), after

    def release(self) -> None:
        self.lab_loop.loop.call_soon_threadsafe(self._release.set)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await self.lab_loop.connect(self.upstream_port)
        await until_one_ends([self._from_client(reader, upstream_writer),
                              self._from_server(upstream_reader, writer)], upstream_writer)

    async def _from_client(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter) -> None:
        starts_command = True
        while line := await reader.readline():
            if starts_command:
                words = line.split(maxsplit=3)
                name = words[1].upper() if len(words) >= 2 else b""
                if name == b"UID" and len(words) > 2:
                    name += b" " + words[2].upper()
                command = name.decode("ascii", "replace")
                held = command == self.hold and self.commands.count(command) == self.hold_after
                self.commands.append(command)
                if held:
                    self._held_tag = words[0] + b" "
                    self.held.set()
                    if not await self._released_before_the_client_goes(reader):
                        return
            upstream.write(line)
            starts_command = not await _relay_imap_literal(line, reader, upstream)
            await upstream.drain()

    async def _released_before_the_client_goes(self, reader: asyncio.StreamReader) -> bool:
        gone = asyncio.create_task(reader.read(1))  # a client waiting for an answer sends nothing
        released = asyncio.create_task(self._release.wait())
        await asyncio.wait([gone, released], return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        released.cancel()
        await asyncio.wait([gone, released])  # the reader is free again once the read is cancelled
        return released.done() and not released.cancelled()

    async def _from_server(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await upstream.readline():
            writer.write(line)
            await _relay_imap_literal(line, upstream, writer)
            await writer.drain()
            if self._held_tag is not None and line.startswith(self._held_tag):
                self.answered.set()


class SmtpFront:
    """SMTP over implicit TLS (the lab's certificate) in front of the lab's plaintext SMTP port,
    which delivers into Dovecot. With ``hold_data_answer`` the message's end (the lone dot) is
    relayed and delivered, but the server's answer to it never reaches the client (it waits, not
    knowing whether the message went); ``held`` is set then."""

    def __init__(self, lab_loop: LabLoop, server_context: ssl.SSLContext, upstream_port: int):
        self.lab_loop = lab_loop
        self.server_context = server_context
        self.upstream_port = upstream_port
        self.hold_data_answer = False
        self.held = threading.Event()
        self.port = 0

    async def start(self) -> SmtpFront:
        self.port = server_port(await self.lab_loop.serve(self._serve_client, self.server_context))
        return self

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await self.lab_loop.connect(self.upstream_port)
        message_sent = asyncio.Event()
        await until_one_ends([self._from_client(reader, upstream_writer, message_sent),
                              self._from_server(upstream_reader, writer, message_sent)], upstream_writer)

    async def _from_client(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter,
                           message_sent: asyncio.Event) -> None:
        in_data = False
        while line := await reader.readline():
            if in_data and line == b".\r\n":
                in_data = False
                message_sent.set()
            elif not in_data and line.rstrip(b"\r\n").upper() == b"DATA":
                in_data = True  # the server's 354 is awaited by the client before it sends the data
            upstream.write(line)
            await upstream.drain()

    async def _from_server(self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           message_sent: asyncio.Event) -> None:
        while line := await upstream.readline():
            if self.hold_data_answer and message_sent.is_set():
                self.held.set()
                while await upstream.read(65536):  # until either side goes
                    pass
                return
            writer.write(line)
            await writer.drain()
