"""The mailbox grid: views of R20, filter as you type, marks, and the bulk actions."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from mbxtui.core.display import safe
from mbxtui.core.enums import ActMethod, IncomingMethod, OutgoingMethod, Tracking, View
from mbxtui.core.errors import MbxError
from mbxtui.core.permissions import Permission
from mbxtui.core.services import bulk, enablement, profiles
from mbxtui.core.services.bulk import BulkResult, DefaultsApplied
from mbxtui.core.services.enablement import Scheduled
from mbxtui.core.services.mailboxes import FOLLOW_ORGANISATION
from mbxtui.core.services.selection import Selection
from mbxtui.tui.closing import ClosesOnce
from mbxtui.tui.messages import ProfileNamesLoaded
from mbxtui.tui.screens.base import LOADING, BaseScreen
from mbxtui.tui.workers import run_service
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.grid import MailboxGrid
from mbxtui.tui.widgets.select import Select

VIEW_TITLES = {
    View.ACTIVE: "Active", View.ALL: "All", View.MINE: "My", View.FORWARD: "Forward",
    View.PENDING: "Pending Approval", View.FAILED: "Test and Enable Failed", View.DISABLED: "Disabled",
    View.STALE: "Stale",
}
# Changes made elsewhere: the view is read again at most this often, and not at all while a view
# larger than this has marks (see MailboxesScreen.data_changed).
AUTO_RELOAD_SECONDS = 5.0
AUTO_RELOAD_MOST_MARKED_ROWS = 100_000
VIEW_TABS = {View.PENDING: "Pending", View.FAILED: "Failed"}  # short labels so all eight fit in 80 columns
VIEW_KEYS = list(VIEW_TITLES)
T = TypeVar("T")


class MailboxesScreen(BaseScreen):
    TITLE_TEXT = "Mailboxes"
    BINDINGS = [
        *[Binding(str(i + 1), f"view('{view.value}')", VIEW_TITLES[view], show=False, id=f"mailboxes-view-{view.value}")
          for i, view in enumerate(VIEW_KEYS)],
        # A priority binding acts as soon as the key arrives, before the keys typed after it are
        # handed to the grid (where "a" marks everything, "s" sorts...).
        Binding("slash", "filter", "Filter", priority=True, id="filter"),
        Binding("A", "approve", "Approve", id="mailboxes-approve"),
        Binding("t", "test", "Test & Enable", id="mailboxes-test"),
        Binding("R", "reject", "Reject", id="mailboxes-reject"),
        Binding("D", "apply_defaults", "Apply defaults", id="mailboxes-apply-defaults"),
        Binding("e", "bulk_edit", "Bulk edit", id="mailboxes-bulk-edit"),
        Binding("X", "deactivate", "Deactivate", id="mailboxes-deactivate"),
        Binding("N", "new_forward", "New forward mailbox", id="mailboxes-new-forward"),
        Binding("enter", "open", "Open", show=False, id="open"),  # listed in help (F1) and the palette
        Binding("ctrl+r", "reload", "Reload", show=False, id="reload"),
    ]
    PERMISSIONS = {
        "approve": Permission.APPROVE, "reject": Permission.APPROVE, "test": Permission.TEST,
        "apply_defaults": Permission.CONFIGURE, "bulk_edit": Permission.CONFIGURE,
        "deactivate": Permission.CONFIGURE, "new_forward": Permission.CONFIGURE,
    }

    def __init__(self, view: str = View.ACTIVE.value):
        super().__init__()
        self.view = View(view)
        self._changed_meanwhile = False
        self._changed_elsewhere = False  # while large marked views are not re-read automatically
        self._last_auto_reload = 0.0
        self._auto_reload_timer = None

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        yield Static(id="views")  # markup: the current view in reverse; no data in it
        yield Input(placeholder="filter by name or address (esc to leave)", id="filter", classes="hidden")
        yield MailboxGrid(self.actor, view=self.view.value, id="grid")
        yield Static(id="status", markup=False)
        yield Footer()

    @property
    def grid(self) -> MailboxGrid:
        return self.query_one(MailboxGrid)

    def on_mount(self) -> None:
        self.grid.focus()
        self.update_header()
        self.update_status()

    def update_header(self) -> None:
        self.query_one("#title", Static).update(
            f"mbxtui · Mailboxes · {safe(self.actor.login)} ({self.actor.role.value})")
        tabs = []
        for index, view in enumerate(VIEW_KEYS):
            label = f"{index + 1} {VIEW_TABS.get(view, VIEW_TITLES[view])}"
            tabs.append(f"[reverse]{label}[/]" if view == self.view else label)
        self.query_one("#views", Static).update("  ".join(tabs))

    def update_status(self) -> None:
        grid = self.grid
        filter_text = self.query_one("#filter", Input).value.strip()
        counted = f"{grid.row_count:,}" if grid.total_known else f"{grid.row_count:,}+ (counting…)"
        parts = [f"{counted} in {VIEW_TITLES[self.view]}"]
        if filter_text:
            parts[0] += f" matching {safe(repr(filter_text))}"
        parts.append(f"{len(grid.marked):,} selected")
        if self._changed_elsewhere:
            parts.append("changed elsewhere: ctrl+r reads it again")
        if self.app.progress_text:
            parts.append(self.app.progress_text)
        self.query_one("#status", Static).update(" · ".join(parts))

    # -- grid events --

    def on_mailbox_grid_marks_changed(self, _message) -> None:
        self.update_status()

    def progress_changed(self, _text: str) -> None:
        self.update_status()

    def on_mailbox_grid_view_read(self, _message) -> None:
        self.update_status()

    def mailboxes_tested(self, events) -> None:
        self.grid.refresh_rows([event.mailbox_id for event in events])

    def data_changed(self) -> None:
        """Mailboxes changed elsewhere: read the view again, now if this screen is in front (a
        dialog on top may be about to act on the marks), else when it comes back.

        The rows on screen are read again at once. The view itself is read again at most every
        ``AUTO_RELOAD_SECONDS`` (a Test & Enable run commits every second, and at a million
        mailboxes a reading takes half a second of work), and not at all while a large view has
        marks: re-reading it would hold the keys for as long; the status line says so instead."""
        if self.app.screen is not self:
            self._changed_meanwhile = True
            return
        self.grid.refresh_rows()
        if self.grid.marked and self.grid.row_count > AUTO_RELOAD_MOST_MARKED_ROWS:
            self._changed_elsewhere = True
            self.update_status()
            return
        wait = self._last_auto_reload + AUTO_RELOAD_SECONDS - time.monotonic()
        if wait <= 0:
            self._auto_reload()
        elif self._auto_reload_timer is None:
            self._auto_reload_timer = self.set_timer(wait, self._auto_reload)

    def _auto_reload(self) -> None:
        self._auto_reload_timer = None
        self._last_auto_reload = time.monotonic()
        if self.app.screen is self:
            self.action_reload()
        else:
            self._changed_meanwhile = True

    def on_screen_resume(self) -> None:
        if self._changed_meanwhile:
            self._changed_meanwhile = False
            self.action_reload()

    # -- views and filter --

    def action_view(self, view: str) -> None:
        self.view = View(view)
        self.grid.set_query(view=self.view.value)
        self.update_header()
        self.update_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter" and self.query_one("#filter", Input).has_focus:
            return False  # "/" is then text in the filter
        return super().check_action(action, parameters)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        self.set_focus(box)  # at once: focus() would wait until the keys already queued are handled

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            try:
                self.grid.set_query(filter_text=event.value)
            except MbxError as exc:
                self.notify(str(exc), severity="error", markup=False)
            self.update_status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.set_focus(self.grid)

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:
            if not box.value:
                box.add_class("hidden")
            self.set_focus(self.grid)

    def action_reload(self) -> None:
        self._changed_elsewhere = False
        self.grid.reload()
        self.update_status()

    # -- opening --

    def action_open(self) -> None:
        mailbox_id = self.grid.cursor_id
        if mailbox_id is None:
            return
        from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen

        self.app.push_screen(MailboxDetailScreen(mailbox_id))

    def action_new_forward(self) -> None:
        from mbxtui.tui.screens.forms import ForwardMailboxForm

        self.app.push_screen(ForwardMailboxForm(), lambda created: created and self.action_reload())

    # -- bulk actions: one confirmation, then a thread worker --

    def _confirm_then(self, title: str, detail: Callable[[str], str], run: Callable[[Selection], T],
                      done: Callable[[T], str]) -> None:
        """Ask once with ``detail("N mailboxes")``; then ``run`` the selection in a worker and notify
        ``done(result)``. The detail is built by a function, never by formatting a template: it may
        hold data (a profile named "Sales {north}")."""
        count = self.grid.target_count()
        if not count:
            self.notify("No mailbox under the cursor", severity="warning")
            return
        selection = self.grid.target_selection()
        noun = "mailbox" if count == 1 else "mailboxes"

        def finished(result: T) -> None:
            message = done(result)
            self.grid.clear_marks()
            self.grid.reload()
            self.update_status()
            self.notify(message, title=title, markup=False)

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: run(selection), finished, group="bulk", title=f"{title}: refused")

        self.app.push_screen(ConfirmScreen(title, detail(f"{count:,} {noun}")), answered)

    @staticmethod
    def changed(result: BulkResult) -> str:
        return f"{result.changed:,} of {result.selected:,} changed"

    def queued(self, request: Scheduled) -> str:
        self.app.watch_batch(request.batch_id)
        return f"{request.queued:,} queued"

    def defaults_applied(self, outcome: DefaultsApplied) -> str:
        if not outcome.test_batch:
            return self.changed(outcome)
        self.app.watch_batch(outcome.test_batch)
        return f"{outcome.selected:,} changed; Test & Enable queued"

    def action_approve(self) -> None:
        self._confirm_then("Approve email", lambda counted: f"Approve the email address of {counted}? Approval is "
                           f"recorded as {safe(self.actor.login)}.", lambda selection: bulk.approve(self.actor, selection),
                           self.changed)

    def action_reject(self) -> None:
        self._confirm_then("Reject email", lambda counted: f"Reject the email address of {counted}? They are "
                           "disabled until approved.", lambda selection: bulk.reject(self.actor, selection), self.changed)

    def action_test(self) -> None:
        self._confirm_then("Test & Enable", lambda counted: f"Test the connection of {counted} in the background "
                           "and enable each direction that passes?", lambda selection: enablement.schedule(self.actor, selection),
                           self.queued)

    def action_apply_defaults(self) -> None:
        self._confirm_then("Apply Default Email Settings", lambda counted: f"Give {counted} the organisation's "
                           "default profile and methods, then Test & Enable them?",
                           lambda selection: bulk.apply_defaults(self.actor, selection), self.defaults_applied)

    def action_deactivate(self) -> None:
        self._confirm_then("Deactivate", lambda counted: f"Deactivate {counted}? They are disabled and their "
                           "queued tests cancelled.", lambda selection: bulk.deactivate(self.actor, selection), self.changed)

    def action_bulk_edit(self) -> None:
        count = self.grid.target_count()
        if not count:
            return

        def chosen(changes: dict[str, str] | None) -> None:
            if not changes:
                return
            described = ", ".join(f"{k} = {safe(v)}" for k, v in changes.items())
            self._confirm_then("Bulk edit", lambda counted: f"Set {described} on {counted}? Changed directions "
                               "must be tested again.", lambda selection: bulk.bulk_edit(self.actor, selection, **changes),
                               self.changed)

        self.app.push_screen(BulkEditScreen(count), chosen)


LEAVE = "(leave as it is)"


class BulkEditScreen(ClosesOnce, ModalScreen[dict | None]):
    """Choose the profile, methods and tracking to set on the selected mailboxes (R3, R27)."""

    DEFAULT_CSS = """
    BulkEditScreen { align: center middle; }
    BulkEditScreen > Vertical { width: 64; max-width: 95%; height: auto; max-height: 100%; border: thick $primary;
                                background: $surface; padding: 1 2; }
    BulkEditScreen .choice { margin-top: 1; }
    BulkEditScreen Select { background: $boost; }
    BulkEditScreen .actions { height: auto; align-horizontal: right; margin-top: 1; }
    BulkEditScreen Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="bulk-edit-cancel"),
                Binding("ctrl+s", "apply", "Apply", id="bulk-edit-apply")]

    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def compose(self) -> ComposeResult:
        # Compact choices and buttons: the whole dialog fits at 80x24.
        with Vertical():
            yield Static(f"Bulk edit of {self.count:,} mailbox(es)", markup=False)
            yield Label("Profile", classes="choice")
            yield Select([], prompt=LOADING, id="profile", compact=True)
            yield Label("Incoming", classes="choice")
            yield Select([(m.value, m.value) for m in IncomingMethod], prompt=LEAVE, id="incoming", compact=True)
            yield Label("Outgoing", classes="choice")
            yield Select([(m.value, m.value) for m in OutgoingMethod], prompt=LEAVE, id="outgoing", compact=True)
            yield Label("Appointments, contacts and tasks", classes="choice")
            yield Select([(m.value, m.value) for m in ActMethod], prompt=LEAVE, id="act", compact=True)
            yield Label("Tracking (default: the organisation's)", classes="choice")
            yield Select([(value, value) for value in (*(t.value for t in Tracking), FOLLOW_ORGANISATION)],
                         prompt=LEAVE, id="tracking", compact=True)
            with Horizontal(classes="actions"):
                yield Button("Apply (ctrl+s)", variant="primary", id="apply", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        actor = self.app.actor
        run_service(self, lambda: [p.name for p in profiles.list_profiles(actor) if p.active],
                    ProfileNamesLoaded, group="profiles", title="Profiles not loaded")

    def on_profile_names_loaded(self, message: ProfileNamesLoaded) -> None:
        choice = self.query_one("#profile", Select)
        choice.set_options([(Text(safe(name)), name) for name in message.names])  # never read as markup
        choice.prompt = LEAVE

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.action_apply()
        else:
            self.action_cancel()

    def action_apply(self) -> None:
        changes = {}
        for key in ("profile", "incoming", "outgoing", "act", "tracking"):
            value = self.query_one(f"#{key}", Select).value
            if value is not Select.NULL:
                changes[key] = value
        if not changes:
            self.notify("Choose a profile, a method or a tracking to set", severity="warning", markup=False)
            return
        self.dismiss(changes)

    def action_cancel(self) -> None:
        self.dismiss(None)
