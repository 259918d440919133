"""Whether a worker process is fit to keep its work (``/healthz`` of ``mbxtui worker --health-port``):
it is not stopping, its database answers within a short timeout on a connection opened for the
question, and it renewed its leases within a lease (else other workers may take its work over).

The database is asked on a fresh connection each time: the worker's own connections stay open while
the file is moved away or the disk goes, and would go on answering from what they hold."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mbxtui.core.errors import one_line
from mbxtui.core.metrics import WorkerMetrics
from mbxtui.core.paths import is_server_url

DATABASE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Readiness:
    ok: bool
    reason: str  # what is wrong, one sentence; "" when ok
    lease_age_seconds: float | None  # since the last lease renewal; None before the first

    def as_dict(self) -> dict:
        answer: dict = {"status": "ok" if self.ok else "unavailable"}
        if not self.ok:
            answer["reason"] = self.reason
        answer["lease_age_seconds"] = None if self.lease_age_seconds is None else round(self.lease_age_seconds, 3)
        return answer


def _ask_database(location: Path | str) -> None:
    """Open ``location`` anew, read a row, close: raises what the database raised."""
    if is_server_url(location):
        import psycopg2

        from mbxtui.core.postgres import ssl_parameters

        connection = psycopg2.connect(str(location), connect_timeout=max(1, int(DATABASE_TIMEOUT_SECONDS)),
                                      application_name="mbxtui-health", **ssl_parameters(str(location)))
    else:
        # mode=rw: a file that is gone is an error, not a new empty database.
        connection = sqlite3.connect(f"file:{Path(location)}?mode=rw", uri=True, timeout=DATABASE_TIMEOUT_SECONDS)
    try:
        connection.cursor().execute("SELECT 1 FROM meta LIMIT 1")
    finally:
        connection.close()


class DatabaseProbe:
    """Asks the database on a thread of its own and waits at most ``timeout`` seconds. A question
    that has not come back is not asked again meanwhile (the answer is then "no answer")."""

    def __init__(self, location: Path | str, timeout: float = DATABASE_TIMEOUT_SECONDS) -> None:
        self.location = location
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pending: threading.Thread | None = None

    def problem(self) -> str | None:
        """None when the database answered in time, else what went wrong, one sentence."""
        with self._lock:
            if self._pending is not None and self._pending.is_alive():
                return f"the database has not answered for over {self.timeout:g} s"
            failure: list[str] = []

            def ask() -> None:
                try:
                    _ask_database(self.location)
                except Exception as exc:  # any failure is the answer
                    failure.append(one_line(exc) or exc.__class__.__name__)

            thread = threading.Thread(target=ask, name="mbxtui-health-database", daemon=True)
            thread.start()
            thread.join(self.timeout)
            if thread.is_alive():
                self._pending = thread
                return f"the database did not answer within {self.timeout:g} s"
            if failure:
                return f"the database cannot be read: {failure[0]}"
            return None


def readiness(metrics: WorkerMetrics, probe: DatabaseProbe, *, lease_seconds: float, stopping: bool) -> Readiness:
    """The verdict of ``/healthz``: not stopping, the database answering, the leases renewed within
    ``lease_seconds`` (counted from the start until the first renewal)."""
    snapshot = metrics.snapshot()
    now = time.monotonic()
    age = None if snapshot.last_renewal_at is None else now - snapshot.last_renewal_at
    if stopping:
        return Readiness(False, "the worker is stopping: it takes no new work and hands back what it holds", age)
    problem = probe.problem()
    if problem is not None:
        return Readiness(False, problem, age)
    since = now - (snapshot.last_renewal_at if snapshot.last_renewal_at is not None else snapshot.started_at)
    if since >= lease_seconds:
        return Readiness(False, f"the worker's leases were last renewed {since:.0f} s ago, beyond its "
                                f"{lease_seconds:g} s lease: other workers may take its work over", age)
    return Readiness(True, "", age)
