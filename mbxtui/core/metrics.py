"""What a worker process has done, counted in memory for ``mbxtui worker --health-port``'s
``/metrics`` (served by cli/health_server.py; nothing here speaks HTTP or a metrics format).

One ``WorkerMetrics`` per process (``WORKER``): the connection leases (jobs/leases.py) count the
connections they let open and the renewals they write; the worker command counts the tests and the
processing passes as they are reported to it. Every method is thread-safe: the counts are written by
the runners' threads and read by the server's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricsSnapshot:
    """The counts at one moment. ``*_at`` values are ``time.monotonic()`` readings or None."""

    tests: dict[str, int]  # Test & Enable jobs finished, per outcome (passed, failed, postponed)
    cycles: dict[str, int]  # processing cycles (incoming), per result (ok, failed)
    messages_read: int
    messages_recorded: int
    emails_sent: int
    emails_refused: int
    lease_renewals: int
    connections_in_use: dict[int, int]  # per profile id
    started_at: float
    last_renewal_at: float | None
    last_pass_at: float | None  # the end of the last processing pass


@dataclass
class WorkerMetrics:
    tests: dict[str, int] = field(default_factory=dict)
    cycles: dict[str, int] = field(default_factory=dict)
    messages_read: int = 0
    messages_recorded: int = 0
    emails_sent: int = 0
    emails_refused: int = 0
    lease_renewals: int = 0
    connections_in_use: dict[int, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    last_renewal_at: float | None = None
    last_pass_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def connection_opened(self, profile_id: int) -> None:
        with self._lock:
            self.connections_in_use[profile_id] = self.connections_in_use.get(profile_id, 0) + 1

    def connection_closed(self, profile_id: int) -> None:
        with self._lock:
            self.connections_in_use[profile_id] = max(0, self.connections_in_use.get(profile_id, 0) - 1)

    def lease_renewed(self) -> None:
        with self._lock:
            self.lease_renewals += 1
            self.last_renewal_at = time.monotonic()

    def tested(self, outcomes: Iterable[str]) -> None:
        """``outcomes``: one per Test & Enable job written (its outcome's value)."""
        with self._lock:
            for outcome in outcomes:
                self.tests[outcome] = self.tests.get(outcome, 0) + 1

    def pass_ended(self, summary: Any) -> None:
        """A processing pass's ``SyncSummary`` (core/sync/runner.py): its cycles, the messages they
        read and recorded, and the email its sending pass sent or saw refused."""
        with self._lock:
            for cycled in summary.mailboxes:
                result = "ok" if cycled.ok else "failed"
                self.cycles[result] = self.cycles.get(result, 0) + 1
                self.messages_read += cycled.messages
                self.messages_recorded += cycled.recorded
            self.emails_sent += summary.outgoing.sent
            self.emails_refused += summary.outgoing.failed
            self.last_pass_at = time.monotonic()

    def restart(self) -> None:
        """Count from zero, as a process that starts a worker does (the console's runners may have
        counted before)."""
        with self._lock:
            self.tests.clear()
            self.cycles.clear()
            self.messages_read = self.messages_recorded = self.emails_sent = self.emails_refused = 0
            self.lease_renewals = 0
            self.started_at = time.monotonic()
            self.last_renewal_at = self.last_pass_at = None

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                tests=dict(self.tests), cycles=dict(self.cycles), messages_read=self.messages_read,
                messages_recorded=self.messages_recorded, emails_sent=self.emails_sent,
                emails_refused=self.emails_refused, lease_renewals=self.lease_renewals,
                connections_in_use=dict(self.connections_in_use),
                started_at=self.started_at, last_renewal_at=self.last_renewal_at, last_pass_at=self.last_pass_at)


WORKER = WorkerMetrics()
