"""The one table of the console's screens: the name ``App.action_go`` knows each by, its function
key, its title in the Footer, its entry in the command palette and the permission it needs. The
app's navigation bindings and ``SCREENS`` are made from it; forms make their "leave to" keys from
it too, under the same binding ids, so that a keymap rebinding ``go-alerts`` moves both.

Screens are named by module and class and imported when first asked for: the screens import this
module (forms do), so it imports none of them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from textual.binding import Binding
from textual.screen import Screen

from mbxtui.core.permissions import Permission


@dataclass(frozen=True)
class Destination:
    name: str
    key: str
    title: str  # in the Footer and the help
    palette: str  # what the command palette says of it
    screen: str  # "module:Class"
    requires: Permission | None = None

    @property
    def binding_id(self) -> str:
        return f"go-{self.name}"

    def screen_class(self) -> type[Screen]:
        module, _, name = self.screen.partition(":")
        return getattr(importlib.import_module(module), name)


NAVIGATION: tuple[Destination, ...] = (
    Destination("mailboxes", "f2", "Mailboxes", "The mailbox grid: views, filter, marks and bulk actions",
                "mbxtui.tui.screens.mailboxes:MailboxesScreen"),
    Destination("profiles", "f3", "Profiles", "Email server profiles, their mailboxes and connection tests",
                "mbxtui.tui.screens.profiles:ProfilesScreen"),
    Destination("alerts", "f4", "Alerts", "The alerts wall, newest first",
                "mbxtui.tui.screens.alerts:AlertsScreen"),
    Destination("failed", "f5", "Failed", "Mailboxes whose Test & Enable failed, and what to fix",
                "mbxtui.tui.screens.failed:FailedScreen"),
    Destination("settings", "f6", "Settings", "The organisation's email settings",
                "mbxtui.tui.screens.settings:SettingsScreen"),
    Destination("people", "f7", "Users/queues", "Users and queues, each with its mailbox",
                "mbxtui.tui.screens.people:PeopleScreen"),
    Destination("operators", "f8", "Operators", "Operators and their roles",
                "mbxtui.tui.screens.operators:OperatorsScreen", Permission.MANAGE_OPERATORS),
    Destination("activities", "f9", "Activities", "Email activities, newest first: open, resend, reply, new email",
                "mbxtui.tui.screens.activities:ActivitiesScreen"),
)
BY_NAME: dict[str, Destination] = {destination.name: destination for destination in NAVIGATION}


def go_bindings() -> list[Binding]:
    """The app's function keys, one per screen."""
    return [Binding(d.key, f"go('{d.name}')", d.title, id=d.binding_id) for d in NAVIGATION]


def leave_bindings() -> list[Binding]:
    """A form's function keys: the same ids, leaving the form (asking first if it has edits)."""
    return [Binding(d.key, f"leave_to('{d.name}')", d.title, show=False, id=d.binding_id) for d in NAVIGATION]


@cache
def screens() -> dict[str, type[Screen]]:
    """``SCREENS``: each screen class by its name (importing the screens on first use)."""
    return {d.name: d.screen_class() for d in NAVIGATION}
