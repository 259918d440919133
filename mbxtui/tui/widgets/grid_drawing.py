"""Drawing the mailbox grid: its columns, how they fit a width, and the lines (header, a mailbox's
row, a row still being read) as Strips of fixed-width cells.

Nothing here reads the database: a row is drawn from a ``RowView`` already read, or as a
placeholder until it is."""

from __future__ import annotations

from typing import Callable, NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from mbxtui.core.display import safe
from mbxtui.core.services.mailbox_pages import GridRow
from mbxtui.core.services.mailbox_views import not_processed_reason


class Column(NamedTuple):
    """A grid column: ``key`` is also its sort key (when ``sortable``); lower ``priority`` is dropped
    later when narrow."""

    key: str
    title: str
    width: int
    priority: int
    sortable: bool = True


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
    # Processing (R31), read with each page's rows; neither sorts (no index orders a view by them).
    Column("sync_state", "Sync", 10, 6, sortable=False),
    Column("last_sync", "Last sync", 16, 6, sortable=False),
)
# Columns that take the width left over, up to these widths.
GROWING = {"name": 40, "email": 48}
MARK_WIDTH = 2
MARK = "✓ "
LOADING = "loading…"

METHOD_TEXT = {"none": "none", "server_side_sync": "sync", "forward_mailbox": "forward"}
STATUS_TEXT = {"success": ("passed", "success"), "failure": ("failed", "failure"), "not_run": ("not run", "muted")}
APPROVAL_STYLE = {"approved": None, "pending": "warning", "rejected": "failure", "empty": "muted"}
SYNC_STYLE = {"idle": None, "processing": "success", "waiting": "warning", "disabled": "failure"}
UNUSED = ("—", "muted")
NOT_READ = ("not read", "warning")  # no cycle reads its incoming mail (an Exchange profile; mailbox detail says why)

