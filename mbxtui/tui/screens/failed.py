"""Test and Enable Failed: each failed mailbox with the direction that failed, its error code, the
sentence that says what to fix and the next retry; edit, retry or open it from here."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from mbxtui.core.display import cell, safe
from mbxtui.core.enums import DIRECTIONS, View
from mbxtui.core.permissions import Permission
from mbxtui.core.services import enablement, mailbox_views
from mbxtui.core.services.enablement import Scheduled
from mbxtui.core.services.selection import Selection
from mbxtui.tui.screens.listing import ListScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen

DIRECTION_NAMES = {"incoming": "incoming", "outgoing": "outgoing", "act": "ACT"}


def failed_directions(row: dict[str, Any]) -> str:
    return ", ".join(DIRECTION_NAMES[d] for d in DIRECTIONS if row[f"{d}_status"] == "failure")


class FailedScreen(ListScreen):
    TITLE_TEXT = "Test and Enable Failed"
    BINDINGS = [
        Binding("slash", "filter", "Filter", priority=True, id="filter"),
        Binding("enter", "open", "Open", id="open"),
        Binding("e", "edit", "Edit", id="edit"),
        Binding("t", "retry", "Retry", id="failed-retry"),
        Binding("T", "retry_all", "Retry all shown", id="failed-retry-all"),
    ]
    PERMISSIONS = {"edit": Permission.CONFIGURE, "retry": Permission.TEST, "retry_all": Permission.TEST}
    COLUMNS = (("Email address", 28), ("Failed", 17), ("Error code", 20), ("Next retry", 19), ("Name", 24))
    FILTER_PLACEHOLDER = "filter by name or address (esc to leave)"
    SHOW_DETAIL = True

    def fetch(self, offset: int, limit: int):
        page = mailbox_views.list_mailboxes(self.actor, view=View.FAILED, filter_text=self.filter_text or None,
                                        sort="email", limit=limit, offset=offset)
        return page.total, page.rows

    def key_of(self, row: dict[str, Any]) -> str:
        return str(row["id"])

    def cells_of(self, row: dict[str, Any]):
        retry = row["postponed_until"] or ("queued" if row["test_scheduled"] else None)
        return (row["email"], failed_directions(row), row["last_error_code"], retry, row["name"])

    def describe(self, row: dict[str, Any] | None) -> str:
        if row is None:
            return "No mailbox has failed its test." if not self.filter_text else "No failed mailbox matches."
        retry = f" · next retry {row['postponed_until']}" if row["postponed_until"] else ""
        return (f"{safe(row['email'])}: {failed_directions(row)} failed with {cell(row['last_error_code'])}{retry}\n"
                f"{safe(row['last_error_text']) or 'Open it to see the steps of its last test.'}")

    def mailboxes_tested(self, _events) -> None:
        self.reload()

    # -- actions --

    def action_open(self) -> None:
        row = self.current()
        if row is not None:
            from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen

            self.app.push_screen(MailboxDetailScreen(row["id"]))

    def action_edit(self) -> None:
        row = self.current()
        if row is not None:
            from mbxtui.tui.screens.mailbox_detail import MailboxEditScreen

            self.app.push_screen(MailboxEditScreen(row), lambda saved: saved and self.reload())

    def action_retry(self) -> None:
        row = self.current()
        if row is not None:
            self.confirm_retry(f"Test {row['email']} again now and enable what passes?", Selection.of_ids([row["id"]]))

    def action_retry_all(self) -> None:
        count = self.total or 0
        if not count:
            self.notify("No failed mailbox to retry", severity="warning")
            return
        matching = f" matching {self.filter_text!r}" if self.filter_text else ""
        noun = "mailbox" if count == 1 else "mailboxes"
        self.confirm_retry(f"Test all {count:,} failed {noun}{matching} again in the background, including those "
                           "on other pages?", Selection.of_view(View.FAILED.value, self.filter_text or None))

    def confirm_retry(self, detail: str, selection: Selection) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.schedule_tests(selection)

        self.app.push_screen(ConfirmScreen("Test & Enable", detail), answered)

    def schedule_tests(self, selection: Selection) -> None:
        self.call(lambda: enablement.schedule(self.actor, selection, "Retry of failed mailboxes"), self.scheduled,
                  group="schedule", title="Test & Enable: refused")

    def scheduled(self, request: Scheduled) -> None:
        self.app.watch_batch(request.batch_id)
        self.reload()
        self.notify(f"{request.queued:,} queued", title="Test & Enable")
