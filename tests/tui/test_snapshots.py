"""SVG snapshots of every screen of the console at 80x24 and 120x36, on the seeded organisation whose
timestamps are fixed. A changed screen fails here until its new baseline has been looked at and
accepted with ``pytest tests/tui/test_snapshots.py --snapshot-update``."""

from __future__ import annotations

from typing import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from mbxtui.core.services import mailboxes
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from mbxtui.tui.screens.profiles import ProfileDetailScreen
from tests.tui.conftest import AUTH_FAILED_MAILBOX, HEAD_OFFICE, Console, settle
from tests.tui.test_activities import record_mail

SIZES = {"80x24": (80, 24), "120x36": (120, 36)}

Steps = Callable[[MbxApp, Pilot], Awaitable[None]]


async def grid(app: MbxApp, pilot: Pilot) -> None:
    await pilot.press("down", "space", "down", "down")  # a marked row, the cursor two rows below


async def confirmation(app: MbxApp, pilot: Pilot) -> None:
    await pilot.press("space", "down", "space", "A")


async def bulk_edit(app: MbxApp, pilot: Pilot) -> None:
    await pilot.press("space", "down", "space", "e")


async def mailbox_detail(app: MbxApp, pilot: Pilot) -> None:
    await app.push_screen(MailboxDetailScreen(mailboxes.get(AUTH_FAILED_MAILBOX).id))


async def edit_form(app: MbxApp, pilot: Pilot) -> None:
    await mailbox_detail(app, pilot)
    await settle(app, pilot)
    await pilot.press("e")


def go(name: str, *keys: str) -> Steps:
    async def steps(app: MbxApp, pilot: Pilot) -> None:
        app.action_go(name)
        await settle(app, pilot)
        await pilot.press(*keys)

    return steps


async def profile_detail(app: MbxApp, pilot: Pilot) -> None:
    await app.push_screen(ProfileDetailScreen(HEAD_OFFICE))


async def activities_screen(app: MbxApp, pilot: Pilot) -> None:
    record_mail()
    await go("activities", "down")(app, pilot)


async def help_screen(app: MbxApp, pilot: Pilot) -> None:
    await pilot.press("question_mark")


SCREENS: dict[str, Steps] = {
    "mailboxes": grid,
    "confirmation": confirmation,
    "bulk-edit": bulk_edit,
    "mailbox-detail": mailbox_detail,
    "edit-form": edit_form,
    "profiles": go("profiles"),
    "profile-detail": profile_detail,
    "profile-mailboxes": go("profiles", "down", "enter", "2"),
    "alerts": go("alerts"),
    "failed": go("failed"),
    "settings": go("settings"),
    "users-queues": go("people"),
    "operators": go("operators"),
    "help": help_screen,
    "activities": activities_screen,
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
def test_screen(console: Console, snap_compare, screen: str, size: str):
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await pilot.pause()
        await SCREENS[screen](app, pilot)
        await settle(app, pilot)  # never a "loading…" frame: every load has arrived
        for box in app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor would make the picture depend on timing

    assert snap_compare(console.app(), terminal_size=SIZES[size], run_before=run_before)
