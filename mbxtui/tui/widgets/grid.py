"""The mailbox grid: a view of R20 as a table that stays fast at a million mailboxes.

It draws with Textual's line API: the scrollable height is the number of rows, and each visible
line is drawn on demand from a page of 100 rows fetched by id. The ids of the whole view, in
display order, are read once per query into an ``array`` (``MailboxPages.ordered_ids``); moving,
paging and jumping only index into it. Marks are a set of mailbox ids, so they survive re-sorting
and refiltering.
"""

from __future__ import annotations

import itertools
from array import array
from collections import OrderedDict
from dataclasses import replace
from typing import ClassVar, Iterable, NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mbxtui.core.idset import IdSet
from mbxtui.core.permissions import Actor
from mbxtui.core.services.mailbox_pages import BackgroundRead, GridQuery, GridRow, MailboxPages, OrderedIds
from mbxtui.core.services.selection import Selection


class Column(NamedTuple):
    """A grid column: ``key`` is also its sort key; lower ``priority`` is dropped later when narrow."""

    key: str
    title: str
    width: int
    priority: int


COLUMNS: tuple[Column, ...] = (
    Column("name", "Name", 14, 0),
    Column("email", "Email address", 20, 0),
    Column("regarding", "Regarding", 9, 6),
    Column("profile", "Profile", 14, 4),
    Column("incoming_method", "In method", 9, 7),
    Column("outgoing_method", "Out method", 10, 7),
    Column("act_method", "ACT method", 10, 8),
    Column("approval", "Approval", 8, 1),
    Column("incoming_status", "In", 7, 1),
    Column("outgoing_status", "Out", 7, 1),
    Column("act_status", "ACT", 7, 3),
    Column("enabled", "Enabled", 10, 2),
    Column("last_tested", "Last tested", 16, 5),
)
# Columns that take the width left over, up to these widths.
GROWING = {"name": 40, "email": 48}
MARK_WIDTH = 2
MARK = "✓ "
PAGE_SIZE = 100
CACHED_PAGES = 32
REST_POLL_SECONDS = 0.02

# Control characters (C0, DEL, C1), bidirectional overrides and line separators would move the
# terminal's cursor or reorder the screen: show them as escapes instead.
_INVISIBLE = itertools.chain(
    range(0x00, 0x20), range(0x7F, 0xA0), (0x061C, 0x200E, 0x200F, 0x2028, 0x2029),
    range(0x202A, 0x202F), range(0x2066, 0x206A),
)
VISIBLE_ESCAPES = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _INVISIBLE}

METHOD_TEXT = {"none": "none", "server_side_sync": "sync", "forward_mailbox": "forward"}
STATUS_TEXT = {"success": ("passed", "success"), "failure": ("failed", "failure"), "not_run": ("not run", "muted")}
APPROVAL_STYLE = {"approved": None, "pending": "warning", "rejected": "failure", "empty": "muted"}
UNUSED = ("—", "muted")


def visible(text: str | None) -> str:
    """``text`` safe to put on a terminal: control characters become visible escapes."""
    return (text or "").translate(VISIBLE_ESCAPES)


def fit(text: str, width: int) -> str:
    """``text`` padded or cut (with an ellipsis) to exactly ``width`` cells."""
    if width <= 0:
        return ""
    length = len(text) if text.isascii() else cell_len(text)
    if length <= width:
        return text + " " * (width - length)
    if text.isascii():
        return text[:width - 1] + "…"
    return set_cell_size(text, width - 1) + "…"


Cell = tuple[str, str | None]  # text, and the name of its style (a component class suffix)


class RowView(NamedTuple):
    """What the grid shows for one mailbox: a cell per column key."""

    cells: dict[str, Cell]
    active: bool


