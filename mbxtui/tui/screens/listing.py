"""What the list screens share (profiles, alerts, failed, people, operators): a title line, a table
holding one page of rows, a filter box, paging keys and a status line."""

from __future__ import annotations

from typing import Any, Iterable

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.cache import LRUCache
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.strip import Strip
from textual.widgets import DataTable, Footer, Input, Static
from textual.widgets.data_table import RowKey

from mbxtui.core.display import cell
from mbxtui.tui.messages import ListPageLoaded, ServiceFailed
from mbxtui.tui.screens.base import LOADING, BaseScreen


def texts(values: Iterable[Any]) -> list[Text]:
    """Table cells that show data as it is: never read as markup, control characters escaped."""
    return [Text(cell(value), no_wrap=True, overflow="ellipsis") for value in values]


# A coordinate no row or header is at: what a row is drawn with when neither cursor is on it.
_ELSEWHERE = Coordinate(-9, -9)


class ListTable(DataTable):
    """A DataTable whose rows and lines are drawn once for each look: a cursor on them or not.

    DataTable keeps each row's and each line's drawing under the cursor's position, so every key
    moving the cursor drew again every row in the frame's bounds: when the table scrolls, all of
    it; else from the cursor's row down to the detail line under the table. At 120x40 that took
    10-20 ms a key scrolling down a page (bench/activities.py). It overrides DataTable's private
    ``_render_line`` and ``_render_line_in_row``, which hold for the pinned textual version:
    tests/tui/test_activities.py fails when an upgrade changes them."""

    def __init__(self, **kwargs: Any) -> None:
        self._lines_by_look: LRUCache[tuple, Strip] = LRUCache(1000)  # DataTable's own clears it
        super().__init__(**kwargs)

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._lines_by_look.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines_by_look.clear()

    def _row_index(self, row_key: RowKey) -> int:
        row = self._row_locations.get(row_key)
        return -1 if row is None else row  # the header's

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        if self.cursor_type != "row":
            return super()._render_line(y, x1, x2, base_style)
        try:
            row = self._row_index(self._get_offsets(y)[0])
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        key = (y, x1, x2, self.size.width, self.cursor_coordinate.row == row, self.hover_coordinate.row == row,
               base_style, self._show_hover_cursor, self.show_cursor, self._update_count, self._pseudo_class_state)
        strip = self._lines_by_look.get(key)
        if strip is None:
            strip = self._lines_by_look[key] = super()._render_line(y, x1, x2, base_style)
        return strip

    def _render_line_in_row(self, row_key: RowKey, line_no: int, base_style: Style,
                            cursor_location: Coordinate, hover_location: Coordinate) -> Any:
        if self.cursor_type == "row":
            row = self._row_index(row_key)
            if cursor_location.row != row:
                cursor_location = _ELSEWHERE
            if hover_location.row != row:
                hover_location = _ELSEWHERE
        return super()._render_line_in_row(row_key, line_no, base_style, cursor_location, hover_location)


