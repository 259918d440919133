"""Open file descriptors: how many the runners' connections may use at once, so that a low limit
(``ulimit -n``, systemd's ``LimitNOFILE``) makes Test & Enable and processing slower, never fail.

Every connection a runner's thread opens costs descriptors: a socket per mail server, the CA file
while TLS starts, and for the threads that write, a database connection (SQLite: the file, its
write-ahead log and its shared memory). :class:`DescriptorBudget` hands out those descriptors from
what the soft limit leaves once the process has opened what it needs: a thread starts its
mailbox only when its share is free, and waits otherwise. Should the limit still be reached (the
process opened more elsewhere), the failure is the machine's, not the mail server's
(``TOO_MANY_OPEN_FILES``): the mailbox is tried again later and the budget shrinks.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import sqlite3
import threading

log = logging.getLogger(__name__)

OUT_OF_DESCRIPTORS_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})
# What a thread may hold at once: a Test & Enable check talks to the incoming and outgoing servers
# and loads the CA file; a processing thread one server, the CA file and its database connection.
PER_TEST = 3
PER_PROCESSING = 4
# Left for what the process opens besides the runners' threads: database connections of the
# runners' own threads, the keyring, the log, name lookups.
HEADROOM = 16
UNLIMITED = 1 << 30
SQLITE_CANTOPEN = 14


def out_of_descriptors(exc: BaseException | None) -> bool:
    """True when ``exc``, or an exception it was raised from, is the process or the system running
    out of file descriptors (EMFILE, ENFILE)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in OUT_OF_DESCRIPTORS_ERRNOS:
            return True
        if _cannot_open_near_the_limit(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _cannot_open_near_the_limit(exc: BaseException) -> bool:
    # SQLite says "unable to open database file" (SQLITE_CANTOPEN) without the errno behind it: a
    # thread's new connection to a database the process already has open fails so when the process
    # is out of descriptors. Seen under `ulimit -n 64` as INTERNAL_ERROR on sending, counted for R16.
    # The count is read after the failure, when other threads may have closed some: HEADROOM of them.
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF != SQLITE_CANTOPEN:
        return False
    limit = soft_limit()
    if limit == UNLIMITED:
        return False
    try:
        open_now = len(os.listdir("/proc/self/fd"))  # itself needs a descriptor
    except OSError as error:
        return error.errno in OUT_OF_DESCRIPTORS_ERRNOS
    return open_now >= limit - HEADROOM


def soft_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


def open_descriptors() -> int:
    """How many descriptors the process has open now (0 where the system does not say)."""
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(listing))
        except OSError:
            continue
    return 0


def limit_sentence() -> str:
    """The one sentence of a ``TOO_MANY_OPEN_FILES`` failure."""
    return (f"mbxtui ran out of file descriptors (the open-file limit of its process is {soft_limit()}): "
            "the mail server was not at fault and the mailbox is tried again; raise LimitNOFILE= in the "
            "worker's systemd unit or `ulimit -n` in its shell")


class DescriptorBudget:
    """The descriptors the runners' threads may hold at once, shared by every runner of the process.

    ``take`` and ``give_back`` are called by the thread that dispatches work (thread-safe)."""

    def __init__(self, limit: int | None = None, already_open: int | None = None) -> None:
        self.limit = soft_limit() if limit is None else limit
        opened = open_descriptors() if already_open is None else already_open
        self.total = max(0, self.limit - opened - HEADROOM)
        self._in_use = 0
        self._lock = threading.Lock()
        self._warned: set[tuple[str, int]] = set()

    def threads_that_fit(self, threads: int, per_thread: int, what: str) -> int:
        """How many of ``threads`` fit in the budget (at least one); when fewer than asked, warns
        once, saying why the work is slower and what to raise."""
        fitting = max(1, min(threads, self.total // per_thread))
        if fitting < threads:
            self.warn(what, threads, fitting, per_thread)
        return fitting

    def warn(self, what: str, threads: int, fitting: int, per_thread: int) -> None:
        with self._lock:
            if (what, fitting) in self._warned:
                return
            self._warned.add((what, fitting))
        needed = self.limit - self.total + threads * per_thread
        _say(f"{what} runs {fitting} connection(s) at a time instead of {threads}, so it is slower: the open-file "
             f"limit of this process is {self.limit} (RLIMIT_NOFILE)", f"to at least {needed}")

    def take(self, descriptors: int) -> bool:
        """Reserve ``descriptors`` for one thread's work; False when they are not free now (the
        work waits). One thread's work is always allowed when nothing else holds any."""
        with self._lock:
            if self._in_use and self._in_use + descriptors > self.total:
                return False
            self._in_use += descriptors
            return True

    def give_back(self, descriptors: int) -> None:
        with self._lock:
            self._in_use = max(0, self._in_use - descriptors)

    def ran_out(self, descriptors: int, what: str) -> None:
        """The limit was reached although the budget allowed the work: lower the budget by that
        work's share, so that fewer threads run at once from now on."""
        with self._lock:
            self.total = max(descriptors, self.total - descriptors)
            total = self.total
        _say(f"{what} ran out of file descriptors: it now keeps at most {total} open for its connections",
             f"(now {self.limit})")


def _say(why: str, raise_to: str) -> None:
    """A warning of the worker's (``mbxtui worker`` prints it), whose limit is its unit's or its
    shell's. The console says its own advice from ``why`` and ``raise_to`` (tui/machine_notices.py):
    its limit is its shell's, and no systemd unit runs it."""
    log.warning("%s; raise LimitNOFILE= in the worker's systemd unit or `ulimit -n` %s", why, raise_to,
                extra={"why": why, "raise_to": raise_to})


_shared: DescriptorBudget | None = None
_shared_lock = threading.Lock()


def shared_budget() -> DescriptorBudget:
    """The process's budget, measured when first asked for (a runner starting)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.limit != soft_limit():
            _shared = DescriptorBudget()
        return _shared
