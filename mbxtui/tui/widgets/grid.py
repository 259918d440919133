"""The mailbox grid: a view of R20 as a table that stays fast at a million mailboxes, and never
waits on the database.

It draws with Textual's line API: the scrollable height is the number of rows, and each visible
line is drawn on demand (``grid_drawing``) from rows kept by id (``grid_rows``). The ids of the
whole view, in display order, are read once per query into an ``array`` (``MailboxPages``);
moving, paging and jumping only index into it. Marks are a set of mailbox ids (``grid_marks``),
so they survive re-sorting and refiltering.

Every read runs on a worker thread, as Toolong's log view does: drawing never waits. A row not
read yet is drawn as a placeholder and its page is queued for a worker, whose message brings the
rows and a repaint. A new view, filter or sort is read by an exclusive worker; each read carries
the number of the query it answers, so a slow read of an older query never replaces a newer one.
Until the new ids arrive the grid keeps showing the previous ones.
"""

from __future__ import annotations

from array import array
from dataclasses import replace
from typing import ClassVar, Iterable

from rich.style import Style
from textual import events, work
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from mbxtui.core.permissions import Actor
from mbxtui.core.services.mailbox_pages import GridQuery, MailboxPages, check_query
from mbxtui.core.services.selection import Selection
from mbxtui.tui.widgets.grid_drawing import (
    COLUMNS, COMPONENT_CLASSES, DEFAULT_CSS, Column, Layout, RowView, column_at, header_line, layout, message_line,
    row_line,
)
from mbxtui.tui.widgets.grid_marks import MarkSet
from mbxtui.tui.widgets.grid_reads import Interruptible, OrderRead, ReadOrder, RowsRead, read_order, read_rows
from mbxtui.tui.widgets.grid_rows import GONE, PAGE_SIZE, RowCache, freeze_startup_objects, pages_near

