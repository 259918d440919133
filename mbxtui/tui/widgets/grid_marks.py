"""The grid's marks: a set of mailbox ids (so marks survive re-sorting and refiltering), and
whether they are the whole view, marked with "mark all" and unchanged since.

"Mark all" on a large view may come before the view's ids are all read: the marks then stand for
the whole view at once (``whole_view_pending``), count as the view's total and are filled in
with ``fill_whole_view`` when the ids arrive."""

from __future__ import annotations

from typing import Iterable, Iterator

from mbxtui.core.idset import IdSet


class MarkSet:
    """Marked mailbox ids, the anchor of a range, and the "whole view" state."""

    def __init__(self) -> None:
        self.ids = IdSet()
        self.anchor_id: int | None = None  # the row last marked or unmarked one at a time
        self.whole_view = False  # every mailbox of the view is marked, and nothing changed since
        self.whole_view_pending = False  # ... but the view's ids are not all read yet
        self.up_to_id = 0  # the newest mailbox of the view when it was marked whole
        self._pending_count = 0

    def __len__(self) -> int:
        return max(len(self.ids), self._pending_count) if self.whole_view_pending else len(self.ids)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __contains__(self, mailbox_id: object) -> bool:
        # While the whole view is marked but not read, every row the grid shows is in the view.
        return self.whole_view_pending or mailbox_id in self.ids

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __eq__(self, other: object) -> bool:
        return self.ids == (other.ids if isinstance(other, MarkSet) else other)

    __hash__ = None  # type: ignore[assignment]  (changes as marks are made)

    def __repr__(self) -> str:
        return f"MarkSet({self.ids!r}{', whole view' if self.whole_view else ''})"

    def toggle(self, mailbox_id: int) -> None:
        """Mark this mailbox, or unmark it; it becomes the anchor of a range."""
        self._settle()
        if mailbox_id in self.ids:
            self.ids.discard(mailbox_id)
        else:
            self.ids.add(mailbox_id)
        self.anchor_id = mailbox_id
        self.whole_view = False

    def add(self, ids: Iterable[int]) -> bool:
        """Mark these mailboxes; True when that marked any not marked before."""
        self._settle()
        before = len(self.ids)
        self.ids.update(ids)
        self.whole_view = False
        return len(self.ids) != before

    def mark_whole_view(self, known_ids: Iterable[int], *, complete: bool, total: int, up_to_id: int) -> None:
        """Mark every mailbox of the view: ``known_ids`` are those read so far (all of them when
        ``complete``), ``total`` how many the view holds. It counts as the whole view unless other
        marks were there already."""
        whole = not self.ids or self.whole_view
        self._settle()
        self.ids.update(known_ids)
        self.whole_view = whole
        self.up_to_id = up_to_id
        self.whole_view_pending = not complete
        self._pending_count = total

    def fill_whole_view(self, ids: Iterable[int], up_to_id: int) -> None:
        """The view's ids, now all read, for a "mark all" made before they were."""
        if self.whole_view_pending:
            self.whole_view_pending = False
            self.ids.update(ids)
            self.up_to_id = up_to_id

    def keep_only(self, ids: Iterable[int]) -> bool:
        """Drop the marks outside ``ids``; True when any was dropped."""
        self._settle()
        before = len(self.ids)
        self.ids.intersection_update(ids)
        return len(self.ids) != before

    def view_changed(self) -> None:
        """The view, filter or sort changed: the marks are no longer "the whole view"."""
        self._settle()
        self.whole_view = False

    def clear(self) -> None:
        self.ids.clear()
        self.anchor_id = None
        self.whole_view = False
        self.whole_view_pending = False

    def _settle(self) -> None:
        # Any change before a pending "mark all" is filled in keeps only the ids already known.
        self.whole_view_pending = False
