"""Operators and their roles (global_admin only): add, change role, remove."""

from __future__ import annotations


from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, Static

from mbxtui.core.display import safe
from mbxtui.core.enums import Role
from mbxtui.core.permissions import Permission
from mbxtui.core.services import operators
from mbxtui.core.services.operators import OperatorRecord
from mbxtui.tui.screens.forms import FormScreen
from mbxtui.tui.screens.listing import ListScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.select import Select

ROLE_DUTIES = {
    Role.GLOBAL_ADMIN.value: "everything, and manages operators",
    Role.SERVICE_ADMIN.value: "everything, may approve email",
    Role.SYSTEM_ADMIN.value: "configures and tests, may not approve",
    Role.VIEWER.value: "read-only",
}


class OperatorsScreen(ListScreen):
    TITLE_TEXT = "Operators"
    BINDINGS = [
        Binding("a", "add", "Add", id="operators-add"),
        Binding("r", "change_role", "Change role", id="operators-change-role"),
        Binding("X", "remove", "Remove", id="operators-remove"),
    ]
    PERMISSIONS = {"add": Permission.MANAGE_OPERATORS, "change_role": Permission.MANAGE_OPERATORS,
                   "remove": Permission.MANAGE_OPERATORS}
    COLUMNS = (("Login", 20), ("Role", 13), ("User", 28), ("Since (UTC)", 19))
    SHOW_DETAIL = True

    def fetch(self, offset: int, limit: int):
        rows = operators.list_operators(self.actor)
        return len(rows), rows[offset:offset + limit]

    def key_of(self, row: OperatorRecord) -> str:
        return row.login

    def cells_of(self, row: OperatorRecord):
        return row.login, row.role, row.user, row.created_on

    def describe(self, row: OperatorRecord | None) -> str:
        if row is None:
            return ""
        me = " (you)" if row.login == self.actor.login else ""
        return f"{safe(row.login)}{me}: {row.role}, {ROLE_DUTIES.get(row.role, '')}"

    def action_add(self) -> None:
        self.app.push_screen(OperatorForm(None), lambda saved: saved and self.reload())

    def action_change_role(self) -> None:
        row = self.current()
        if row is not None:
            self.app.push_screen(OperatorForm(row), lambda saved: saved and self.reload())

    def action_remove(self) -> None:
        row = self.current()
        if row is None:
            return

        def removed(_result: object) -> None:
            self.notify(f"Removed operator {row.login}", markup=False)
            self.reload()

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(lambda: operators.remove(self.actor, row.login), removed, group="remove")

        self.app.push_screen(ConfirmScreen(
            "Remove operator", f"Remove 1 operator, {row.login} ({row.role})? They can no longer use this "
            "database."), answered)


class OperatorForm(FormScreen):
    """Add an operator (``row`` None) or change an operator's role; dismisses True once saved."""

    PERMISSIONS = {"save": Permission.MANAGE_OPERATORS}

    def __init__(self, row: OperatorRecord | None):
        super().__init__()
        self.row = row
        self.TITLE_TEXT = f"Role of {row.login}" if row else "Add operator"

    def compose(self) -> ComposeResult:
        roles = [(f"{role.value}: {ROLE_DUTIES[role.value]}", role.value) for role in Role]
        yield Static(f"mbxtui · {safe(self.TITLE_TEXT)}  (ctrl+s save, esc back)", id="title", markup=False)
        with self.form():
            if self.row is None:
                yield from self.field("login", "Login", Input(placeholder="the person's OS login name"))
                yield from self.field("role", "Role", Select(roles, value=Role.VIEWER.value, allow_blank=False))
                yield from self.field("user", "User", Input(placeholder="their user's email address, for My Mailboxes"))
            else:
                yield from self.field("role", "Role", Select(roles, value=self.row.role, allow_blank=False))
            yield from self.buttons("Add" if self.row is None else "Save")
        yield Footer()

    def action_save(self) -> None:
        values = self.values()

        def saved(operator: OperatorRecord) -> None:
            self.notify(f"{operator.login} is {operator.role}", title="Operators", markup=False)
            self.dismiss(True)

        if self.row is None:
            self.run_save(lambda: operators.add(self.actor, values["login"], values["role"],
                                                values["user"].strip() or None), saved)
        elif values["role"] == self.row.role:
            self.notify("Nothing changed")
        else:
            login = self.row.login
            self.run_save(lambda: operators.set_role(self.actor, login, values["role"]), saved)

