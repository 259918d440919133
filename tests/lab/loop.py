"""One asyncio event loop in a background thread hosting every Python server of the lab."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
CALL_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# Room for a burst of connections (profiles allow up to 300 concurrent ones).
BACKLOG = 1024


class LabLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_log_unexpected_errors)
        self._servers: list[asyncio.base_events.Server] = []
        # Every open connection, so stop() can close them all (Server.close() does not).
        self.transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mail-lab-loop",
                                        daemon=True)
        self._thread.start()

    def call(self, coroutine: Awaitable[T], timeout: float = CALL_TIMEOUT) -> T:
        """Run a coroutine on the lab loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def serve(self, client_connected: Callable, ssl_context: ssl.SSLContext | None = None,
                    ) -> asyncio.base_events.Server:
        """A stream server on 127.0.0.1 at a free port whose connections stop() will close."""

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.transports.add(writer.transport)
            try:
                await client_connected(reader, writer)
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context,
                                            limit=1 << 20, backlog=BACKLOG)
        self._servers.append(server)
        return server

    async def connect(self, port: int, ssl_context: ssl.SSLContext | None = None,
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to a lab server on 127.0.0.1 that stop() will close."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl_context,
            server_hostname="127.0.0.1" if ssl_context else None, limit=1 << 20)
        self.transports.add(writer.transport)
        return reader, writer

    async def serve_protocol(self, protocol_factory: Callable[[], asyncio.Protocol],
                             ssl_context: ssl.SSLContext | None = None,
                             ) -> asyncio.base_events.Server:
        server = await self.loop.create_server(protocol_factory, "127.0.0.1", 0, ssl=ssl_context,
                                               backlog=BACKLOG)
        self._servers.append(server)
        return server

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call(self._shut_down(), STOP_TIMEOUT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()

    async def _shut_down(self) -> None:
        for server in self._servers:
            server.close()
        for transport in list(self.transports):
            transport.abort()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        await self.loop.shutdown_default_executor()


def server_port(server: asyncio.base_events.Server) -> int:
    return server.sockets[0].getsockname()[1]


async def relay(source: asyncio.StreamReader, destination: asyncio.StreamWriter) -> None:
    """Copy bytes until the source reaches end of stream."""
    while data := await source.read(65536):
        destination.write(data)
        await destination.drain()


async def relay_both_ways(client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                          upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Relay until either side closes (lab clients never half-close), then close both."""
    await until_one_ends([relay(client[0], upstream[1]), relay(upstream[0], client[1])],
                         client[1], upstream[1])


async def until_one_ends(directions: list[Coroutine[Any, Any, None]], *writers: asyncio.StreamWriter) -> None:
    """A relay's life and teardown: run its directions until one of them ends, then stop the
    others (waiting until they have stopped, so that none writes after this) and close
    ``writers``, however it ended."""
    tasks = [asyncio.create_task(direction) for direction in directions]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await stop_and_close(tasks, *writers)


async def stop_and_close(tasks: list[asyncio.Task], *writers: asyncio.StreamWriter) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    for writer in writers:
        writer.close()


def _log_unexpected_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    # Clients that refuse our certificate or vanish mid-handshake are what several tests do;
    # cancelled connection handlers are how stop() ends them.
    if isinstance(context.get("exception"),
                  (ssl.SSLError, ConnectionError, asyncio.CancelledError)):
        return
    log.warning("mail lab loop: %s", context.get("message"), exc_info=context.get("exception"))
