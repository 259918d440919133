"""One mailbox: every field, its last test step by step, its alerts and audit history; edit form."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Checkbox, Footer, Input, Static

from mbxtui.core.display import cell, safe, check_step_lines
from mbxtui.core.enums import ActMethod, IncomingMethod, OutgoingMethod, Regarding, Tracking
from mbxtui.core.jobs import queue as jobs
from mbxtui.core.jobs.queue import JobResult
from mbxtui.core.permissions import Permission
from mbxtui.core.services import (
    alerts, audit, authorizations, bulk, credentials, enablement, mailbox_views, mailboxes, profiles, settings,
)
from mbxtui.core.services.bulk import BulkResult
from mbxtui.core.services.enablement import Scheduled
from mbxtui.core.services.selection import Selection
from mbxtui.core.services.mailbox_views import SyncRow
from mbxtui.tui.messages import MailboxDetailLoaded, ServiceFailed
from mbxtui.tui.screens.authorize import AuthorizeScreen, authorization_applies
from mbxtui.tui.screens.base import LOADING, BaseScreen
from mbxtui.tui.screens.compose import SEND, ComposeForm
from mbxtui.tui.screens.forms import FormScreen, PartlySaved, options
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.select import Select

FIELDS = [
    ("name", "Name"), ("email", "Email address"), ("regarding", "Regarding"), ("owner", "Owner"),
    ("profile", "Email server profile"), ("incoming_method", "Incoming"), ("outgoing_method", "Outgoing"),
    ("act_method", "Appointments, contacts, tasks"), ("tracking_shown", "Tracking"),
    ("approval", "Approval"), ("approved_by", "Approved by"),
    ("approved_on", "Approved on"), ("incoming_status", "Incoming status"), ("outgoing_status", "Outgoing status"),
    ("act_status", "ACT status"), ("incoming_enabled", "Enabled for incoming"),
    ("outgoing_enabled", "Enabled for outgoing"), ("act_enabled", "Enabled for ACT"),
    ("test_scheduled", "Test scheduled"), ("test_last_attempted_by", "Last attempted by"),
    ("test_last_attempted_on", "Last attempted on"), ("test_completed_on", "Test completed on"),
    ("last_error_code", "Last error"), ("last_error_text", "What to do"), ("postponed_until", "Next retry"),
    ("use_own_credentials", "Use own credentials"), ("username", "User name"), ("password", "Password"),
    ("secret_endpoint", "Secret for this endpoint"),
    ("delete_after_processing", "Delete emails after processing"), ("active", "Active"),
]


def changes_text(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """What an audit record changed, field by field ("approval: pending → approved"); nothing for a
    record that was created (its summary says so)."""
    if not before or not after:
        return ""
    return "; ".join(f"{key}: {cell(before.get(key))} → {cell(value)}"
                     for key, value in after.items() if before.get(key) != value)


def sync_text(sync: SyncRow | None) -> str:
    """The mailbox's processing (R31), in the fields' layout."""
    if sync is None:
        return ""
    if sync["state"] is None:
        lines = [("Processing state", "never cycled: no processing cycle has claimed it yet")]
    else:
        error = sync["last_error"]
        lines = [
            ("Processing state", sync["state"]),
            ("Last cycle", f"{cell(sync['last_cycle_started'])} → {cell(sync['last_cycle_finished'])}"),
            ("Last successful incoming", sync["last_incoming_success"]),
            ("Last successful outgoing", sync["last_outgoing_success"]),
            ("Items last cycle / total", f"{sync['items_last_cycle'] or 0:,} / {sync['items_total'] or 0:,}"),
            ("Next cycle due", sync["next_due"]),
            ("Last sync error", f"{error['code']}: {error['text']}" if error else None),
        ]
    if sync["not_processed"]:
        lines.insert(0, ("Not processed", sync["not_processed"]))
    stale = "yes (no successful sync for longer than the organisation's stale threshold)" if sync["stale"] else "no"
    lines.append(("Stale", stale))
    width = max(len(title) for title, _ in lines)
    return "\n".join(["", "Sync status"] + [f"{title:<{width}}  {cell(value)}" for title, value in lines])


def authorization_lines(row: dict[str, Any]) -> list[str]:
    """The mailbox's own OAuth2 authorization (``mailbox authorize``), on a profile where it applies."""
    if not row.get("authorization_applies"):
        return []
    state = row.get("authorization")
    if state is None:
        return ["", "Authorization: none (z authorizes it)"]
    lines = [("Authorized", f"{cell(state['authorized_on'])} by {cell(state['authorized_by'])}"),
             ("Refresh token can expire", state["refresh_expires_on"]),
             ("Last refresh", state["last_refresh_on"]), ("Last refresh error", state["last_refresh_error"])]
    width = max(len(title) for title, _ in lines)
    return ["", "Authorization"] + [f"{title:<{width}}  {cell(value)}" for title, value in lines]


