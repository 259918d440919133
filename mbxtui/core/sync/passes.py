"""The loop both processing runners share (incoming cycles, sending): each waiting mailbox starts
on a pool thread once its profile has a leased connection slot (R8, R23), each finished one gives
its slot back and is written, and the leases are renewed as the loop turns."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Protocol, TypeVar

from mbxtui.core import descriptors
from mbxtui.core.jobs.leases import ConnectionLeases


class HasProfile(Protocol):
    @property
    def profile(self) -> object: ...


Target = TypeVar("Target", bound=HasProfile)
Result = TypeVar("Result")


def run_within_slots(pool: ThreadPoolExecutor, targets: list[Target], *, threads: int, leases: ConnectionLeases,
                     work: Callable[[Target], Result], finish: Callable[[Target, Result], None],
                     renew: Callable[[list[Target]], None],
                     finish_all: Callable[[list[tuple[Target, Result]]], None] | None = None) -> None:
    """Until every target has run: start what has a slot, wait for one to end, ``finish`` it on
    this thread; with ``finish_all``, the targets found ended at once are given to it together
    instead (the incoming runner writes their status in one transaction). ``renew`` is given the
    targets still waiting (it may empty the list to stop). A target also waits for its share of
    the process's open-file limit (see descriptors.py)."""
    budget = descriptors.shared_budget()
    each = descriptors.PER_PROCESSING
    threads = budget.threads_that_fit(threads, each, "processing")
    waiting = list(targets)
    in_flight: dict[Future[Result], Target] = {}
    renew(waiting)
    try:
        while waiting or in_flight:
            blocked = []
            for target in waiting:
                if len(in_flight) < threads and budget.take(each):
                    if leases.take(target.profile.id):
                        in_flight[pool.submit(work, target)] = target
                        continue
                    budget.give_back(each)
                blocked.append(target)
            waiting = blocked
            if not in_flight:
                time.sleep(0.2)  # other workers hold every slot these mailboxes need
                renew(waiting)
                continue
            done, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
            ended = []
            for future in done:
                target = in_flight.pop(future)
                budget.give_back(each)
                leases.give_back(target.profile.id)
                ended.append((target, future.result()))
            if ended and finish_all is not None:
                finish_all(ended)
            else:
                for target, result in ended:
                    finish(target, result)
            renew(waiting)
    finally:  # a work that raised stops the pass: the others' shares of the limit come back as they end
        for future in in_flight:
            wait([future])
            budget.give_back(each)