def row_view(row: GridRow) -> RowView:
    """What each column shows for one mailbox."""
    def method(value: str) -> Cell:
        return METHOD_TEXT.get(value, visible(value)), "muted" if value == "none" else None

    def status(direction_method: str, value: str) -> Cell:
        return UNUSED if direction_method == "none" else STATUS_TEXT.get(value, (visible(value), None))

    enabled = " ".join(
        label if flag else "-" * len(label)
        for label, flag in (("in", row.incoming_enabled), ("out", row.outgoing_enabled), ("act", row.act_enabled)))
    any_enabled = row.incoming_enabled or row.outgoing_enabled or row.act_enabled
    if row.test_scheduled:
        tested: Cell = ("scheduled", "warning")
    elif row.test_completed_on:
        tested = (visible(str(row.test_completed_on))[:16], None)
    else:
        tested = ("never", "muted")
    return RowView({
        "name": (visible(row.name), None),
        "email": (visible(row.email), None),
        "regarding": (visible(row.regarding), None),
        "profile": (visible(row.profile), None) if row.profile else UNUSED,
        "incoming_method": method(row.incoming_method),
        "outgoing_method": method(row.outgoing_method),
        "act_method": method(row.act_method),
        "approval": (visible(row.approval), APPROVAL_STYLE.get(row.approval)),
        "incoming_status": status(row.incoming_method, row.incoming_status),
        "outgoing_status": status(row.outgoing_method, row.outgoing_status),
        "act_status": status(row.act_method, row.act_status),
        "enabled": (enabled, "success" if any_enabled else "muted"),
        "last_tested": tested,
    }, bool(row.active))


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

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "mailbox-grid--header", "mailbox-grid--sorted", "mailbox-grid--cursor", "mailbox-grid--marked",
        "mailbox-grid--inactive", "mailbox-grid--success", "mailbox-grid--failure", "mailbox-grid--warning",
        "mailbox-grid--muted",
    }

    DEFAULT_CSS = """
    MailboxGrid {
        height: 1fr;
        overflow-x: hidden;
        background: $surface;
        color: $foreground;
        & > .mailbox-grid--header { text-style: bold; background: $panel; }
        & > .mailbox-grid--sorted { text-style: bold underline; color: $text-accent; background: $panel; }
        & > .mailbox-grid--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .mailbox-grid--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        &:ansi > .mailbox-grid--cursor { text-style: underline; }
        &:ansi:focus > .mailbox-grid--cursor { text-style: bold; }
        &:nocolor > .mailbox-grid--cursor { text-style: underline; }
        &:nocolor:focus > .mailbox-grid--cursor { text-style: reverse; }
        & > .mailbox-grid--marked { color: $text-secondary; text-style: bold; }
        & > .mailbox-grid--inactive { color: $text-muted; text-style: italic; }
        & > .mailbox-grid--success { color: $text-success; }
        & > .mailbox-grid--failure { color: $text-error; text-style: bold; }
        & > .mailbox-grid--warning { color: $text-warning; }
        & > .mailbox-grid--muted { color: $text-muted; }
    }
    """

    cursor_row: reactive[int] = reactive(0, repaint=False, init=False)
    """Position of the cursor in the view (0 is the first mailbox)."""

    class CursorMoved(Message):
        """The cursor is on another mailbox (``None`` when the view is empty)."""

        def __init__(self, grid: MailboxGrid, mailbox_id: int | None):
            self.grid = grid
            self.mailbox_id = mailbox_id
            super().__init__()

        @property
        def control(self) -> MailboxGrid:
            return self.grid

    class MarksChanged(Message):
        """Mailboxes were marked or unmarked; ``count`` is how many are marked now."""

        def __init__(self, grid: MailboxGrid, count: int):
            self.grid = grid
            self.count = count
            super().__init__()

        @property
        def control(self) -> MailboxGrid:
            return self.grid

    def __init__(self, actor: Actor, *, view: str = "active", filter_text: str = "", sort: str = "name",
                 descending: bool = False, id: str | None = None, name: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, name=name, classes=classes)
        self.actor = actor
        self.columns: list[Column] = list(COLUMNS)
        self.marked = IdSet()
        self._source = MailboxPages(actor)
        self.grid_query = GridQuery(view=view, filter_text=filter_text or "", sort=sort, descending=descending)
        self._ids = array("q")  # the view's ids in display order, or the first of them while the rest is read
        self._total = 0
        self._rest: BackgroundRead | None = None
        self._show(self._source.start_ordered_ids(self.grid_query))
        self._pages: OrderedDict[int, dict[int, RowView]] = OrderedDict()
        self._layouts: dict[tuple[int, str, tuple[Column, ...]], tuple[tuple[Column, int], ...]] = {}
        self._anchor_id: int | None = None
        self._whole_view_marked = False
        self._marked_up_to = 0  # the newest mailbox when the whole view was marked
        self._announced_id: int | None = None
        self._painting: tuple[Style, int, tuple[tuple[Column, int], ...]] | None = None

    # --- what the grid holds ---------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return self._total

    @property
    def cursor_id(self) -> int | None:
        """The mailbox under the cursor, or ``None`` when the view is empty."""
        return self._id_at(self.cursor_row) if self._total else None

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
        """True while the rest of a large view is read in the background (only its first rows are)."""
        return self._rest is not None

    @property
    def mailbox_ids(self) -> array:
        """Every mailbox id of the view, in display order (read it, do not change it)."""
        return self._whole_order()

    def position_of(self, mailbox_id: int) -> int | None:
        """Where this mailbox is in the view, or ``None`` when it is not in it."""
        try:
            return self._whole_order().index(mailbox_id)
        except ValueError:
            return None

    def target_ids(self) -> list[int]:
        """The mailboxes a bulk action applies to: the marked ones, or else the one under the cursor."""
        if self.marked:
            return list(self.marked)
        return [] if self.cursor_id is None else [self.cursor_id]

    def target_count(self) -> int:
        """How many mailboxes ``target_ids`` holds, without listing them."""
        return len(self.marked) if self.marked else int(self.cursor_id is not None)

    def target_selection(self) -> Selection:
        """``target_ids`` as a service selection. When everything in the view was marked with
        "mark all" (and nothing changed since), this is the view and filter themselves, which the
        services resolve in one statement instead of row by row. Mailboxes created since are left
        out; those that left the view since (approved by someone else, say) are left out too."""
        if self._whole_view_marked:
            return Selection.of_view(self.grid_query.view, self.grid_query.filter_text or None,
                                     up_to_id=self._marked_up_to)
        return Selection.of_ids(self.marked or self.target_ids())

    # --- changing what is shown ------------------------------------------------------------------

    def set_query(self, *, view: str | None = None, filter_text: str | None = None, sort: str | None = None,
                  descending: bool | None = None) -> None:
        """Show another view, filter or sort; the cursor stays on its mailbox when that is still shown.
        Raises ``InvalidInput`` (and changes nothing) for an unknown view or sort, or a bad filter."""
        changes = {key: value for key, value in
                   (("view", view), ("filter_text", filter_text), ("sort", sort), ("descending", descending))
                   if value is not None}
        query = replace(self.grid_query, **changes)
        ordered = self._source.start_ordered_ids(query)
        self.grid_query = query
        self._whole_view_marked = False
        self._install(ordered)

    def reload(self) -> None:
        """Read the view again (rows may have joined or left it); marks outside it are dropped."""
        self._whole_view_marked = False
        if not self.marked:
            self._install(self._source.start_ordered_ids(self.grid_query))
            return
        ids = self._source.ordered_ids(self.grid_query)
        before = len(self.marked)
        self.marked.intersection_update(ids)
        if len(self.marked) != before:
            self._marks_changed()
        self._install(OrderedIds(len(ids), ids))

    def refresh_rows(self, ids: Iterable[int] | None = None) -> None:
        """Fetch these mailboxes' cells again (all of them when ``ids`` is None) and repaint.
        The order and membership of the view stay as they are until ``reload``."""
        if ids is None:
            self._pages.clear()
            self.refresh()
            return
        changed = set(ids)
        stale = [number for number, page in self._pages.items() if not changed.isdisjoint(page)]
        for number in stale:
            del self._pages[number]
        if stale:
            self.refresh()

    def cycle_sort(self, column: str) -> None:
        """Sort by ``column``; the same column again reverses the direction."""
        if column == self.grid_query.sort:
            self.set_query(descending=not self.grid_query.descending)
        else:
            self.set_query(sort=column, descending=False)

    def _install(self, ordered: OrderedIds) -> None:
        """Show a new id list, the cursor on the same mailbox when it is among the ids read (while
        the rest of a large view is being read, the cursor goes to the top if it is not)."""
        keep_id = self.cursor_id
        screen_line = self.cursor_row - int(self.scroll_y)
        self._show(ordered)
        self._pages.clear()
        try:
            position = self._ids.index(keep_id) if keep_id is not None else self.cursor_row
        except ValueError:
            position = self.cursor_row if self._rest is None else 0
        self._update_virtual_size()
        self.set_reactive(MailboxGrid.cursor_row, self.validate_cursor_row(position))
        if self._visible_rows > 0:
            self.scroll_to(y=max(0, self.cursor_row - max(0, screen_line)), animate=False)
            self._scroll_to_cursor()
        self.refresh()
        self._announce_cursor()

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(0, self._total + 1)  # + the header line

    def _show(self, ordered: OrderedIds) -> None:
        if self._rest is not None:
            self._rest.cancel()
        self._ids = ordered.head
        self._total = ordered.total
        self._rest = None if ordered.read_rest is None else BackgroundRead(ordered)
        if self.is_mounted:
            self._wait_for_rest()

    def _wait_for_rest(self) -> None:
        """Take the whole list in once its background read is done (checked on a timer)."""
        rest = self._rest
        if rest is None:
            return

        def check() -> None:
            if rest is self._rest:  # not replaced by another query meanwhile
                if rest.done():
                    self._whole_order()
                else:
                    self.set_timer(REST_POLL_SECONDS, check)

        self.set_timer(REST_POLL_SECONDS, check)

    def _whole_order(self) -> array:
        """Every id of the view, waiting for the background read of a large view if it still runs."""
        if self._rest is not None:
            rest, self._rest = self._rest, None
            self._ids = rest.result()
            if len(self._ids) != self._total:  # the database changed while it was read
                self._total = len(self._ids)
                self._update_virtual_size()
                self.cursor_row = min(self.cursor_row, max(0, self._total - 1))
                self.refresh()
        return self._ids

    def _id_at(self, position: int) -> int:
        ids = self._ids if position < len(self._ids) else self._whole_order()
        return ids[position]

    def _ids_between(self, start: int, stop: int) -> array:
        ids = self._ids if stop <= len(self._ids) else self._whole_order()
        return ids[start:stop]

    # --- marks -----------------------------------------------------------------------------------

    def toggle_mark(self) -> None:
        """Mark the mailbox under the cursor, or unmark it; it becomes the anchor of ``mark_range``."""
        mailbox_id = self.cursor_id
        if mailbox_id is None:
            return
        if mailbox_id in self.marked:
            self.marked.discard(mailbox_id)
        else:
            self.marked.add(mailbox_id)
        self._anchor_id = mailbox_id
        self._whole_view_marked = False
        self._refresh_position(self.cursor_row)
        self._marks_changed()

    def mark_range(self) -> None:
        """Mark every row from the anchor (the row last marked with ``toggle_mark``) to the cursor."""
        if not self._total:
            return
        anchor = self.position_of(self._anchor_id) if self._anchor_id is not None else None
        if anchor is None:
            anchor = self.cursor_row
        self._anchor_id = self._id_at(anchor)
        low, high = sorted((anchor, self.cursor_row))
        self._add_marks(self._ids_between(low, high + 1))

    def mark_all_in_view(self) -> None:
        """Mark every mailbox of the view and filter, not only those on screen."""
        if not self._total:
            return
        whole_view = not self.marked or self._whole_view_marked
        order = self._whole_order()
        self._add_marks(order)
        self._whole_view_marked = whole_view
        self._marked_up_to = max(order)

    def clear_marks(self) -> None:
        if not self.marked:
            return
        self.marked.clear()
        self._anchor_id = None
        self._whole_view_marked = False
        self.refresh()
        self._marks_changed()

    def _add_marks(self, ids: Iterable[int]) -> None:
        before = len(self.marked)
        self.marked.update(ids)
        self._whole_view_marked = False
        if len(self.marked) != before:
            self.refresh()
            self._marks_changed()

    def _marks_changed(self) -> None:
        self.refresh_bindings()
        self.post_message(self.MarksChanged(self, len(self.marked)))

    # --- actions (the keys) ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_marks" and not self.marked:
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
        self.cursor_row = self._total - 1

    def action_toggle_mark(self) -> None:
        self.toggle_mark()

    def action_extend_marks(self, step: int) -> None:
        """Mark the row under the cursor, move, and mark the row arrived at."""
        if not self._total:
            return
        start = self.cursor_row
        self.cursor_row = start + step
        low, high = sorted((start, self.cursor_row))
        self._anchor_id = self._id_at(start)
        self._add_marks(self._ids_between(low, high + 1))

    def action_mark_range(self) -> None:
        self.mark_range()

    def action_mark_all_in_view(self) -> None:
        self.mark_all_in_view()

    def action_clear_marks(self) -> None:
        self.clear_marks()

    def action_next_sort(self) -> None:
        keys = [column.key for column in self.columns]
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
        return max(0, min(row, self._total - 1))

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
        self._announce_cursor()
        self._wait_for_rest()

    def on_unmount(self) -> None:
        if self._rest is not None:
            self._rest.cancel()

    def on_resize(self, event: events.Resize) -> None:
        self._update_virtual_size()
        self._scroll_to_cursor()

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            column = self._column_at(event.x)
            if column is not None:
                self.cycle_sort(column.key)
            return
        position = int(self.scroll_y) + event.y - 1
        if position < self._total:
            self.cursor_row = position

    def _column_at(self, x: int) -> Column | None:
        left = MARK_WIDTH
        for column, width in self._layout(self._width):
            if left <= x < left + width:
                return column
            left += width + 1
        return None

    # --- drawing -----------------------------------------------------------------------------------

    def _layout(self, width: int) -> tuple[tuple[Column, int], ...]:
        """The columns that fit in ``width`` cells, in display order, with their widths."""
        key = (width, self.grid_query.sort, tuple(self.columns))
        layout = self._layouts.get(key)
        if layout is not None:
            return layout
        available = width - MARK_WIDTH
        required = [c for c in self.columns if c.priority == 0 or c.key == self.grid_query.sort]
        optional = sorted((c for c in self.columns if c not in required), key=lambda c: c.priority)
        chosen = list(required)
        used = sum(c.width + 1 for c in chosen)
        for column in optional:
            if used + column.width + 1 > available:
                break
            chosen.append(column)
            used += column.width + 1
        widths = {c.key: c.width for c in chosen}
        spare = available - used
        if spare < 0:
            # Narrower than the required columns: the growing ones give up their width first.
            for key in GROWING:
                if key in widths and spare < 0:
                    taken = min(widths[key] - 1, -spare)
                    widths[key] -= taken
                    spare += taken
        else:
            for key, most in GROWING.items():
                if key in widths:
                    extra = min(most - widths[key], spare // 2 if key == "name" else spare)
                    widths[key] += max(0, extra)
                    spare -= max(0, extra)
        layout = tuple((c, widths[c.key]) for c in self.columns if c.key in widths)
        self._layouts[key] = layout
        return layout

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

    def render_line(self, y: int) -> Strip:
        if self._painting is not None:
            base, width, layout = self._painting
        else:
            width = self._width
            base, layout = self.rich_style, self._layout(width)
        if y == 0:
            return self._header(layout, width, base)
        position = int(self.scroll_y) + y - 1
        if position >= self._total:
            if position == 0:
                text = "No mailboxes match the filter" if self.grid_query.filter_text.strip() else \
                    "No mailboxes in this view"
                return Strip([Segment(fit("  " + text, width), base + self._style("muted"))], width)
            return Strip.blank(width, base)
        return self._row(position, layout, width, base)

    @staticmethod
    def _line(segments: list[Segment], used: int, width: int, style: Style) -> Strip:
        if used < width:
            segments.append(Segment(" " * (width - used), style))
        elif used > width:
            return Strip(segments).crop(0, width)
        return Strip(segments, width)

    def _header(self, layout: tuple[tuple[Column, int], ...], width: int, base: Style) -> Strip:
        style = base + self._style("header")
        sorted_style = style + self._style("sorted")
        arrow = " ▼" if self.grid_query.descending else " ▲"
        segments = [Segment(" " * MARK_WIDTH, style)]
        used = MARK_WIDTH
        for column, cell_width in layout:
            if column.key == self.grid_query.sort:
                title = fit(column.title, max(0, cell_width - len(arrow))).rstrip() + arrow
                segments.append(Segment(fit(title, cell_width), sorted_style))
                segments.append(Segment(" ", style))
            else:
                segments.append(Segment(fit(column.title, cell_width) + " ", style))
            used += cell_width + 1
        return self._line(segments, used, width, style)

    def _row(self, position: int, layout: tuple[tuple[Column, int], ...], width: int, base: Style) -> Strip:
        mailbox_id = self._id_at(position)
        shown = self._row_view(position)
        marked = mailbox_id in self.marked
        is_cursor = position == self.cursor_row
        style = base
        if shown is not None and not shown.active:
            style += self._style("inactive")
        if marked:
            style += self._style("marked")
        if is_cursor:
            style += self._style("cursor")
        segments = [Segment(MARK if marked else " " * MARK_WIDTH, style)]
        if shown is None:
            segments.append(Segment(fit("(this mailbox no longer exists)", width - MARK_WIDTH), style))
            return Strip(segments, width)
        used = MARK_WIDTH
        for column, cell_width in layout:
            text, style_name = shown.cells[column.key]
            if style_name is None or is_cursor:
                segments.append(Segment(fit(text, cell_width) + " ", style))
            else:
                segments.append(Segment(fit(text, cell_width), style + self._style(style_name)))
                segments.append(Segment(" ", style))
            used += cell_width + 1
        return self._line(segments, used, width, style)

    def _row_view(self, position: int) -> RowView | None:
        number = position // PAGE_SIZE
        page = self._pages.get(number)
        if page is None:
            start = number * PAGE_SIZE
            rows = self._source.rows(self._ids_between(start, min(start + PAGE_SIZE, self._total)))
            page = {mailbox_id: row_view(row) for mailbox_id, row in rows.items()}
            self._pages[number] = page
            if len(self._pages) > CACHED_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(number)
        return page.get(self._id_at(position))