def organisation_tracking(regarding: str, org: settings.EmailSettings) -> str:
    return org.tracking_users if regarding == Regarding.USER else org.tracking_queues


def tracking_text(row: dict[str, Any], org: settings.EmailSettings) -> str:
    """R27 as the detail shows it: the mailbox's own tracking, or the organisation's it follows."""
    if row["regarding"] == Regarding.FORWARD:
        return "each user's and queue's own"
    if row["tracking"] == mailboxes.FOLLOW_ORGANISATION:
        return f"{organisation_tracking(row['regarding'], org)} (the organisation's default)"
    return row["tracking"]


class MailboxDetailScreen(BaseScreen):
    TITLE_TEXT = "Mailbox"
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("e", "edit", "Edit", id="edit"),
        Binding("t", "test", "Test & Enable", id="mailbox-test"),
        Binding("A", "approve", "Approve", id="mailbox-approve"),
        Binding("C", "confirm_secret", "Confirm secret", id="mailbox-confirm-secret"),
        Binding("z", "authorize", "Authorize", id="mailbox-authorize"),
        Binding("Z", "deauthorize", "Deauthorize", id="mailbox-deauthorize"),
        Binding("n", "compose", "New email", id="mailbox-compose"),
        Binding("ctrl+r", "reload", "Reload", id="reload"),
    ]
    PERMISSIONS = {"edit": Permission.CONFIGURE, "test": Permission.TEST, "approve": Permission.APPROVE,
                   "confirm_secret": credentials.CONFIRM_SECRET, "compose": SEND,
                   "authorize": credentials.SET_SECRET, "deauthorize": credentials.SET_SECRET}

    def __init__(self, mailbox_id: int):
        super().__init__()
        self.mailbox_id = mailbox_id
        self.row: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static(f"mbxtui · Mailbox · {self.actor.login} ({self.actor.role.value})", id="title", markup=False)
        with VerticalScroll(id="detail"):
            yield Static(LOADING, id="fields", markup=False)
            yield Static(id="sync", markup=False)
            yield Static(id="test", markup=False)
            yield Static(id="alerts", markup=False)
            yield Static(id="history", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one("#detail").focus()

    def action_reload(self) -> None:
        mailbox_id = self.mailbox_id

        def read() -> MailboxDetailLoaded:
            row = mailbox_views.rows_by_ids(self.actor, [mailbox_id]).get(mailbox_id)
            if row is None:
                return MailboxDetailLoaded(mailbox_id, None)
            # Read with the row (its READ checked): not profiles.show, which counts the profile's mailboxes.
            profile = profiles.ProfileRecord.of(profiles.get(row["profile"])) if row["profile"] else None
            row = {**row, "secret_endpoint": credentials.mailbox_secret_state(self.actor, row["email"]),
                   "tracking_shown": tracking_text(row, settings.show(self.actor)),
                   "authorization_applies": authorization_applies(profile),
                   "authorization": authorizations.state_of(self.actor, row["email"])}
            return MailboxDetailLoaded(
                mailbox_id, row, jobs.last_result(mailbox_id),
                alerts.list_alerts(self.actor, mailbox=row["email"], include_dismissed=True, limit=20),
                audit.list_entries(self.actor, record_kind="mailbox", record_id=mailbox_id, limit=30),
                mailbox_views.sync_of(self.actor, mailbox_id))

        self.load(read, lambda loaded: loaded)

    def service_failed(self, message: ServiceFailed) -> None:
        if message.group == "load" and not self.row:
            self.query_one("#fields", Static).update(f"Not loaded: {message.problem} (ctrl+r tries again)")

    def on_mailbox_detail_loaded(self, message: MailboxDetailLoaded) -> None:
        if message.row is None:
            self.notify("This mailbox no longer exists", severity="error")
            if self.app.screen is self:
                self.app.pop_screen()
            return
        self.row = row = message.row
        self.refresh_bindings()
        self.query_one("#title", Static).update(
            f"mbxtui · Mailbox {safe(row['name'])} <{safe(row['email'])}> · {self.actor.login} "
            f"({self.actor.role.value})")
        width = max(len(title) for _, title in FIELDS)
        lines = [f"{title:<{width}}  {cell(row.get(key))}" for key, title in FIELDS] + authorization_lines(row)
        self.query_one("#fields", Static).update("\n".join(lines))
        self.query_one("#sync", Static).update(sync_text(message.sync))
        self.query_one("#test", Static).update(self._test_text(message.last_test))
        recent = message.alerts
        alert_lines = ["", "Alerts (newest first)"] + [
            f"  {a['created_on']}  {a['level']:<11} {safe(a['code']):<22} {safe(a['text'])}" for a in recent]
        self.query_one("#alerts", Static).update("\n".join(alert_lines if recent else ["", "Alerts: none"]))
        history = message.history
        history_lines = ["", "History"]
        for entry in history:
            by = f" (as by {safe(entry['by_login'])})" if entry["by_login"] else ""
            history_lines.append(f"  {entry['at']}  {safe(entry['login'])}{by}: {safe(entry['summary'])}")
            changed = changes_text(entry.get("before"), entry.get("after"))
            if changed:
                history_lines.append(f"      {changed}")
        self.query_one("#history", Static).update("\n".join(history_lines))

    @staticmethod
    def _test_text(result: JobResult | None) -> str:
        if result is None:
            return "\nLast test: never tested"
        lines = ["", f"Last test: {result.outcome} on {result.finished_on} (attempt {result.attempt})"]
        lines += check_step_lines(result.directions)
        return "\n".join(lines)

    def mailboxes_tested(self, events) -> None:
        if any(event.mailbox_id == self.mailbox_id for event in events):
            self.action_reload()

    def action_back(self) -> None:
        self.leave()

    def action_edit(self) -> None:
        if self.row:
            self.app.push_screen(MailboxEditScreen(self.row), lambda saved: saved and self.action_reload())

    def action_compose(self) -> None:
        """A new email from this mailbox (queued; processing sends it, R29)."""
        if self.row:
            self.app.push_screen(ComposeForm(sender=self.row["email"]))

    def action_test(self) -> None:
        if not self.row:
            return
        selection = Selection.of_ids([self.mailbox_id])

        def scheduled(request: Scheduled) -> None:
            self.app.watch_batch(request.batch_id)
            self.action_reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: enablement.schedule(self.actor, selection), scheduled, group="schedule")

        self.app.push_screen(ConfirmScreen("Test & Enable", f"Test {self.row['email']} now and enable what passes?"),
                             answered)

    def action_approve(self) -> None:
        def approved(_outcome: BulkResult) -> None:
            self.notify("Approved")
            self.action_reload()

        self.call(lambda: bulk.approve(self.actor, Selection.of_ids([self.mailbox_id])), approved,
                  group="approve")


    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "authorize" and not self.row.get("authorization_applies"):
            return False  # not an oauth2 profile whose mailboxes authorize themselves: hidden
        if action == "deauthorize" and not self.row.get("authorization"):
            return False  # nothing to take back: hidden
        return super().check_action(action, parameters)

    def action_deauthorize(self) -> None:
        """``mailbox deauthorize``: revoked at the provider where it can be, out of the keyring always."""
        if not self.row.get("authorization"):
            return
        store, email, actor = self.app.store, self.row["email"], self.actor
        if store is None or store.needs_master_password:
            self.notify("The secrets store is locked: restart the console and enter the master password",
                        severity="error", markup=False)
            return

        def done(result: authorizations.Deauthorized) -> None:
            removed = "its refresh token was removed from the keyring; " if result.warning is None else ""
            self.notify(f"Deauthorized {result.email}: {removed}{result.revocation}",
                        severity="warning" if result.revoked is False else "information", markup=False, timeout=15)
            if result.warning is not None:
                self.notify(result.warning, severity="warning", markup=False, timeout=30)
            self.action_reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: authorizations.deauthorize(actor, email, store), done, group="deauthorize")

        self.app.push_screen(ConfirmScreen(
            "Deauthorize", f"Take back the authorization of {email}? Its grant is revoked at the OAuth provider "
                           f"where it can be, and its refresh token is removed from the keyring: it stops "
                           f"logging in until it is authorized again (z)."), answered)

    def action_authorize(self) -> None:
        """``mailbox authorize``: the device-code flow in a dialog; the detail reloads after it."""
        if self.row.get("authorization_applies"):
            self.app.push_screen(AuthorizeScreen(self.row["email"]), lambda _done: self.action_reload())

    def action_confirm_secret(self) -> None:
        """R34: send the mailbox's secrets to its profile's endpoint as it is now."""
        if not self.row:
            return
        if self.row.get("secret_endpoint") == credentials.NO_SECRET:
            self.notify("This mailbox has no password or token to confirm", severity="warning", markup=False)
            return
        selection = Selection.of_ids([self.mailbox_id])

        def confirmed(result: tuple[int, int]) -> None:
            self.notify("Confirmed for the current endpoint" if result[1] else "Already confirmed", markup=False)
            self.action_reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: credentials.confirm_mailbox_secrets(self.actor, selection), confirmed,
                          group="confirm-secret")

        self.app.push_screen(ConfirmScreen(
            "Confirm secret",
            f"Send the password and token of {self.row['email']} to the current servers of profile "
            f"{self.row['profile'] or '(none)'} from now on? Confirm only if that endpoint is the right one."),
            answered)


