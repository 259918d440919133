"""Users and queues: each came with exactly one mailbox (R1), which opens from here; adding one
creates its mailbox with the organisation's defaults, deactivating one deactivates its mailbox (R19)."""

from __future__ import annotations


from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, Static

from mbxtui.core.display import cell, safe
from mbxtui.core.permissions import Permission
from mbxtui.core.services import mailboxes, users
from mbxtui.core.services.users import QueueRecord, UserRecord
from mbxtui.tui.screens.forms import FormScreen
from mbxtui.tui.screens.listing import ListScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen

KINDS = {"user": "1 Users", "queue": "2 Queues"}


class PeopleScreen(ListScreen):
    TITLE_TEXT = "Users and queues"
    BINDINGS = [
        Binding("1", "kind('user')", "Users", show=False, id="people-users"),
        Binding("2", "kind('queue')", "Queues", show=False, id="people-queues"),
        Binding("slash", "filter", "Filter", priority=True, id="filter"),
        Binding("enter", "open", "Open mailbox", id="open"),
        Binding("a", "add", "Add", id="people-add"),
        Binding("X", "deactivate", "Deactivate", id="people-deactivate"),
    ]
    PERMISSIONS = {"add": Permission.CONFIGURE, "deactivate": Permission.CONFIGURE}
    FILTER_PLACEHOLDER = "filter users by name or address (esc to leave)"
    SHOW_DETAIL = True

    def __init__(self, kind: str = "user"):
        super().__init__()
        self.kind = kind

    def columns(self):
        if self.kind == "user":
            return (("Name", 18), ("Email address", 24), ("Active", 6), ("Mailbox", 24))
        return (("Name", 16), ("Email address", 22), ("Owner", 22), ("Active", 6), ("Mailbox", 22))

    def views_line(self) -> str:
        return "  ".join(f"[reverse]{label}[/]" if kind == self.kind else label for kind, label in KINDS.items())

    def fetch(self, offset: int, limit: int):
        if self.kind == "user":
            return None, users.list_users(self.actor, filter_text=self.filter_text or None, limit=limit, offset=offset)
        return None, users.list_queues(self.actor, limit=limit, offset=offset)

    def key_of(self, row: UserRecord | QueueRecord) -> str:
        return row.email

    def cells_of(self, row: UserRecord | QueueRecord):
        if self.kind == "user":
            return row.name, row.email, row.active, row.mailbox
        return row.name, row.email, row.owner, row.active, row.mailbox

    def describe(self, row: UserRecord | QueueRecord | None) -> str:
        if row is None:
            return f"No {self.kind}s to show: press a to add one."
        state = "active" if row.active else "inactive (its mailbox is inactive too)"
        owner = f" · owner {safe(row.owner)}" if self.kind == "queue" else ""
        return f"{self.kind} {safe(row.email)}: {state}{owner}\nmailbox {cell(row.mailbox)} (enter opens it)"

    # -- actions --

    def action_kind(self, kind: str) -> None:
        self.kind = kind
        self.page_start = 0
        if kind == "queue" and self.filter_text:
            self.query_one("#filter", Input).value = ""
            self.filter_text = ""
        self.reload()

    def action_filter(self) -> None:
        if self.kind == "queue":
            self.notify("The filter works on the user list (1)", severity="warning")
            return
        super().action_filter()

    def action_open(self) -> None:
        row = self.current()
        if row is None or not row.mailbox:
            return
        from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen

        self.call(lambda: mailboxes.show(self.actor, row.mailbox).id,
                  lambda mailbox_id: self.app.push_screen(MailboxDetailScreen(mailbox_id)), group="open")

    def action_add(self) -> None:
        def added(record: UserRecord | QueueRecord | None) -> None:
            if record:
                self.notify(f"Added {self.kind} {record.email} with its mailbox {record.mailbox} "
                            "(the organisation's default profile and methods)", title="Added", markup=False)
                self.reload()

        self.app.push_screen(PersonForm(self.kind), added)

    def action_deactivate(self) -> None:
        row = self.current()
        if row is None:
            return
        if not row.active:
            self.notify(f"{row.email} is already inactive", markup=False)
            return
        deactivate = users.deactivate_user if self.kind == "user" else users.deactivate_queue

        kind = self.kind

        def deactivated(_record: object) -> None:
            self.notify(f"Deactivated {kind} {row.email} and its mailbox", markup=False)
            self.reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: deactivate(self.actor, row.email), deactivated, group="deactivate")

        mailbox = f"its mailbox {row.mailbox}" if row.mailbox else "its mailbox"
        self.app.push_screen(ConfirmScreen(
            f"Deactivate {self.kind}",
            f"Deactivate 1 {self.kind}, {row.email}? {mailbox.capitalize()} is deactivated with it and its "
            "queued tests are cancelled (R19)."), answered)


class PersonForm(FormScreen):
    """Add a user or a queue; dismisses with the new record (with its mailbox's address)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.TITLE_TEXT = f"Add {kind}"

    def compose(self) -> ComposeResult:
        yield Static(f"mbxtui · {self.TITLE_TEXT}  (ctrl+s save, esc back)", id="title", markup=False)
        with self.form():
            yield self.note(f"The new {self.kind} gets a mailbox with the organisation's default profile and methods.")
            yield from self.field("name", "Name", Input())
            yield from self.field("email", "Email address", Input())
            if self.kind == "queue":
                yield from self.field("owner", "Owner", Input(placeholder="a user's email address"))
            yield from self.buttons("Add")
        yield Footer()

    def action_save(self) -> None:
        values = self.values()
        if self.kind == "user":
            self.run_save(lambda: users.add_user(self.actor, values["name"], values["email"]), self.dismiss)
        else:
            self.run_save(lambda: users.add_queue(self.actor, values["name"], values["email"], values["owner"]),
                          self.dismiss)
