"""The one lease refresh both runners use (jobs/leases.py): it writes at most every
``renew_seconds`` unless work waits for a slot, renews the caller's own claims in the same
transaction, and a runner whose last renewal is a whole lease old takes no slot (on both backends)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from mbxtui.core.db import write_transaction
from mbxtui.core.jobs.leases import SLOT_SYNC_GAP, ConnectionLeases
from mbxtui.core.models import database, utcnow
from mbxtui.core.services import profiles
from tests.core.support import IMAP_PROFILE


def leased_until(worker: str) -> list:
    return [row[0] for row in database.execute_sql(
        "SELECT lease_until FROM connection_lease WHERE worker = ?", [worker]).fetchall()]


def test_refresh_is_throttled_and_renews_the_callers_claims_in_the_same_write(admin):
    profile_id = profiles.create(admin, **{**IMAP_PROFILE, "max_connections": 2}).id
    leases = ConnectionLeases("host:1:a", lease_seconds=8.0)  # renewed every second
    renewed: list[datetime] = []

    def renew(until: datetime) -> int:
        renewed.append(until)
        return 7

    assert not leases.take(profile_id), "no slot before the first renewal"
    assert leases.refresh([profile_id] * 3, 4, utcnow(), renew) == 7  # three checks wait
    assert leases.take(profile_id) and leases.take(profile_id) and not leases.take(profile_id), "the bound is 2"
    assert len(renewed) == 1 and leased_until("host:1:a")

    # Straight after: nothing waits for a slot it could get, so nothing is written.
    assert leases.refresh([], 4, utcnow(), renew) is None
    assert len(renewed) == 1
    leases.give_back(profile_id)
    time.sleep(SLOT_SYNC_GAP + 0.05)
    # A slot lies unused: given back once the short gap has passed, not a whole renewal later.
    assert leases.refresh([], 4, utcnow(), renew) == 7
    assert leases.held[profile_id] == 1 and len(renewed) == 2
    assert leases.refresh([], 4, utcnow(), renew) is None

    time.sleep(leases.renew_seconds)
    assert leases.refresh([], 4, utcnow(), renew) == 7, "renewed every renew_seconds"
    assert len(renewed) == 3

    leases.synced_at -= leases.lease_seconds  # as if the database had kept us waiting a whole lease
    assert not leases.fresh and not leases.take(profile_id), "no slot on a lease that may have run out"
    with database.atomic():
        leases.release_all()
    assert leased_until("host:1:a") == []
    assert leases.refresh_due(set()), "after a release the next refresh asks at once"


def test_a_renewal_that_waited_for_the_write_lock_leases_from_the_moment_it_got_it(admin):
    """Behind a slow database link a renewal waited as long as the lease for the write lock, and
    wrote leases that had run out when they were written: other workers took the live worker's
    jobs (test_hosts.py, scenario e)."""
    profile_id = profiles.create(admin, **IMAP_PROFILE).id
    leases = ConnectionLeases("host:1:b", lease_seconds=3.0)
    holding, waited = threading.Event(), 1.5

    def hold_the_write_lock() -> None:
        try:
            with write_transaction():
                holding.set()
                time.sleep(waited)
        finally:
            database.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert holding.wait(10)
    renewed: list[datetime] = []
    now = utcnow()
    leases.refresh([profile_id], 1, now, renewed.append)
    holder.join()
    assert renewed and renewed[0] >= now + timedelta(seconds=leases.lease_seconds + waited - 0.5), \
        f"leased until {renewed[0]:%H:%M:%S.%f}, from {now:%H:%M:%S} before the wait"
