"""One mailbox: every field, its last test step by step, its alerts and audit history; edit form."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Checkbox, Footer, Input, Select, Static

from mbxtui.core import jobs
from mbxtui.core.display import cell, safe, test_step_lines
from mbxtui.core.enums import ActMethod, IncomingMethod, OutgoingMethod
from mbxtui.core.permissions import Permission
from mbxtui.core.services import alerts, audit, bulk, credentials, mailbox_views, mailboxes, profiles
from mbxtui.core.services.selection import Selection
from mbxtui.tui.screens.base import BaseScreen
from mbxtui.tui.screens.forms import FormScreen, options
from mbxtui.tui.widgets.confirm import ConfirmScreen

FIELDS = [
    ("name", "Name"), ("email", "Email address"), ("regarding", "Regarding"), ("owner", "Owner"),
    ("profile", "Email server profile"), ("incoming_method", "Incoming"), ("outgoing_method", "Outgoing"),
    ("act_method", "Appointments, contacts, tasks"), ("approval", "Approval"), ("approved_by", "Approved by"),
    ("approved_on", "Approved on"), ("incoming_status", "Incoming status"), ("outgoing_status", "Outgoing status"),
    ("act_status", "ACT status"), ("incoming_enabled", "Enabled for incoming"),
    ("outgoing_enabled", "Enabled for outgoing"), ("act_enabled", "Enabled for ACT"),
    ("test_scheduled", "Test scheduled"), ("test_last_attempted_by", "Last attempted by"),
    ("test_last_attempted_on", "Last attempted on"), ("test_completed_on", "Test completed on"),
    ("last_error_code", "Last error"), ("last_error_text", "What to do"), ("postponed_until", "Next retry"),
    ("use_own_credentials", "Use own credentials"), ("username", "User name"), ("password", "Password"),
    ("delete_after_processing", "Delete emails after processing"), ("active", "Active"),
]


def changes_text(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """What an audit record changed, field by field ("approval: pending → approved"); nothing for a
    record that was created (its summary says so)."""
    if not before or not after:
        return ""
    return "; ".join(f"{key}: {cell(before.get(key))} → {cell(value)}"
                     for key, value in after.items() if before.get(key) != value)


class MailboxDetailScreen(BaseScreen):
    TITLE_TEXT = "Mailbox"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "edit", "Edit"),
        Binding("t", "test", "Test & Enable"),
        Binding("A", "approve", "Approve"),
        Binding("ctrl+r", "reload", "Reload"),
    ]
    PERMISSIONS = {"edit": Permission.CONFIGURE, "test": Permission.TEST, "approve": Permission.APPROVE}

    def __init__(self, mailbox_id: int):
        super().__init__()
        self.mailbox_id = mailbox_id
        self.row: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        with VerticalScroll(id="detail"):
            yield Static(id="fields", markup=False)
            yield Static(id="test", markup=False)
            yield Static(id="alerts", markup=False)
            yield Static(id="history", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one("#detail").focus()

    def action_reload(self) -> None:
        rows = mailbox_views.rows_by_ids(self.actor, [self.mailbox_id])
        if self.mailbox_id not in rows:
            self.notify("This mailbox no longer exists", severity="error")
            self.app.pop_screen()
            return
        self.row = row = rows[self.mailbox_id]
        self.query_one("#title", Static).update(
            f"mbxtui · Mailbox {safe(row['name'])} <{safe(row['email'])}> · {self.actor.login} "
            f"({self.actor.role.value})")
        width = max(len(title) for _, title in FIELDS)
        lines = [f"{title:<{width}}  {cell(row.get(key))}" for key, title in FIELDS]
        self.query_one("#fields", Static).update("\n".join(lines))
        self.query_one("#test", Static).update(self._test_text())
        recent = alerts.list_alerts(self.actor, mailbox=row["email"], include_dismissed=True, limit=20)
        alert_lines = ["", "Alerts (newest first)"] + [
            f"  {a['created_on']}  {a['level']:<11} {safe(a['code']):<22} {safe(a['text'])}" for a in recent]
        self.query_one("#alerts", Static).update("\n".join(alert_lines if recent else ["", "Alerts: none"]))
        history = audit.list_entries(self.actor, record_kind="mailbox", record_id=self.mailbox_id, limit=30)
        history_lines = ["", "History"]
        for entry in history:
            by = f" (as by {entry['by_login']})" if entry["by_login"] else ""
            history_lines.append(f"  {entry['at']}  {entry['login']}{by}: {safe(entry['summary'])}")
            changed = changes_text(entry.get("before"), entry.get("after"))
            if changed:
                history_lines.append(f"      {changed}")
        self.query_one("#history", Static).update("\n".join(history_lines))

    def _test_text(self) -> str:
        result = jobs.last_result(self.mailbox_id)
        if result is None:
            return "\nLast test: never tested"
        lines = ["", f"Last test: {result['outcome']} on {result['finished_on']} (attempt {result['attempt']})"]
        lines += test_step_lines(result["directions"])
        return "\n".join(lines)

    def mailboxes_tested(self, events) -> None:
        if any(event.mailbox_id == self.mailbox_id for event in events):
            self.action_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_edit(self) -> None:
        self.app.push_screen(MailboxEditScreen(self.row), lambda saved: saved and self.action_reload())

    def action_test(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                request = self.call_service(jobs.schedule, self.actor, Selection.of_ids([self.mailbox_id]))
                if request:
                    self.app.watch_batch(request["batch"])
                    self.action_reload()

        self.app.push_screen(ConfirmScreen("Test & Enable", f"Test {self.row['email']} now and enable what passes?"),
                             answered)

    def action_approve(self) -> None:
        if self.call_service(bulk.approve, self.actor, Selection.of_ids([self.mailbox_id])):
            self.notify("Approved")
            self.action_reload()


class MailboxEditScreen(FormScreen):
    """Edit one mailbox; the password is write-only (R4). Saving checks the mailbox was not changed
    by someone else since the form opened."""

    TITLE_TEXT = "Edit mailbox"
    FIELD_ALIASES = {"incoming": "incoming_method", "outgoing": "outgoing_method", "act": "act_method",
                     "delete-after-processing": "delete_after_processing",
                     "use-own-credentials": "use_own_credentials"}

    def __init__(self, row: dict[str, Any]):
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        row = self.row
        names = [p["name"] for p in profiles.list_profiles(self.actor) if p["active"] or p["name"] == row["profile"]]
        yield Static(f"mbxtui · Edit mailbox {safe(row['email'])}", id="title", markup=False)
        with self.form():
            yield self.note("A new address needs approval and a new test (R7); a new profile or method, a new test.")
            yield from self.field("name", "Name", Input(row["name"]))
            yield from self.field("email", "Email address", Input(row["email"]))
            yield from self.field("profile", "Email server profile",
                                  Select(options(names), value=row["profile"] or Select.NULL, prompt="(none)"))
            yield from self.field("incoming_method", "Incoming", Select(
                options(m.value for m in IncomingMethod), value=row["incoming_method"], allow_blank=False))
            yield from self.field("outgoing_method", "Outgoing", Select(
                options(m.value for m in OutgoingMethod), value=row["outgoing_method"], allow_blank=False))
            yield from self.field("act_method", "Appointments, contacts, tasks", Select(
                options(m.value for m in ActMethod), value=row["act_method"], allow_blank=False))
            yield from self.field("username", "User name (empty: the address)", Input(row["username"] or ""))
            yield from self.field("use_own_credentials", "Use own credentials", Checkbox(value=row["use_own_credentials"]))
            yield from self.field("delete_after_processing", "Delete emails after processing",
                                  Checkbox(value=row["delete_after_processing"]))
            yield from self.field("password", f"Password ({row['password']})",
                                  Input(password=True, placeholder="type to replace; never shown"))
            yield from self.buttons()
        yield Footer()

    def action_save(self) -> None:
        changes = self.changed()
        password = changes.pop("password", None)
        if not changes and not password:
            self.notify("Nothing changed")
            return

        def save():
            email = self.row["email"]
            if changes:
                email = mailboxes.edit(self.actor, email, expected_version=self.row["row_version"], **changes)["email"]
            if password:
                credentials.set_mailbox_secret(self.actor, email, password, self.store_for_secrets())
            return True

        if self.run_save(save):
            self.notify("Saved")
            self.dismiss(True)
