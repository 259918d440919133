"""The connection bound of each profile (R8), held across every runner of every worker process on
every host: a runner leases connection slots in the table ``connection_lease`` and opens a
connection only on a slot it holds.

A runner asks for slots in batches, not per mailbox: ``sync`` is one short write transaction that
renews its leases, takes more slots when it has work waiting for them and the profile has them free,
and gives back what it no longer uses. Writers queue on the database's write lock, so the sum of the
slots of the rows never exceeds the profile's ``max_connections``. A runner that stops renewing (its
process died) loses its rows when their lease ends, and its slots go to the others.

Runners that want a profile's connections at the same time share them: each may hold its fair share
(the bound over the number of runners that want some); one holding more lets the excess go as its
tests finish, so a worker that starts late gets connections without waiting for the queue to empty.

Both runners (Test & Enable and processing) renew through ``refresh``: at most every
``renew_seconds`` (a quarter of the lease, at most a second), sooner (but not more often than
``SLOT_SYNC_GAP``) when work waits for a slot or slots lie unused; and a runner whose last renewal
is a whole lease old takes no slot until it renews again (its slots may be another's by then).

On PostgreSQL a heartbeat thread also extends the runner's claims and slot rows every
``renew_seconds``, a statement per table outside the write lock (it only moves the end of rows the
runner still holds, and only later; a row another runner already took over or removed is not
touched, nor one another transaction holds at that moment). The loop's renewals queue on the write
lock behind every writer of every host, and their gaps are the loop's own: with 50 ms per database
reply and six runners, 0.35 s per renewal and gaps of up to 6.5 s, past a 3-s lease, so live
workers' jobs and mailboxes were taken over (34 jobs and 8 mailboxes of 30). The heartbeat stops
extending once the loop has not renewed for ``STALLED_LEASES`` leases, so that the work of a stuck
loop still goes to others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from mbxtui.core import clock, dialect
from mbxtui.core.db import drop_connection, write_transaction
from mbxtui.core.jobs import clock_jumps
from mbxtui.core.jobs.queue import rows_by_name
from mbxtui.core.metrics import WORKER as metrics
from mbxtui.core.models import database
from mbxtui.core.sql_lists import placeholders

# Asking for slots when work waits for them, or giving back unused ones, at most this often.
SLOT_SYNC_GAP = 0.2
# The heartbeat extends nothing once the loop's last renewal is this many leases old.
STALLED_LEASES = 5

log = logging.getLogger(__name__)


class ConnectionLeases:
    """The slots one runner holds, per profile id. ``take``/``give_back`` are in memory (the
    runner's own thread); ``sync`` writes, inside the caller's write transaction. ``claims``: the
    table whose rows the runner claims under its name (``worker``, ``lease_until``), extended by
    the heartbeat with its slots."""

    def __init__(self, worker: str, lease_seconds: float = 60.0, claims: str | None = None) -> None:
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.claims = claims
        self._beating: threading.Event | None = None  # set to stop the heartbeat thread
        self._renewed = (float("-inf"), datetime.min)  # (clock.monotonic(), now) of the loop's last renewal
        self.held: dict[int, int] = {}
        self.busy: dict[int, int] = {}
        # How many of its held slots the runner may use: below ``held`` while it gives slots back.
        self.usable: dict[int, int] = {}
        self.synced_at = float("-inf")  # clock.monotonic() of the last renewal

    @property
    def renew_seconds(self) -> float:
        return min(1.0, self.lease_seconds / 4)

    @property
    def fresh(self) -> bool:
        """False when the last renewal is a whole lease old (the database kept us waiting): the
        slots held may have gone to other runners since."""
        return clock.monotonic() - self.synced_at < self.lease_seconds

    def take(self, profile_id: int) -> bool:
        if not self.fresh:
            return False
        busy = self.busy.get(profile_id, 0)
        if busy >= min(self.held.get(profile_id, 0), self.usable.get(profile_id, 0)):
            return False
        self.busy[profile_id] = busy + 1
        metrics.connection_opened(profile_id)
        return True

    def give_back(self, profile_id: int) -> None:
        self.busy[profile_id] -= 1
        metrics.connection_closed(profile_id)

    def needs_sync(self, blocked: set[int]) -> bool:
        """``blocked``: profiles whose waiting tests found no usable slot. True when asking the
        database could give this runner slots, or when it holds slots it does not use."""
        for profile_id in blocked:
            if profile_id not in self.usable or self.held.get(profile_id, 0) < self.usable[profile_id]:
                return True
        return any(held > self.busy.get(profile_id, 0)
                   and (profile_id not in blocked or held > self.usable.get(profile_id, 0))
                   for profile_id, held in self.held.items())

    def wanted(self, waiting: Iterable[int], most: int) -> dict[int, int]:
        """Slots per profile this runner could use now: one per waiting piece of work (``waiting``:
        the profile id of each) plus those busy, at most ``most`` (its threads)."""
        wanted: dict[int, int] = {}
        for profile_id in waiting:
            wanted[profile_id] = wanted.get(profile_id, 0) + 1
        for profile_id, busy in self.busy.items():
            wanted[profile_id] = wanted.get(profile_id, 0) + busy
        return {profile_id: min(most, count) for profile_id, count in wanted.items()}

    def refresh_due(self, blocked: set[int]) -> bool:
        """Whether ``refresh`` should write now (see the module's text); ``blocked``: profiles whose
        waiting work found no usable slot."""
        since = clock.monotonic() - self.synced_at
        return since >= self.renew_seconds or (since >= SLOT_SYNC_GAP and self.needs_sync(blocked))

    def refresh(self, waiting: list[int], most: int, now: datetime, renew_claims: Callable[[datetime], int | None],
                *, blocked: set[int] | None = None) -> int | None:
        """When due: one write transaction that renews the caller's own claims (``renew_claims``,
        given the new lease end; what it returns is returned, 0 for None) and this runner's slots,
        taking or giving back slots for ``waiting`` (the profile id of each piece of work that
        waits) within ``most`` per profile. ``blocked``: the profiles of ``waiting`` that found no
        slot (all of them unless said). Not due: nothing is written and None is returned."""
        if not self.refresh_due(set(waiting) if blocked is None else blocked):
            return None
        started = clock.monotonic()
        clock_jumps.follow_database()  # on PostgreSQL, every few seconds: the next ``now`` goes by it
        jumped_back = clock.current().backward_jump()
        try:
            with write_transaction():
                if jumped_back:
                    clock_jumps.bring_back(now, self.lease_seconds)
                written = clock.advanced(now, started)  # the leases run from the lock's moment
                answer = renew_claims(written + timedelta(seconds=self.lease_seconds))
                self.sync(self.wanted(waiting, most), written, self.lease_seconds)
        except BaseException:
            clock.current().unreport(jumped_back)
            raise
        self.synced_at = started  # judged from before the wait for the lock: the slots' freshness errs short
        self._renewed = (started, now)
        metrics.lease_renewed()
        if self._beating is None and dialect.current().name == "postgresql":
            self._beating = threading.Event()
            threading.Thread(target=self._heartbeat, args=(self._beating,), daemon=True,
                             name=f"mbxtui-lease-{self.worker}").start()
        return answer or 0

    def _heartbeat(self, stopped: threading.Event) -> None:
        """Extend this runner's claims and slots every ``renew_seconds`` until ``stopped``, by the
        runner's clock as the loop last read it plus the time since, on a connection of its own."""
        try:
            while not stopped.wait(self.renew_seconds):
                started, then = self._renewed
                since = clock.monotonic() - started
                if since >= STALLED_LEASES * self.lease_seconds:
                    continue
                now = then + timedelta(seconds=since)
                until = now + timedelta(seconds=self.lease_seconds)
                try:
                    for table in filter(None, ("connection_lease", self.claims)):
                        # Rows another transaction holds are skipped, not waited for: it is this
                        # runner's loop writing them (or another runner taking them over), and
                        # waiting, the heartbeat locked rows in its own order and deadlocked with
                        # the loop's writes (in 3 of 6 runs of test_hosts.py's scenario e).
                        database.execute_sql(
                            f"UPDATE {table} SET lease_until = ? WHERE ctid IN (SELECT ctid FROM {table} "
                            "WHERE worker = ? AND lease_until >= ? AND lease_until < ? FOR UPDATE SKIP LOCKED)",
                            [until, self.worker, now, until])
                except Exception as exc:  # the database out of reach: the loop says so, this waits
                    log.debug("lease heartbeat of %s: %s", self.worker, exc)
                    drop_connection()
        finally:
            drop_connection()

    def sync(self, wanted: dict[int, int], now: datetime, lease_seconds: float) -> None:
        """Renew this runner's leases until ``now + lease_seconds``, drop every expired lease, and
        hold per profile what it may of ``wanted`` (connections it could use now: tests running and
        waiting, within its threads). Profiles left out of ``wanted`` keep their busy slots only."""
        until = now + timedelta(seconds=lease_seconds)
        expired = clock.current().expired_before(now, lease_seconds)
        database.execute_sql("DELETE FROM connection_lease WHERE lease_until < ?", [expired.isoformat(sep=" ")])
        profile_ids = sorted(set(wanted) | {p for p, held in self.held.items() if held} |
                             {p for p, busy in self.busy.items() if busy})
        if not profile_ids:
            return
        marks = placeholders(profile_ids)
        bounds = {row["id"]: row["max_connections"] for row in rows_by_name(database.execute_sql(
            f"SELECT id, max_connections FROM profile WHERE id IN ({marks})", profile_ids))}
        others_held: dict[int, int] = {}
        others_wanting: dict[int, int] = {}
        mine: dict[int, int] = {}
        for lease in rows_by_name(database.execute_sql(
                f"SELECT profile_id, worker, slots, wanted FROM connection_lease WHERE profile_id IN ({marks})",
                profile_ids)):
            profile_id = lease["profile_id"]
            if lease["worker"] == self.worker:
                mine[profile_id] = lease["slots"]
                continue
            others_held[profile_id] = others_held.get(profile_id, 0) + lease["slots"]
            if lease["wanted"] > 0:
                others_wanting[profile_id] = others_wanting.get(profile_id, 0) + 1
        for profile_id in profile_ids:
            bound = max(0, bounds.get(profile_id, 0))
            busy = self.busy.get(profile_id, 0)
            want = max(wanted.get(profile_id, 0), busy)
            held = mine.get(profile_id, 0)  # what the database says: nothing if our lease ran out
            share = -(-bound // (1 + others_wanting.get(profile_id, 0)))
            usable = min(want, share)
            free = max(0, bound - others_held.get(profile_id, 0) - held)
            if usable > held:
                new = held + min(usable - held, free)
            else:
                new = min(held, max(usable, busy))
            self.held[profile_id] = new
            self.usable[profile_id] = usable
            if new == 0 and want == 0:
                database.execute_sql("DELETE FROM connection_lease WHERE profile_id = ? AND worker = ?",
                                     [profile_id, self.worker])
                self.held.pop(profile_id, None)
                self.usable.pop(profile_id, None)
                continue
            database.execute_sql(
                "INSERT INTO connection_lease (profile_id, worker, slots, wanted, lease_until) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (profile_id, worker) DO UPDATE SET slots = excluded.slots, wanted = excluded.wanted, "
                "lease_until = excluded.lease_until",
                [profile_id, self.worker, new, want, until])

    def release_all(self) -> None:
        """Give back every slot (the runner stops; nothing of it is running)."""
        if self._beating is not None:  # not waited for: what it may still write matches no row after this
            self._beating.set()
            self._beating = None
        database.execute_sql("DELETE FROM connection_lease WHERE worker = ?", [self.worker])
        self.held.clear()
        self.usable.clear()
        self.synced_at = float("-inf")  # the next refresh asks at once
