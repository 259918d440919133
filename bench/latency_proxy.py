"""A loopback TCP proxy that delays every read by a fixed time, to put a database "far away".

    python bench/latency_proxy.py --target-port 5432 [--delay-ms 20] [--max-connections 64]

Listens on 127.0.0.1 only (a free port, printed as the first line of output) and forwards each
connection to 127.0.0.1:TARGET. Every chunk read from either side is held ``--delay-ms`` from the
moment it was read, then written on: chunks keep their order and follow each other without
waiting for one another, so the delay adds latency, not a bandwidth limit (a round trip gains
twice the delay). Bounded: at most ``--max-connections`` connections (more are closed at once)
and at most ``QUEUED_CHUNKS`` chunks held per direction (the reader waits beyond that). The kernel
here has no netem (see TESTING.md), hence a proxy in user space. Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

CHUNK = 65536
QUEUED_CHUNKS = 256


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)

    async def read() -> None:
        while True:
            chunk = await reader.read(CHUNK)
            await held.put((time.monotonic() + delay, chunk))
            if not chunk:
                return

    async def write() -> None:
        while True:
            due, chunk = await held.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        pass


async def serve(target_port: int, delay: float, max_connections: int) -> None:
    open_connections = 0

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        nonlocal open_connections
        if open_connections >= max_connections:
            client_writer.close()
            return
        open_connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            open_connections -= 1
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, server_writer, delay), _pipe(server_reader, client_writer, delay))
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            open_connections -= 1
            for writer in (client_writer, server_writer):
                writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopped.set)
    async with server:
        await stopped.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--max-connections", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(serve(args.target_port, args.delay_ms / 1000, args.max_connections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
