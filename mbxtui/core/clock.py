"""Time, in one place: ``now()`` is the wall clock (UTC, to the second) for moments written to the
database and compared with moments other processes wrote (leases, retries, polling, R16's hour,
staleness); ``monotonic()`` is for durations and deadlines within one process (sleeps, timeouts,
lease renewals), which a change of the wall clock must not stretch or cut short.

Whose clock decides between processes: on SQLite the host's, which every process shares (the file
is local); on PostgreSQL the database server's, so that workers on hosts whose clocks disagree
(or one whose clock jumps) never judge each other's leases by different clocks, and a console or
the CLI on a host whose clock is wrong neither writes nor judges by it. Every process reads the
server's clock (``follow``, from jobs/clock_jumps.py) when it opens the database, a worker again
every few seconds, and in between advances that reading by its monotonic clock: its own wall clock
no longer matters.

The wall clock can jump (an NTP step after a VM resumes, ``date -s``, a wrong RTC corrected at
boot). Each reading of ``now()`` is compared with the monotonic clock, and a difference that moved
by more than ``JUMP_TOLERANCE`` is a jump:
- forward: every lease in the database looks run out at once, those of live workers too, which
  would run their jobs and cycles a second time. For one lease after the jump, a lease counts as
  run out only if it had run out by the clock as it read before the jump (``expired_before``):
  live workers renew theirs in that time, dead workers' leases are taken over as before;
- backward: every deadline written before the jump (a lease, a retry, the next poll) lies hours
  further ahead than it was meant to, and every moment written (R16's failures and alert, an
  owner's email, the last successful sync) lies in the future. ``backward_jump`` reports it once,
  and ``jobs/clock_jumps.py`` brings those values back within what could have been written now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

log = logging.getLogger(__name__)

# Seconds the wall clock may move against the monotonic clock between two readings before it
# counts as a jump. NTP slews at most 0.5 ms a second; a step is what this is for.
JUMP_TOLERANCE = 2.0


class Clock:
    """``wall``: seconds since the epoch (``time.time``); ``monotonic``: ``time.monotonic``. Tests
    give their own to jump at will."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._offset: float | None = None  # wall - monotonic at the last reading
        self._forward_at: float | None = None  # monotonic() when the last forward jump was seen
        self._forward_seconds = 0.0  # forward jumps seen since then, added up
        self._backward_seconds = 0.0  # backward jumps not yet reported by ``backward_jump``
        self._followed: float | None = None  # the clock followed (see ``follow``) - monotonic()

    def monotonic(self) -> float:
        return self._monotonic()

    def now(self) -> datetime:
        """The wall clock, UTC without a time zone, to the second (as the database stores it)."""
        mono = self._monotonic()
        followed = self._followed
        if followed is not None:
            wall = mono + followed
        else:
            wall = self._wall()
            self._observe(wall - mono, mono, "the system clock")
        return datetime.fromtimestamp(wall, timezone.utc).replace(tzinfo=None, microsecond=0)

    def follow(self, seconds_since_epoch: float) -> None:
        """From now on, go by the clock that reads ``seconds_since_epoch`` now (the database
        server's), advanced by the monotonic clock; a later reading that moved against it is a jump."""
        mono = self._monotonic()
        offset = seconds_since_epoch - mono
        with self._lock:
            first = self._followed is None
            self._followed = offset
        self._observe(offset, mono, "the clock, from this host's to the database server's," if first
                      else "the database server's clock")

    def _observe(self, offset: float, mono: float, what: str) -> None:
        with self._lock:
            previous, self._offset = self._offset, offset
            if previous is None:
                return
            jump = offset - previous
            if jump > JUMP_TOLERANCE:
                if self._forward_at is None or mono - self._forward_at > 3600:
                    self._forward_seconds = 0.0
                self._forward_at, self._forward_seconds = mono, self._forward_seconds + jump
                log.warning("%s jumped forward by %s: leases held by other workers are judged by the clock "
                            "as it was for one lease", what, timedelta(seconds=round(jump)))
            elif jump < -JUMP_TOLERANCE:
                self._backward_seconds -= jump
                log.warning("%s jumped back by %s: leases, retries and polls written before are brought "
                            "back within their intervals", what, timedelta(seconds=round(-jump)))

    def ago(self, now: datetime, seconds: float, *, within: float | None = None) -> datetime:
        """``seconds`` before ``now`` in time that passed: after a forward jump seen within the last
        ``within`` seconds (default ``seconds``), moments written before it are as far back as the
        clock said then, so the jump is taken off. R16's hour, R32's hour, the stale threshold."""
        with self._lock:
            jumped = self._forward_at is not None and self._monotonic() - self._forward_at < (
                seconds if within is None else within)
            return now - timedelta(seconds=seconds + (self._forward_seconds if jumped else 0.0))

    def expired_before(self, now: datetime, lease_seconds: float) -> datetime:
        """The moment before which another process's lease has run out: ``now``, but within
        ``lease_seconds`` after a forward jump, ``now`` as the clock read before the jump."""
        return self.ago(now, 0.0, within=lease_seconds)

    def backward_jump(self) -> float:
        """Seconds the clock jumped back since the last call (0.0: none); reported once."""
        with self._lock:
            seconds, self._backward_seconds = self._backward_seconds, 0.0
            return seconds

    def unreport(self, seconds: float) -> None:
        """``backward_jump``'s report was not acted on (its transaction failed): report it again."""
        with self._lock:
            self._backward_seconds += seconds


# The process's clock. Tests replace it with ``use``.
_clock = Clock()


def use(clock: Clock) -> Clock:
    """Make ``clock`` the process's clock; returns the one it replaces."""
    global _clock
    previous, _clock = _clock, clock
    return previous


def current() -> Clock:
    return _clock


def now() -> datetime:
    return _clock.now()


def monotonic() -> float:
    return _clock.monotonic()


def advanced(now: datetime, read_at: float) -> datetime:
    """``now``, read at ``read_at`` (``monotonic()``), as it is at this moment. A lease written in a
    write transaction runs from here, not from a ``now`` read before the wait for the write lock:
    behind 50 ms per database reply a claim or renewal waited 3 s for the lock, and wrote 3-s leases
    that had run out when they were written (other workers took the live worker's jobs)."""
    return now + timedelta(seconds=monotonic() - read_at)


def lease_end(now: datetime, read_at: float, lease_seconds: float) -> datetime:
    """The end of a lease of ``lease_seconds`` written at this moment (see ``advanced``)."""
    return advanced(now, read_at) + timedelta(seconds=lease_seconds)
