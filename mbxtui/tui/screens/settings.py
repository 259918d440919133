"""Organisation email settings: defaults for new mailboxes, approval requirements, which alert
levels are recorded, owner notification and the retry policy for transient errors, and the settings
of processing: tracking defaults (R27), the stale threshold (R31) and the notification mailbox (R32)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Checkbox, Footer, Input, Static

from mbxtui.core.display import safe
from mbxtui.core.enums import ActMethod, IncomingMethod, OutgoingMethod, Tracking
from mbxtui.core.permissions import Permission
from mbxtui.core.services import profiles, settings
from mbxtui.core.services.settings import EmailSettings
from mbxtui.tui.messages import FormDataLoaded
from mbxtui.tui.screens.forms import FormScreen, options
from mbxtui.tui.widgets.select import Select

FLAGS = (
    ("require_approval_users", "Only approved users"),
    ("require_approval_queues", "Only approved queues"),
    ("record_error_alerts", "Record error alerts"),
    ("record_warning_alerts", "Record warning alerts"),
    ("record_information_alerts", "Record information alerts"),
    ("notify_owners_of_profile_alerts", "Tell owners of profile alerts"),
)


class SettingsScreen(FormScreen):
    TITLE_TEXT = "Email settings"
    DEFAULT_CSS = """
    SettingsScreen #notification-warning { color: $text-warning; padding-left: 32; }
    """
    BINDINGS = [Binding("ctrl+r", "reload", "Reload", show=False, id="reload")]
    NEEDS_DATA = True

    def __init__(self) -> None:
        super().__init__()
        self.record: EmailSettings | None = None

    def read_data(self) -> tuple[EmailSettings, list[str]]:
        record = settings.show(self.actor)
        names = [p.name for p in profiles.list_profiles(self.actor)
                 if p.active or p.name == record.default_profile]
        return record, names

    def compose(self) -> ComposeResult:
        read_only = "" if self.may(Permission.CONFIGURE) else "  (read-only for your role)"
        title = f"mbxtui · {self.TITLE_TEXT} · {self.actor.login} ({self.actor.role.value}){read_only}"
        if self.data is None:
            yield from self.loading_placeholder(title)
            return
        self.record, names = self.data
        yield Static(title, id="title", markup=False)
        with self.form():
            yield self.note("Defaults apply to new mailboxes (Apply Default Email Settings, D on the mailbox grid, "
                            "gives them to existing ones). Email is processed only for approved users and queues "
                            "when those are ticked.")
            yield from self.field("default_profile", "Default profile",
                                  Select(options(names), prompt="(none)",
                                         allow_blank=self.record.default_profile is None))
            yield from self.field("default_incoming", "Default incoming method",
                                  Select(options(IncomingMethod), allow_blank=False))
            yield from self.field("default_outgoing", "Default outgoing method",
                                  Select(options(OutgoingMethod), allow_blank=False))
            yield from self.field("default_act", "Default ACT method", Select(options(ActMethod), allow_blank=False))
            for key, title in FLAGS:
                yield from self.field(key, title, Checkbox())
            yield from self.field("retry_attempts", "Retries of transient failures", Input(placeholder="0–100"))
            yield from self.field("retry_interval_minutes", "Minutes between retries", Input(placeholder="1–1440"))
            yield self.note("Tracking applies to mailboxes without their own: all email, only replies to tracked "
                            "email, or none. Owners' alert emails are sent through the notification mailbox.")
            yield from self.field("tracking_users", "Tracking for users", Select(options(Tracking), allow_blank=False))
            yield from self.field("tracking_queues", "Tracking for queues",
                                  Select(options(Tracking), allow_blank=False))
            yield from self.field("stale_hours", "Stale after (hours)", Input(placeholder="1–8760"))
            yield from self.field("notification_mailbox", "Notification mailbox",
                                  Input(placeholder="a mailbox that sends; empty: none"))
            yield Static("", id="notification-warning", classes="hidden", markup=False)
            yield from self.buttons()
        yield Footer()

    def form_ready(self) -> None:
        self.fill(self.record)
        if not self.may(Permission.CONFIGURE):
            for row in self.query(".form-row"):
                row.disabled = True
        super().form_ready()

    def fill(self, values: EmailSettings) -> None:
        for widget in self.query("#form Input, #form Select, #form Checkbox"):
            value = getattr(values, widget.id or "", None)
            if isinstance(widget, Input):
                widget.value = "" if value is None else str(value)
            elif isinstance(widget, Select):
                if value is not None:
                    widget.value = value
            else:
                widget.value = bool(value)
        for warning in self.query("#notification-warning").results(Static):  # none while the form is away
            warning.update(f"Note: {safe(values.notification_warning)}" if values.notification_warning else "")
            warning.set_class(not values.notification_warning, "hidden")
        self.initial = self.values()

    def action_reload(self) -> None:
        if self.data is None:
            return  # the first reading is still on its way

        def read_again() -> None:
            self.load(lambda: settings.show(self.actor), FormDataLoaded, group="reload")

        self.confirm_discard(read_again)

    async def on_form_data_loaded(self, message: FormDataLoaded) -> None:
        if isinstance(message.data, EmailSettings):  # read again (ctrl+r): the same fields, new values
            message.stop()
            message.prevent_default()
            self.record = message.data
            self.clear_errors()
            self.fill(self.record)

    def action_save(self) -> None:
        changes = self.changed()
        if not changes:
            self.notify("Nothing changed")
            return

        def saved(record: EmailSettings) -> None:
            self.record = record
            self.fill(record)
            self.notify("Email settings saved: " + ", ".join(sorted(changes)), title="Settings", markup=False)

        version = self.record.row_version if self.record is not None else None
        self.run_save(lambda: settings.update(self.actor, expected_version=version, **changes), saved)