class ListScreen(BaseScreen):
    """Subclasses give ``COLUMNS`` (title, width or None) and implement ``fetch``, ``key_of`` and
    ``cells_of``; ``describe`` fills the line under the table for the row under the cursor."""

    DEFAULT_CSS = """
    ListScreen #table { height: 1fr; }
    ListScreen #detail { height: auto; max-height: 5; padding: 0 1; background: $panel; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("n", "page(1)", "Next page", show=False, id="next-page"),
        Binding("p", "page(-1)", "Previous page", show=False, id="previous-page"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="reload"),
    ]
    PAGE_SIZE = 200
    COLUMNS: tuple[tuple[str, int | None], ...] = ()
    FILTER_PLACEHOLDER = ""
    FILTER_AS_YOU_TYPE = True
    SHOW_DETAIL = False

    def __init__(self) -> None:
        super().__init__()
        self.page_start = 0
        self.total: int | None = None
        self.filter_text = ""
        self.rows: dict[str, dict[str, Any]] = {}
        self.shown_columns: tuple[tuple[str, int | None], ...] = ()
        self.reading = True
        self.turning_page = 0  # the step of the page turn being read, 0 for none

    # -- what a subclass provides --

    def fetch(self, offset: int, limit: int) -> tuple[int | None, list[dict[str, Any]]]:
        """One page of rows and the total when it is known (called in a worker thread)."""
        raise NotImplementedError

    def key_of(self, row: dict[str, Any]) -> str:
        raise NotImplementedError

    def cells_of(self, row: dict[str, Any]) -> Iterable[Any]:
        raise NotImplementedError

    def describe(self, row: dict[str, Any] | None) -> str:
        return ""

    def columns(self) -> tuple[tuple[str, int | None], ...]:
        """The table's columns (title, width or None); ``COLUMNS`` unless the view changes them."""
        return self.COLUMNS

    def views_line(self) -> str | None:
        """The line of views above the table (markup allowed: no data in it), or None."""
        return None

    def status_parts(self) -> list[str]:
        return []

    # -- composing and loading --

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        yield Static(id="views", classes="hidden")
        yield Input(placeholder=self.FILTER_PLACEHOLDER, id="filter", classes="hidden")
        yield ListTable(id="table", cursor_type="row", zebra_stripes=True)
        yield Static(id="detail", markup=False, classes="" if self.SHOW_DETAIL else "hidden")
        yield Static(id="status", markup=False)
        yield Footer()

    @property
    def table(self) -> DataTable:
        return self.query_one("#table", DataTable)

    def on_mount(self) -> None:
        self.query_one("#title", Static).update(
            f"mbxtui · {self.TITLE_TEXT} · {self.actor.login} ({self.actor.role.value})")
        self.table.focus()
        self.reload()

    def progress_changed(self, _text: str) -> None:
        self.update_status()

    def reload(self) -> None:
        """Read the current page again in a worker, keeping the cursor on the same row when it is
        still there; the status line says "loading…" until it arrives."""
        if not self.is_attached:
            return  # closed before this ran: the palette runs a choice after it has closed
        views = self.views_line()
        views_widget = self.query_one("#views", Static)
        views_widget.set_class(views is None, "hidden")
        if views is not None:
            views_widget.update(views)
        self.reading = True
        self.update_status()
        if not self.rows:
            self.update_detail()
        start = self.page_start
        self.load(lambda: self.read_page(start), lambda page: ListPageLoaded(*page), group="page")

    def read_page(self, page_start: int) -> tuple[int, int | None, list[dict[str, Any]]]:
        """The page at ``page_start``, or the one before when it emptied (rows dismissed, say)."""
        total, rows = self.fetch(page_start, self.PAGE_SIZE)
        if not rows and page_start:
            page_start = max(0, page_start - self.PAGE_SIZE)
            total, rows = self.fetch(page_start, self.PAGE_SIZE)
        return page_start, total, rows

    def on_list_page_loaded(self, message: ListPageLoaded) -> None:
        self.reading = False
        turned, self.turning_page = self.turning_page, 0
        if turned and message.page_start != self.page_start:  # the next page turned out to be empty
            turned = 0
            self.notify("This is the last page")
        self.page_start = message.page_start
        table = self.table
        keep = self.current_key()
        if self.columns() == self.shown_columns:
            table.clear()
        else:
            table.clear(columns=True)
            self.shown_columns = self.columns()
            for title, width in self.shown_columns:
                table.add_column(title, width=width)
        self.total = message.total
        self.rows = {}
        for row in message.rows:
            key = self.key_of(row)
            self.rows[key] = row
            table.add_row(*texts(self.cells_of(row)), key=key)
        if turned:
            table.move_cursor(row=0)
        elif keep in self.rows:
            table.move_cursor(row=table.get_row_index(keep))
        self.update_detail()
        self.update_status()

    def service_failed(self, message: ServiceFailed) -> None:
        if message.group == "page":  # shown as an empty page, as the notification says why
            self.turning_page = 0
            self.on_list_page_loaded(ListPageLoaded(self.page_start, 0, []))

    def current_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def current(self) -> dict[str, Any] | None:
        key = self.current_key()
        return self.rows.get(key) if key is not None else None

    def update_detail(self) -> None:
        if self.SHOW_DETAIL:
            shown = LOADING if self.reading and not self.rows else self.describe(self.current())
            detail = self.query_one("#detail", Static)
            # A layout arranges and paints the whole screen again: at every key down the table it
            # took most of the key's frame (bench/activities.py --profile). A description of the
            # same height repaints the detail alone.
            detail.update(shown, layout=False)
            height = detail.content_size.height
            if detail.visual.get_height(detail.styles, detail.content_size.width) != height or not height:
                detail.refresh(layout=True)

    def update_status(self) -> None:
        shown = len(self.rows)
        if self.reading:
            parts = [LOADING]
        elif shown:
            where = f"{self.page_start + 1:,}–{self.page_start + shown:,}"
            of = f" of {self.total:,}" if self.total is not None else ""
            parts = [f"{where}{of}"]
        else:
            parts = ["nothing to show"]
        if self.filter_text:
            parts[0] += f" matching {self.filter_text!r}"
        if self.page_start or self.has_next_page():
            parts.append("n/p next/previous page")
        parts += self.status_parts()
        if self.app.progress_text:
            parts.append(self.app.progress_text)
        self.query_one("#status", Static).update(" · ".join(parts))

    # -- events --

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.update_detail()

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter" and self.FILTER_AS_YOU_TYPE:
            self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not self.FILTER_AS_YOU_TYPE:
                self.apply_filter(event.value)
            self.table.focus()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.page_start = 0
        self.reload()

    # -- actions --

    def action_open(self) -> None:
        """Enter on a row; subclasses that open something override it."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "/" is a priority binding so that the keys typed after it reach the filter, not the
        # table's row actions; inside the filter it is plain text again.
        if action == "filter" and self.query_one("#filter", Input).has_focus:
            return False
        return super().check_action(action, parameters)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        self.set_focus(box)  # at once: focus() would wait until the keys already queued are handled

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:
            if not box.value:
                box.add_class("hidden")
            self.table.focus()
            return
        stack = self.app.screen_stack
        if len(stack) > 1 and isinstance(stack[-2], BaseScreen):
            self.leave()

    def has_next_page(self) -> bool:
        shown = len(self.rows)
        if self.total is None:  # a full page says there may be more
            return shown == self.PAGE_SIZE
        return self.page_start + shown < self.total

    def action_page(self, step: int) -> None:
        if self.reading:
            return  # the page being read decides where the next one starts
        if step > 0 and self.has_next_page():
            self.page_start += self.PAGE_SIZE
        elif step < 0 and self.page_start:
            self.page_start = max(0, self.page_start - self.PAGE_SIZE)
        else:
            self.notify("This is the last page" if step > 0 else "This is the first page")
            return
        self.turning_page = 1 if step > 0 else -1
        self.reload()

    def action_reload(self) -> None:
        self.reload()
