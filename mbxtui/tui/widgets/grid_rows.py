"""The grid's cache of rows already read, and what it still has to read.

Rows are kept by mailbox id (``textual.cache.LRUCache``), so a row read for one filter or sort is
drawn at once under the next. A row not in the cache is drawn as a placeholder while its page is
read on a worker thread; a row made stale (changed elsewhere) keeps being drawn as it was until
its new values arrive, so repaints after a change never flicker."""

from __future__ import annotations

import gc
from typing import Iterable

from textual.cache import LRUCache

from mbxtui.tui.widgets.grid_drawing import RowView

PAGE_SIZE = 100  # rows read per statement
CACHED_PAGES = 32

GONE = RowView({}, False)  # the mailbox no longer exists


def pages_near(top: int, height: int) -> set[int]:
    """The pages a screen of ``height`` rows from ``top`` shows or reads ahead (half a page above
    and below). Only these are read when the reads start: paging fast, or jumping from end to
    home, queues pages that are off screen by then; reading those (20 pages at once, measured
    after the bench's jumps) made the next keystroke's rows wait 130-360 ms."""
    first, last = max(0, top - PAGE_SIZE // 2), top + height + PAGE_SIZE // 2
    return set(range(first // PAGE_SIZE, last // PAGE_SIZE + 1))


class RowCache:
    """Rows by mailbox id, the ids being read, and the ids to read again."""

    def __init__(self, size: int = PAGE_SIZE * CACHED_PAGES) -> None:
        self._rows: LRUCache[int, tuple[int, RowView]] = LRUCache(size)
        self._reading: set[int] = set()
        self._stale: set[int] = set()
        self._epoch = 0  # rows read before the last ``invalidate_all`` are stale
        self._valid_from = 0

    @property
    def reading(self) -> bool:
        return bool(self._reading)

    def get(self, mailbox_id: int) -> RowView | None:
        """The row as last read (perhaps stale), or None when it was never read."""
        entry = self._rows.get(mailbox_id)
        return None if entry is None else entry[1]

    def wanted(self, ids: Iterable[int]) -> list[int]:
        """Those of ``ids`` that are missing or stale and not being read already."""
        wanted = []
        for mailbox_id in ids:
            if mailbox_id in self._reading:
                continue
            entry = self._rows.get(mailbox_id)
            if entry is None or entry[0] < self._valid_from or mailbox_id in self._stale:
                wanted.append(mailbox_id)
        return wanted

    def start_reading(self, ids: list[int]) -> int:
        """Note that ``ids`` are being read; returns the epoch to hand back to ``store``."""
        self._reading.update(ids)
        self._stale.difference_update(ids)
        return self.token()

    def token(self) -> int:
        """An epoch for rows about to be read elsewhere (with a view's ids) and given to ``store``."""
        self._epoch += 1
        return self._epoch

    def store(self, epoch: int, asked: list[int], rows: dict[int, RowView]) -> None:
        """Rows read for ``asked`` (an id missing from ``rows`` no longer exists), read after
        ``epoch`` was handed out: rows invalidated before that are fresh again."""
        self._reading.difference_update(asked)
        for mailbox_id in asked:
            self._rows.discard(mailbox_id)  # LRUCache.set keeps a value already held
            self._rows.set(mailbox_id, (epoch, rows.get(mailbox_id, GONE)))

    def abandon(self, asked: list[int]) -> None:
        """A read of ``asked`` failed: they may be asked for again."""
        self._reading.difference_update(asked)

    def invalidate(self, ids: Iterable[int]) -> bool:
        """Read these rows again when next drawn; True when any of them is held."""
        held = [mailbox_id for mailbox_id in ids if mailbox_id in self._rows or mailbox_id in self._reading]
        self._stale.update(held)
        return bool(held)

    def invalidate_all(self) -> None:
        """Read every row again when next drawn (those being read too)."""
        self._epoch += 1
        self._valid_from = self._epoch
        self._stale.update(self._reading)

    def clear(self) -> None:
        self._rows.clear()
        self._stale.clear()


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, classes, the app's widgets) out of the garbage
    collector's reach, once per process. A full collection otherwise walks all of them: 35-160 ms
    on the UI thread at 70,000 objects (measured under load 5), a stall that lands on a random key
    or keystroke; after the freeze it walks only what was made since (3 ms after 30 pages)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


_frozen = False
