"""The screens of the console, by the name ``App.action_go`` knows them."""

from __future__ import annotations

from mbxtui.tui.screens.alerts import AlertsScreen
from mbxtui.tui.screens.failed import FailedScreen
from mbxtui.tui.screens.mailboxes import MailboxesScreen
from mbxtui.tui.screens.operators import OperatorsScreen
from mbxtui.tui.screens.people import PeopleScreen
from mbxtui.tui.screens.profiles import ProfilesScreen
from mbxtui.tui.screens.settings import SettingsScreen

SCREENS: dict[str, type] = {
    "mailboxes": MailboxesScreen,
    "profiles": ProfilesScreen,
    "alerts": AlertsScreen,
    "failed": FailedScreen,
    "settings": SettingsScreen,
    "people": PeopleScreen,
    "operators": OperatorsScreen,
}