class MailboxEditScreen(FormScreen):
    """Edit one mailbox; the password is write-only (R4). Saving checks the mailbox was not changed
    by someone else since the form opened."""

    TITLE_TEXT = "Edit mailbox"
    FIELD_ALIASES = {"incoming": "incoming_method", "outgoing": "outgoing_method", "act": "act_method",
                     "delete-after-processing": "delete_after_processing",
                     "use-own-credentials": "use_own_credentials"}

    NEEDS_DATA = True

    def __init__(self, row: dict[str, Any]):
        super().__init__()
        self.row = row

    def read_data(self) -> tuple[list[str], settings.EmailSettings]:
        return ([p.name for p in profiles.list_profiles(self.actor) if p.active or p.name == self.row["profile"]],
                settings.show(self.actor))

    def compose(self) -> ComposeResult:
        row = self.row
        if self.data is None:
            yield from self.loading_placeholder(f"mbxtui · Edit mailbox {safe(row['email'])}")
            return
        names, org = self.data
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
            if row["regarding"] != Regarding.FORWARD:  # a forward mailbox tracks by its users' and queues'
                default = f"default: {organisation_tracking(row['regarding'], org)}, the organisation's"
                choices = [*options(Tracking), (Text(default), mailboxes.FOLLOW_ORGANISATION)]
                yield from self.field("tracking", "Tracking", Select(choices, value=row["tracking"], allow_blank=False))
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

        def save() -> tuple[str, ...]:
            store = self.store_for_secrets() if password else None  # locked: refused before anything is written
            email = self.row["email"]
            edited = None
            if changes:
                # A new address or OAuth client takes the mailbox's own authorization out of the keyring.
                edited = mailboxes.edit(self.actor, email, expected_version=self.row["row_version"],
                                        store=self.store_for_secrets, **changes)
                email = edited.email
            if password:
                try:
                    credentials.set_mailbox_secret(self.actor, email, password, store)
                except Exception as exc:
                    if edited is None:
                        raise
                    raise PartlySaved(edited, "the mailbox's other changes were saved", exc) from exc
            return edited.warnings if edited is not None else ()

        def saved(warnings: tuple[str, ...]) -> None:
            self.notify("Saved")
            for warning in warnings:  # saved; what could not follow it (a revocation, the keyring) is said
                self.notify(warning, severity="warning", markup=False, timeout=30)
            self.dismiss(True)

        self.run_save(save, saved)

    def partly_saved(self, record: mailbox_views.MailboxRecord) -> None:
        self.row = {**self.row, "email": record.email, "row_version": record.row_version}
        self.initial = {**self.values(), "password": ""}