# The styles the lines are drawn with (a row's cells name them by suffix: "muted", "cursor"...).
COMPONENT_CLASSES: set[str] = {
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

Layout = tuple[tuple[Column, int], ...]
Cell = tuple[str, str | None]  # text, and the name of its style (a component class suffix)
StyleOf = Callable[[str], Style]  # a style name ("muted", "cursor"...) to the widget's style


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


class RowView(NamedTuple):
    """What the grid shows for one mailbox: a cell per column key."""

    cells: dict[str, Cell]
    active: bool


def row_view(row: GridRow) -> RowView:
    """What each column shows for one mailbox (database text made safe by ``display.safe``)."""
    def method(value: str) -> Cell:
        return METHOD_TEXT.get(value, safe(value)), "muted" if value == "none" else None

    def status(direction_method: str, value: str) -> Cell:
        return UNUSED if direction_method == "none" else STATUS_TEXT.get(value, (safe(value), None))

    enabled = " ".join(
        label if flag else "-" * len(label)
        for label, flag in (("in", row.incoming_enabled), ("out", row.outgoing_enabled), ("act", row.act_enabled)))
    any_enabled = row.incoming_enabled or row.outgoing_enabled or row.act_enabled
    if row.test_scheduled:
        tested: Cell = ("scheduled", "warning")
    elif row.test_completed_on:
        tested = (safe(row.test_completed_on)[:16], None)
    else:
        tested = ("never", "muted")
    return RowView({
        "name": (safe(row.name), None),
        "email": (safe(row.email), None),
        "regarding": (safe(row.regarding), None),
        "profile": (safe(row.profile), None) if row.profile else UNUSED,
        "incoming_method": method(row.incoming_method),
        "outgoing_method": method(row.outgoing_method),
        "act_method": method(row.act_method),
        "approval": (safe(row.approval), APPROVAL_STYLE.get(row.approval)),
        "incoming_status": status(row.incoming_method, row.incoming_status),
        "outgoing_status": status(row.outgoing_method, row.outgoing_status),
        "act_status": status(row.act_method, row.act_status),
        "enabled": (enabled, "success" if any_enabled else "muted"),
        "last_tested": tested,
        "sync_state": _sync_state(row),
        "last_sync": (safe(row.last_sync)[:16], None) if row.last_sync else ("never" if row.sync_state else "—",
                                                                             "muted"),
    }, bool(row.active))


def _sync_state(row: GridRow) -> Cell:
    if not_processed_reason(row.profile_type, row.incoming_method) is not None:
        return NOT_READ
    return (safe(row.sync_state), SYNC_STYLE.get(row.sync_state)) if row.sync_state else UNUSED


def layout(columns: list[Column], width: int, sort: str) -> Layout:
    """The columns that fit in ``width`` cells, in display order, with their widths. Columns that
    do not fit are dropped, lowest priority first; the sort column always stays."""
    available = width - MARK_WIDTH
    required = [c for c in columns if c.priority == 0 or c.key == sort]
    optional = sorted((c for c in columns if c not in required), key=lambda c: c.priority)
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
    return tuple((c, widths[c.key]) for c in columns if c.key in widths)


def column_at(shown: Layout, x: int) -> Column | None:
    """The column drawn at cell ``x`` of a line."""
    left = MARK_WIDTH
    for column, width in shown:
        if left <= x < left + width:
            return column
        left += width + 1
    return None


def _line(segments: list[Segment], used: int, width: int, style: Style) -> Strip:
    if used < width:
        segments.append(Segment(" " * (width - used), style))
    elif used > width:
        return Strip(segments).crop(0, width)
    return Strip(segments, width)


def header_line(shown: Layout, width: int, base: Style, style_of: StyleOf, sort: str, descending: bool) -> Strip:
    """The header: column titles, the sort column's with ▲ (ascending) or ▼ (descending)."""
    style = base + style_of("header")
    sorted_style = style + style_of("sorted")
    arrow = " ▼" if descending else " ▲"
    segments = [Segment(" " * MARK_WIDTH, style)]
    used = MARK_WIDTH
    for column, cell_width in shown:
        if column.key == sort:
            title = fit(column.title, max(0, cell_width - len(arrow))).rstrip() + arrow
            segments.append(Segment(fit(title, cell_width), sorted_style))
            segments.append(Segment(" ", style))
        else:
            segments.append(Segment(fit(column.title, cell_width) + " ", style))
        used += cell_width + 1
    return _line(segments, used, width, style)


def message_line(text: str, width: int, base: Style, style_of: StyleOf) -> Strip:
    """A line of muted text (an empty view, a view still being read)."""
    return Strip([Segment(fit("  " + text, width), base + style_of("muted"))], width)


def row_line(shown: RowView | None, *, marked: bool, is_cursor: bool, loading: bool, layout_: Layout,
             width: int, base: Style, style_of: StyleOf) -> Strip:
    """One mailbox's row; ``loading``: its cells are still being read (a placeholder is drawn);
    ``shown`` None and not loading: the mailbox no longer exists."""
    style = base
    if shown is not None and not shown.active:
        style += style_of("inactive")
    if marked:
        style += style_of("marked")
    if is_cursor:
        style += style_of("cursor")
    segments = [Segment(MARK if marked else " " * MARK_WIDTH, style)]
    if shown is None:
        if loading:
            segments.append(Segment(fit(LOADING, width - MARK_WIDTH), style if is_cursor else style + style_of("muted")))
        else:
            segments.append(Segment(fit("(this mailbox no longer exists)", width - MARK_WIDTH), style))
        return Strip(segments, width)
    used = MARK_WIDTH
    for column, cell_width in layout_:
        text, style_name = shown.cells[column.key]
        if style_name is None or is_cursor:
            segments.append(Segment(fit(text, cell_width) + " ", style))
        else:
            segments.append(Segment(fit(text, cell_width), style + style_of(style_name)))
            segments.append(Segment(" ", style))
        used += cell_width + 1
    return _line(segments, used, width, style)