class MailboxGrid(ScrollView, can_focus=True):
    """Mailboxes of one view, filter and sort; a cursor row and a set of marked mailboxes.

    The first line is the header; it shows the sort column with ▲ (ascending) or ▼ (descending).
    Columns that do not fit are dropped, lowest priority first; the sort column always stays.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "cursor_first", "First", show=False),
        Binding("end", "cursor_last", "Last", show=False),
        Binding("space", "toggle_mark", "Mark", id="grid.toggle_mark"),
        Binding("shift+down", "extend_marks(1)", "Mark and move down", show=False, id="grid.extend_down"),
        Binding("shift+up", "extend_marks(-1)", "Mark and move up", show=False, id="grid.extend_up"),
        Binding("v", "mark_range", "Mark range from the last mark", show=False, id="grid.mark_range"),
        Binding("a", "mark_all_in_view", "Mark all", id="grid.mark_all"),
        Binding("u,escape", "clear_marks", "Unmark", id="grid.clear_marks"),
        Binding("s", "next_sort", "Sort", tooltip="Sort by the next column", id="grid.next_sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False, id="grid.reverse_sort"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = COMPONENT_CLASSES
    DEFAULT_CSS = DEFAULT_CSS

    cursor_row: reactive[int] = reactive(0, repaint=False, init=False)
    """Position of the cursor in the view (0 is the first mailbox)."""

    class CursorMoved(Message):
        """The cursor is on another mailbox (``None`` when the view is empty)."""

        def __init__(self, grid: MailboxGrid, mailbox_id: int | None) -> None:
            self.grid = grid
            self.mailbox_id = mailbox_id
            super().__init__()

        @property
        def control(self) -> MailboxGrid:
            return self.grid

    class ViewRead(Message):
        """The view's ids (or their first part) arrived: ``row_count`` and ``total_known`` changed."""

        def __init__(self, grid: MailboxGrid) -> None:
            self.grid = grid
            super().__init__()

        @property
        def control(self) -> MailboxGrid:
            return self.grid

    class MarksChanged(Message):
        """Mailboxes were marked or unmarked; ``count`` is how many are marked now."""

        def __init__(self, grid: MailboxGrid, count: int) -> None:
            self.grid = grid
            self.count = count
            super().__init__()

        @property
        def control(self) -> MailboxGrid:
            return self.grid

    def __init__(self, actor: Actor, *, view: str = "active", filter_text: str = "", sort: str = "name",
                 descending: bool = False, id: str | None = None, name: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, name=name, classes=classes)
        self.actor = actor
        self.columns: list[Column] = list(COLUMNS)
        self.marks = MarkSet()
        self._source = MailboxPages(actor)
        self.grid_query = GridQuery(view=view, filter_text=filter_text or "", sort=sort, descending=descending)
        check_query(self.grid_query, actor)
        self._generation = 0  # the number of the newest query; reads of older ones are dropped
        self._ids = array("q")  # the view's ids in display order, or the first of them while the rest is read
        self._total: int | None = 0  # how many the view holds; None while they are counted
        self._complete = True  # ``_ids`` holds the whole view
        self._reading_order = False  # the newest query's ids have not arrived yet
        self._never_read = True
        self._newest_id = 0
        self._prune_marks = False  # drop the marks outside the view once its ids are all read
        self._mark_all_when_read = 0  # "mark all" came while this query's ids were being read
        self._rows = RowCache()
        self._pages_wanted: set[int] = set()
        self._rows_failed = False
        self._long_read = Interruptible()
        self._layouts: LRUCache[tuple[int, str, tuple[Column, ...]], Layout] = LRUCache(16)
        self._announced_id: int | None = None
        self._painting: tuple[Style, int, Layout] | None = None

    # --- what the grid holds ---------------------------------------------------------------------

    @property
    def marked(self) -> MarkSet:
        """The marked mailboxes (compare, count and iterate it like a set of ids)."""
        return self.marks

    @property
    def row_count(self) -> int:
        """How many mailboxes the view holds (those found so far while ``total_known`` is False)."""
        return self._total if self._total is not None else len(self._ids)

    @property
    def total_known(self) -> bool:
        """False while a filter's first matches are shown and the rest are still counted."""
        return self._total is not None

    @property
    def cursor_id(self) -> int | None:
        """The mailbox under the cursor, or ``None`` when the view is empty (or that part of it
        is still being read)."""
        return self._ids[self.cursor_row] if self.cursor_row < len(self._ids) else None

    @property
    def view(self) -> str:
        return self.grid_query.view

    @property
    def filter_text(self) -> str:
        return self.grid_query.filter_text

    @property
    def sort(self) -> str:
        return self.grid_query.sort

    @property
    def descending(self) -> bool:
        return self.grid_query.descending

    @property
    def still_reading(self) -> bool:
        """True until the newest query's ids are all read."""
        return self._reading_order or not self._complete

    @property
    def query_shown(self) -> bool:
        """True once the newest query's ids (or the first of them) are shown."""
        return not self._reading_order

    @property
    def reading_rows(self) -> bool:
        """True while rows on screen (or asked for) are being read."""
        return bool(self._pages_wanted) or self._rows.reading

    @property
    def mailbox_ids(self) -> array:
        """The view's mailbox ids in display order, as far as they are read (all of them once
        ``still_reading`` is False; read it, do not change it)."""
        return self._ids

    def position_of(self, mailbox_id: int) -> int | None:
        """Where this mailbox is in the view, or ``None`` when it is not in what is read of it."""
        try:
            return self._ids.index(mailbox_id)
        except ValueError:
            return None

    def target_ids(self) -> list[int]:
        """The mailboxes a bulk action applies to: the marked ones, or else the one under the cursor."""
        if self.marks:
            return list(self.marks)
        return [] if self.cursor_id is None else [self.cursor_id]

    def target_count(self) -> int:
        """How many mailboxes ``target_ids`` holds, without listing them."""
        return len(self.marks) if self.marks else int(self.cursor_id is not None)

    def target_selection(self) -> Selection:
        """``target_ids`` as a service selection. When everything in the view was marked with
        "mark all" (and nothing changed since), this is the view and filter themselves, which the
        services resolve in one statement instead of row by row. Mailboxes created since are left
        out; those that left the view since (approved by someone else, say) are left out too."""
        if self.marks.whole_view:
            return Selection.of_view(self.grid_query.view, self.grid_query.filter_text or None,
                                     up_to_id=self.marks.up_to_id)
        return Selection.of_ids(self.marks.ids if self.marks else self.target_ids())

    # --- changing what is shown ------------------------------------------------------------------

    def set_query(self, *, view: str | None = None, filter_text: str | None = None, sort: str | None = None,
                  descending: bool | None = None) -> None:
        """Show another view, filter or sort (read on a worker; until it arrives the previous ids
        stay); the cursor stays on its mailbox when that is still shown. Raises ``InvalidInput``
        (and changes nothing) for an unknown view or sort, or a bad filter."""
        changes = {key: value for key, value in
                   (("view", view), ("filter_text", filter_text), ("sort", sort), ("descending", descending))
                   if value is not None}
        query = replace(self.grid_query, **changes)
        check_query(query, self.actor)
        self.grid_query = query
        self.marks.view_changed()
        self._start_order_read()

    def reload(self) -> None:
        """Read the view again (rows may have joined or left it); marks outside it are dropped
        once it is read."""
        self.marks.view_changed()
        self._rows.invalidate_all()
        self._prune_marks = bool(self.marks)
        self._start_order_read()

    def refresh_rows(self, ids: Iterable[int] | None = None) -> None:
        """Read these mailboxes' cells again (all of them when ``ids`` is None) and repaint; they
        are drawn as they were until the new values arrive. The order and membership of the
        view stay as they are until ``reload``."""
        if ids is None:
            self._rows.invalidate_all()
            self.refresh()
        elif self._rows.invalidate(ids):
            self.refresh()

    def cycle_sort(self, column: str) -> None:
        """Sort by ``column``; the same column again reverses the direction."""
        if column == self.grid_query.sort:
            self.set_query(descending=not self.grid_query.descending)
        else:
            self.set_query(sort=column, descending=False)

    # --- reading the view's ids (a worker) -------------------------------------------------------

    def _start_order_read(self, mounting: bool = False) -> None:
        self._generation += 1
        self._reading_order = True
        self._interrupt_order_read()
        if mounting or self.is_mounted:  # else on_mount starts it
            self._read_order(self.grid_query, self._generation, self.cursor_id, self._rows.token())

    @work(thread=True, exclusive=True, group="grid-order", exit_on_error=False)
    def _read_order(self, query: GridQuery, generation: int, keep_id: int | None, rows_token: int) -> None:
        worker = get_current_worker()
        read_order(self._source, ReadOrder(query, generation, keep_id, rows_token), self.post_message,
                   lambda: worker.is_cancelled, self._long_read)

    def _interrupt_order_read(self) -> None:
        """Stop a long read of an older query (its result would be dropped anyway)."""
        self._long_read.interrupt_older_than(self._generation)

    def on_order_read(self, message: OrderRead) -> None:
        self.call_after_refresh(message.painted.set)  # the rest may be read now
        if message.generation != self._generation:
            return  # an older query's answer
        if message.error is not None:
            self._reading_order = False
            self.notify(message.error, title="Reading the mailboxes failed", severity="error", markup=False)
            return
        if self._reading_order:
            self._install(message)
            if self._mark_all_when_read == message.generation:
                self.mark_all_in_view()
        else:  # the rest of the view, after its first ids
            self._ids, self._total, self._complete = message.ids, message.total, True
            self._newest_id = message.newest_id
            self._update_virtual_size()
            self.set_reactive(MailboxGrid.cursor_row, self.validate_cursor_row(self.cursor_row))
            self.refresh()
            self._announce_cursor()
        if self._complete:
            self._view_complete()
        self.post_message(self.ViewRead(self))

    def _install(self, message: OrderRead) -> None:
        """Show a new id list, the cursor on the same mailbox when it is among the ids read (while
        the rest of a large view is being read, the cursor goes to the top if it is not)."""
        keep_id = None if self._never_read else self.cursor_id
        screen_line = self.cursor_row - int(self.scroll_y)
        self._ids, self._total, self._complete = message.ids, message.total, message.complete
        self._newest_id = message.newest_id
        self._rows.store(message.rows_token, list(message.rows), message.rows)  # read with the ids
        self._reading_order = False
        self._never_read = False
        position = message.position_of(keep_id, self.cursor_row)
        self._update_virtual_size()
        self.set_reactive(MailboxGrid.cursor_row, self.validate_cursor_row(position))
        if self._visible_rows > 0:
            self.scroll_to(y=max(0, self.cursor_row - max(0, screen_line)), animate=False)
            self._scroll_to_cursor()
        self.refresh()
        self._announce_cursor()
        self.call_after_refresh(freeze_startup_objects)  # once the first screen is up

    def _view_complete(self) -> None:
        changed = False
        if self.marks.whole_view_pending:
            self.marks.fill_whole_view(self._ids, self._newest_id)
            changed = True
        if self._prune_marks:
            self._prune_marks = False
            changed = self.marks.keep_only(self._ids) or changed
        if changed:
            self.refresh()
            self._marks_changed()

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(0, self.row_count + 1)  # + the header line

    # --- reading rows (workers) ------------------------------------------------------------------

    def _row_at(self, position: int) -> RowView | None:
        """The row to draw at ``position`` (perhaps stale), or None while it is read; a row missing
        or stale has its page queued for a read."""
        mailbox_id = self._ids[position]
        page = position // PAGE_SIZE
        if page not in self._pages_wanted and self._rows.wanted((mailbox_id,)):
            if not self._pages_wanted:  # reads start after this paint, not inside it
                self.call_later(self._read_wanted_pages)
            self._pages_wanted.add(page)
        return self._rows.get(mailbox_id)

    def _read_wanted_pages(self) -> None:
        pages, self._pages_wanted = self._pages_wanted, set()
        for page in sorted(pages & pages_near(int(self.scroll_y), self._visible_rows)):  # not those scrolled past
            start = page * PAGE_SIZE
            wanted = self._rows.wanted(self._ids[start:start + PAGE_SIZE])
            if wanted:
                self._read_rows(self._rows.start_reading(wanted), wanted)

    @work(thread=True, group="grid-rows", exit_on_error=False)
    def _read_rows(self, epoch: int, asked: list[int]) -> None:
        self.post_message(read_rows(self._source, epoch, asked))

    def on_rows_read(self, message: RowsRead) -> None:
        if message.rows is None:
            self._rows.abandon(message.asked)
            if not self._rows_failed:  # once, not once per page
                self._rows_failed = True
                self.notify(message.error or "", title="Reading mailboxes failed", severity="error", markup=False)
            return
        self._rows_failed = False
        self._rows.store(message.epoch, message.asked, message.rows)
        self.refresh()

    # --- marks -----------------------------------------------------------------------------------

    def toggle_mark(self) -> None:
        """Mark the mailbox under the cursor, or unmark it; it becomes the anchor of ``mark_range``."""
        mailbox_id = self.cursor_id
        if mailbox_id is None:
            return
        self.marks.toggle(mailbox_id)
        self._refresh_position(self.cursor_row)
        self._marks_changed()

    def mark_range(self) -> None:
        """Mark every row from the anchor (the row last marked with ``toggle_mark``) to the cursor."""
        if self.cursor_id is None:
            return
        anchor_id = self.marks.anchor_id
        anchor = self.position_of(anchor_id) if anchor_id is not None else None
        if anchor is None:
            anchor = self.cursor_row
        self.marks.anchor_id = self._ids[anchor]
        low, high = sorted((anchor, self.cursor_row))
        self._add_marks(self._ids[low:high + 1])

    def mark_all_in_view(self) -> None:
        """Mark every mailbox of the view and filter, not only those on screen (also while the
        rest of a large view is still being read: they count as marked as they arrive)."""
        if self._reading_order:  # a new view, filter or sort: marked once its ids arrive
            self._mark_all_when_read = self._generation
            return
        if not self.row_count:
            return
        newest = self._newest_id if not self._complete else (max(self._ids) if self._ids else 0)
        self.marks.mark_whole_view(self._ids, complete=self._complete, total=self.row_count, up_to_id=newest)
        self.refresh()
        self._marks_changed()

    def clear_marks(self) -> None:
        if not self.marks:
            return
        self.marks.clear()
        self.refresh()
        self._marks_changed()

    def _add_marks(self, ids: Iterable[int]) -> None:
        if self.marks.add(ids):
            self.refresh()
            self._marks_changed()

    def _marks_changed(self) -> None:
        self.refresh_bindings()
        self.post_message(self.MarksChanged(self, len(self.marks)))

    # --- actions (the keys) ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_marks" and not self.marks:
            return False  # escape then reaches the screen
        return True

    def action_cursor_up(self) -> None:
        self.cursor_row -= 1

    def action_cursor_down(self) -> None:
        self.cursor_row += 1

    def action_page_up(self) -> None:
        self._move_page(-1)

    def action_page_down(self) -> None:
        self._move_page(1)

    def action_cursor_first(self) -> None:
        self.cursor_row = 0

    def action_cursor_last(self) -> None:
        self.cursor_row = self.row_count - 1

    action_toggle_mark = toggle_mark
    def action_extend_marks(self, step: int) -> None:
        """Mark the row under the cursor, move, and mark the row arrived at."""
        if self.cursor_id is None:
            return
        start = self.cursor_row
        self.cursor_row = start + step
        low, high = sorted((start, self.cursor_row))
        self.marks.anchor_id = self._ids[start]
        self._add_marks(self._ids[low:high + 1])

    action_mark_range = mark_range
    action_mark_all_in_view = mark_all_in_view
    action_clear_marks = clear_marks

    def action_next_sort(self) -> None:
        keys = [column.key for column in self.columns if column.sortable]
        current = keys.index(self.grid_query.sort) if self.grid_query.sort in keys else -1
        self.set_query(sort=keys[(current + 1) % len(keys)], descending=False)

    def action_reverse_sort(self) -> None:
        self.set_query(descending=not self.grid_query.descending)

    def _move_page(self, direction: int) -> None:
        page = max(1, self._visible_rows)
        target = self.validate_cursor_row(self.cursor_row + direction * page)
        self.scroll_to(y=int(self.scroll_y) + direction * page, animate=False)
        self.cursor_row = target

    # --- the cursor --------------------------------------------------------------------------------

    @property
    def _visible_rows(self) -> int:
        return self.size.height - 1  # below the header

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, self.row_count - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._refresh_position(old)
        self._refresh_position(new)
        self._scroll_to_cursor()
        self._announce_cursor()

    def _scroll_to_cursor(self) -> None:
        rows = self._visible_rows
        if rows <= 0:
            return
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + rows:
            self.scroll_to(y=self.cursor_row - rows + 1, animate=False)

    def _announce_cursor(self) -> None:
        mailbox_id = self.cursor_id
        if mailbox_id != self._announced_id:
            self._announced_id = mailbox_id
            self.post_message(self.CursorMoved(self, mailbox_id))

    def _refresh_position(self, position: int) -> None:
        line = position - int(self.scroll_y) + 1
        if 1 <= line < self.size.height:
            self.refresh(Region(0, line, self._width, 1))

    def on_mount(self) -> None:
        self._update_virtual_size()
        self._start_order_read(mounting=True)

    def on_unmount(self) -> None:
        self._generation += 1  # whatever is still being read is no longer wanted
        self._interrupt_order_read()
        self._source.readers.close()

    def on_resize(self, event: events.Resize) -> None:
        self._update_virtual_size()
        self._scroll_to_cursor()

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            column = column_at(self._layout(self._width), event.x)
            if column is not None and column.sortable:
                self.cycle_sort(column.key)
            return
        position = int(self.scroll_y) + event.y - 1
        if position < self.row_count:
            self.cursor_row = position

    # --- drawing -----------------------------------------------------------------------------------

    def _layout(self, width: int) -> Layout:
        """The columns that fit in ``width`` cells, in display order, with their widths."""
        key = (width, self.grid_query.sort, tuple(self.columns))
        shown = self._layouts.get(key)
        if shown is None:
            shown = layout(self.columns, width, self.grid_query.sort)
            self._layouts.set(key, shown)
        return shown

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"mailbox-grid--{name}")

    @property
    def _width(self) -> int:
        return self.scrollable_content_region.width  # without the scrollbar

    def render_lines(self, crop: Region) -> list[Strip]:
        # Worked out once per paint rather than per line: the base style costs more than a row.
        width = self._width
        self._painting = (self.rich_style, width, self._layout(width))
        try:
            return super().render_lines(crop)
        finally:
            self._painting = None
            # Read ahead half a page above and below the screen: paging on finds its rows read.
            top = int(self.scroll_y)
            for position in (top - PAGE_SIZE // 2, top + self._visible_rows + PAGE_SIZE // 2):
                if 0 <= position < len(self._ids):
                    self._row_at(position)

    def render_line(self, y: int) -> Strip:
        if self._painting is not None:
            base, width, shown_layout = self._painting
        else:
            width = self._width
            base, shown_layout = self.rich_style, self._layout(width)
        if y == 0:
            return header_line(shown_layout, width, base, self._style, self.grid_query.sort,
                               self.grid_query.descending)
        position = int(self.scroll_y) + y - 1
        if position >= self.row_count:
            if position == self.row_count and (self._never_read or not self.total_known):
                return message_line("loading…" if self._never_read else "searching…", width, base, self._style)
            if position == 0:
                text = "No mailboxes match the filter" if self.grid_query.filter_text.strip() else \
                    "No mailboxes in this view"
                return message_line(text, width, base, self._style)
            return Strip.blank(width, base)
        known = position < len(self._ids)
        shown = self._row_at(position) if known else None
        return row_line(None if shown is GONE else shown,
                        marked=known and self._ids[position] in self.marks, is_cursor=position == self.cursor_row,
                        loading=shown is None, layout_=shown_layout, width=width, base=base, style_of=self._style)
