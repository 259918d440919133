"""The verifying TLS context every probe uses, and the bounds on a probe's time and on what it
reads.

smtplib, poplib and imaplib do not verify certificates unless given a context, so every TLS
connection a probe makes goes through ``ssl_context``.

A socket timeout only bounds one read: a server sending one byte a second would keep a probe alive
forever. ``Deadline`` bounds the whole probe instead: a watchdog thread shuts the connection down
when the time is up, which ends whatever read or write is blocked on it.

The mail libraries keep every line of an answer until it ends (poplib, smtplib) and every untagged
response (imaplib): a server sending an endless answer would fill the memory until the deadline.
The sockets a probe reads from (``BoundedSocket``, and the TLS sockets of ``ssl_context``) stop at
``MOST_BYTES_RECEIVED`` instead.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import os
import socket
import ssl
import threading
import time

# A socket timeout of zero would make the socket non-blocking, which the mail libraries reject.
_SHORTEST_SOCKET_TIMEOUT = 0.001
# What one connection may receive in all: a probe's conversation takes a few kilobytes.
MOST_BYTES_RECEIVED = 1024 * 1024


class TooMuchData(ValueError):
    """The server sent, or announced, more than a probe ever reads."""


class _BoundedReads:
    """Counts the bytes a socket receives and raises ``TooMuchData`` past the bound."""

    _received = 0

    def recv_into(self, buffer, *args) -> int:
        return self._count(super().recv_into(buffer, *args))

    def recv(self, *args) -> bytes:
        data = super().recv(*args)
        self._count(len(data))
        return data

    def _count(self, received: int) -> int:
        self._received += received
        if self._received > MOST_BYTES_RECEIVED:
            raise TooMuchData(f"sent more than {MOST_BYTES_RECEIVED // 1024} KiB")
        return received


class BoundedSocket(_BoundedReads, socket.socket):
    pass


def renew_receive_budget(sock: socket.socket | None, commands: int = 1) -> None:
    """Let a connection that reads mail receive ``MOST_BYTES_RECEIVED`` more for each of the
    ``commands`` whose answers it reads next: processing bounds each command reading messages, not
    the whole conversation."""
    if isinstance(sock, _BoundedReads):
        sock._received = -(max(commands, 1) - 1) * MOST_BYTES_RECEIVED


class _BoundedSSLSocket(_BoundedReads, ssl.SSLSocket):
    pass


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """A context that verifies the server's certificate and host name, against ``ca_file`` alone
    when it is set, else against the system's CAs. Contexts are shared between probes (loading the
    system CAs costs about 19 ms); a CA file that changes on disk gets a new one."""
    stamp = None
    if ca_file:
        try:
            info = os.stat(ca_file)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None  # create_default_context reports the unreadable file
    return _cached_context(ca_file, stamp)


@functools.lru_cache(maxsize=64)
def _cached_context(ca_file: str | None, stamp: tuple[int, int, int] | None) -> ssl.SSLContext:
    context = (
        ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    )
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.sslsocket_class = _BoundedSSLSocket
    return context


def describe_tls(sock: ssl.SSLSocket) -> str:
    cipher = sock.cipher()
    return f"{sock.version()}, {cipher[0]}" if cipher else str(sock.version())


class _Watchdog:
    """One thread that expires every probe's ``Deadline`` on time. A timer thread per probe cost
    a thread start and its context switches per connection, thousands of them in a large Test &
    Enable run."""

    def __init__(self) -> None:
        self._wakeup = threading.Condition()
        self._due: list[tuple[float, int, Deadline]] = []  # a heap of (ends_at, order, deadline)
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, deadline: Deadline) -> None:
        with self._wakeup:
            if self._thread is None or self._pid != os.getpid():  # none yet, or a forked child
                self._due.clear()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="mbxtui-probe-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._due, (deadline.ends_at, next(self._order), deadline))
            if self._due[0][2] is deadline:
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while self._due and self._due[0][2].finished:
                    heapq.heappop(self._due)
                if not self._due:
                    self._wakeup.wait()
                    continue
                ends_at, _, deadline = self._due[0]
                late = time.perf_counter() - ends_at
                if late < 0:
                    self._wakeup.wait(-late)
                    continue
                heapq.heappop(self._due)
            deadline.expire()


_WATCHDOG = _Watchdog()


class Deadline:
    """The moment a probe must be over by, enforced by the watchdog once entered as a context."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends_at = time.perf_counter() + seconds
        self.finished = False
        self._lock = threading.Lock()
        self._expired = False
        self._guarded: socket.socket | None = None

    def __enter__(self) -> Deadline:
        self.ends_at = time.perf_counter() + max(self.seconds, 0.0)
        _WATCHDOG.watch(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finished = True
        with self._lock:
            guarded, self._guarded = self._guarded, None
        if guarded is not None:
            guarded.close()

    def remaining(self) -> float:
        return max(self.ends_at - time.perf_counter(), 0.0)

    @property
    def passed(self) -> bool:
        return self._expired or self.remaining() <= 0.0

    def socket_timeout(self) -> float:
        return max(min(self.remaining(), self.seconds), _SHORTEST_SOCKET_TIMEOUT)

    def guard(self, sock: socket.socket) -> None:
        """Let the watchdog cut ``sock``'s connection, including any TLS layer wrapped around it
        later: wrapping detaches the original socket object, so the watchdog keeps a duplicate
        descriptor, and shutting a connection down through any descriptor ends it for all."""
        duplicate = sock.dup()
        with self._lock:
            previous, self._guarded = self._guarded, duplicate
            if self._expired:
                _cut(duplicate)
        if previous is not None:
            previous.close()

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self._expired = True
            if self._guarded is not None:
                _cut(self._guarded)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected any more: nothing left to cut
        sock.shutdown(socket.SHUT_RDWR)
