"""A line-based client connection of a sandbox server (IMAP, POP3), with the bounds every session
keeps: how long a client may stay silent, how long a line may be."""

from __future__ import annotations

import asyncio
import socket
import ssl

IDLE_TIMEOUT = 60.0
MAX_LINE = 64 * 1024  # also the StreamReader limit the listeners are created with
TLS_HANDSHAKE_TIMEOUT = 10.0


class ConnectionClosed(Exception):
    """The client went away, or broke the protocol badly enough to be disconnected."""


class LineConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, encrypted: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.encrypted = encrypted
        peer = writer.get_extra_info("peername") or ("unknown", 0)  # None once the client is gone
        self.peer = f"{peer[0]}:{peer[1]}"

    async def read_line(self) -> bytes:
        """The next line with its line break removed. Raises TimeoutError when the client has been
        silent for IDLE_TIMEOUT, ConnectionClosed when it is gone or sent an overlong line."""
        self._acknowledge_promptly()
        try:
            line = await asyncio.wait_for(self.reader.readuntil(b"\n"), IDLE_TIMEOUT)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionClosed("end of stream") from exc
        except asyncio.LimitOverrunError as exc:
            raise ConnectionClosed(f"a line longer than {MAX_LINE} bytes") from exc
        except (ConnectionError, ssl.SSLError) as exc:
            raise ConnectionClosed(str(exc)) from exc
        return line.rstrip(b"\r\n")

    async def read_exactly(self, size: int) -> bytes:
        self._acknowledge_promptly()
        try:
            return await asyncio.wait_for(self.reader.readexactly(size), IDLE_TIMEOUT)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise ConnectionClosed("end of stream") from exc

    def _acknowledge_promptly(self) -> None:
        """imaplib sends the end of some commands (an AUTHENTICATE response, a literal) in a write
        of its own, which its Nagle algorithm holds until our ACK: with delayed ACKs, 40 ms per
        command. Quick ACK mode is reset by the kernel, so it is asked for before every read."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass

    async def send(self, line: str) -> None:
        try:
            self.writer.write(line.encode("utf-8") + b"\r\n")
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    async def send_bytes(self, data: bytes) -> None:
        """Bytes as they are (a response with literals), line breaks included."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    async def start_tls(self, context: ssl.SSLContext) -> None:
        try:
            await self.writer.start_tls(context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except (ConnectionError, ssl.SSLError, TimeoutError) as exc:
            raise ConnectionClosed(f"TLS handshake failed: {exc}") from exc
        self.encrypted = True
