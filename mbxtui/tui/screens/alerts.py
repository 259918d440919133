"""The alerts wall: newest first, filtered by level and by mailbox or profile; open what an alert is
about, dismiss one, or dismiss every alert shown."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from mbxtui.core.display import safe
from mbxtui.core.enums import AlertLevel
from mbxtui.core.permissions import Permission
from mbxtui.core.services import alerts, mailboxes
from mbxtui.tui.screens.listing import ListScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen

LEVELS: dict[str | None, str] = {None: "All", AlertLevel.ERROR.value: "Errors",
                                 AlertLevel.WARNING.value: "Warnings", AlertLevel.INFORMATION.value: "Information"}


class AlertsScreen(ListScreen):
    TITLE_TEXT = "Alerts"
    BINDINGS = [
        *[Binding(str(index + 1), f"level({level!r})", title, show=False, id=f"alerts-level-{title.lower()}")
          for index, (level, title) in enumerate(LEVELS.items())],
        Binding("slash", "filter", "Mailbox/profile", priority=True, id="filter"),
        Binding("enter", "open", "Open", id="open"),
        Binding("d", "dismiss_one", "Dismiss", id="alerts-dismiss"),
        Binding("D", "dismiss_shown", "Dismiss all shown", id="alerts-dismiss-shown"),
    ]
    PERMISSIONS = {"dismiss_one": Permission.DISMISS_ALERTS, "dismiss_shown": Permission.DISMISS_ALERTS}
    COLUMNS = (("Created (UTC)", 19), ("Level", 11), ("Code", 20), ("About", 26), ("Text", 80))
    FILTER_PLACEHOLDER = "a mailbox's email address or a profile's name, then enter (empty: all)"
    FILTER_AS_YOU_TYPE = False
    SHOW_DETAIL = True

    def __init__(self) -> None:
        super().__init__()
        self.level: str | None = None

    def filters(self) -> dict[str, str | None]:
        """The service's filters: text with an @ is a mailbox address, anything else a profile name."""
        text = self.filter_text or None
        is_address = text is not None and "@" in text
        return {"level": self.level, "mailbox": text if is_address else None,
                "profile": None if is_address else text}

    def fetch(self, offset: int, limit: int):
        filters = self.filters()
        return (alerts.count_alerts(self.actor, **filters),
                alerts.list_alerts(self.actor, **filters, limit=limit, offset=offset))

    def key_of(self, row: dict[str, Any]) -> str:
        return str(row["id"])

    def cells_of(self, row: dict[str, Any]):
        return (row["created_on"], row["level"], row["code"], self.about(row), row["text"])

    @staticmethod
    def about(row: dict[str, Any]) -> str:
        return row["mailbox"] or (f"profile {row['profile']}" if row["profile"] else "")

    def describe(self, row: dict[str, Any] | None) -> str:
        if row is None:
            return "No alerts to show."
        return f"{row['level']} {safe(row['code'])} · {safe(self.about(row)) or 'the organisation'}\n{safe(row['text'])}"

    def views_line(self) -> str:
        tabs = []
        for index, (level, title) in enumerate(LEVELS.items()):
            label = f"{index + 1} {title}"
            tabs.append(f"[reverse]{label}[/]" if level == self.level else label)
        return "  ".join(tabs) + "   / mailbox or profile"

    def status_parts(self) -> list[str]:
        return [] if self.rows else ["newest first"]

    def mailboxes_tested(self, _events) -> None:
        self.reload()

    # -- actions --

    def action_level(self, level: str | None) -> None:
        self.level = level
        self.page_start = 0
        self.reload()

    def action_open(self) -> None:
        row = self.current()
        if row is None:
            return
        if row["mailbox"]:
            from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen

            self.call(lambda: mailboxes.show(self.actor, row["mailbox"]).id,
                      lambda mailbox_id: self.app.push_screen(MailboxDetailScreen(mailbox_id)), group="open")
        elif row["profile"]:
            from mbxtui.tui.screens.profiles import ProfileDetailScreen

            self.app.push_screen(ProfileDetailScreen(row["profile"]))

    def action_dismiss_one(self) -> None:
        row = self.current()
        if row is None:
            return

        def dismissed(_count: int) -> None:
            self.notify(f"Dismissed {safe(row['code'])}", markup=False)
            self.reload()

        self.call(lambda: alerts.dismiss(self.actor, [row["id"]]), dismissed, group="dismiss")

    def action_dismiss_shown(self) -> None:
        filters = self.filters()
        count = self.total or 0
        if not count:
            self.notify("No alerts to dismiss", severity="warning")
            return
        shown = [LEVELS[self.level].lower() if self.level else "all levels"]
        if self.filter_text:
            shown.append(f"about {self.filter_text}")
        noun = "alert" if count == 1 else "alerts"

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss_matching(filters)

        self.app.push_screen(ConfirmScreen(
            "Dismiss all shown", f"Dismiss {count:,} {noun} ({', '.join(shown)}), including those on other pages?"),
            answered)

    def dismiss_matching(self, filters: dict[str, str | None]) -> None:
        self.call(lambda: alerts.dismiss_matching(self.actor, **filters), self.dismissed, group="dismiss",
                  title="Dismiss: refused")

    def dismissed(self, count: int) -> None:
        self.page_start = 0
        self.reload()
        self.notify(f"Dismissed {count:,} alert(s)", title="Alerts")

