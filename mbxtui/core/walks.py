"""A filter's first matches in display order, found by walking that order in batches instead of
reading every match first: milliseconds where matches are common, where a filter no index serves
costs a scan of the whole table (seconds at a million rows).

The caller gives the batches (ids read from the sort column's index, or ranges of ids) and how to
test one against its filter; the walk stops once it has enough, once the batches run out, once its
time budget is spent or once it is told to stop (a newer query made it useless). A walk that gave
up shows what it found while the rest is read (the console says "searching…"). The mailbox grid
(services/mailbox_pages.py) and the Activities screen (services/activities.py) walk this way.
"""

from __future__ import annotations

import time
from typing import Callable, Generic, Iterable, NamedTuple, Sequence, TypeVar

Batch = TypeVar("Batch")
Found = TypeVar("Found")


class Walk(NamedTuple, Generic[Batch, Found]):
    """What a walk found, in the order of its batches; ``exhausted``: it tested every batch (so
    ``found`` is every match); ``last``: the last batch it tested (None: none)."""

    found: list[Found]
    exhausted: bool
    last: Batch | None


def first_matches(batches: Iterable[Batch], matching: Callable[[Batch], Sequence[Found]], wanted: int, *,
                  seconds: float | None = None, stop: Callable[[], bool] | None = None) -> Walk[Batch, Found]:
    """Test ``batches`` in order with ``matching`` (which gives a batch's matches in order) until
    ``wanted`` matches are found (then the first ``wanted``), the batches run out, ``seconds`` have
    passed or ``stop()`` is true; each test runs whole, so a batch should take a small share of
    ``seconds``."""
    deadline = None if seconds is None else time.monotonic() + seconds
    found: list[Found] = []
    last: Batch | None = None
    for batch in batches:
        last = batch
        found.extend(matching(batch))
        if len(found) >= wanted:
            del found[wanted:]
            return Walk(found, False, last)
        if (deadline is not None and time.monotonic() >= deadline) or (stop is not None and stop()):
            return Walk(found, False, last)
    return Walk(found, True, last)
