"""The console never waits on the database: with every service call held back in its worker
(``workers.LOAD_DELAY_SECONDS``, a real sleep in the worker thread), screens show "loading…" and
the keys keep answering (help, escape, switching screens and views), then the data arrives."""

from __future__ import annotations

import time

import pytest
from textual.pilot import Pilot

from mbxtui.core.services import mailboxes
from mbxtui.tui import workers
from mbxtui.tui.app import MbxApp
from mbxtui.tui.navigation import screens
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen
from tests.tui.conftest import AUTH_FAILED_MAILBOX, Console, screen_text, settle

SCREENS = screens()
ANSWER_SECONDS = 1.5  # a key shows its effect within this (Pilot alone takes 0.2-0.6 s a key on 2 busy cores)
KEYS_WHILE_LOADING = 7
# Longer than those keys may take by their own limit, so that every load is still on its way when
# the last of them is answered, however slow each key was within its limit (8 s was less than 7 keys
# of 1.2 s on a busy machine).
DELAY_SECONDS = KEYS_WHILE_LOADING * ANSWER_SECONDS + 1.5


async def answers(pilot: Pilot, key: str, shown) -> float:
    """Press ``key``; assert that ``shown()`` holds soon after; how long it took."""
    started = time.monotonic()
    await pilot.press(key)
    while not shown():
        assert time.monotonic() - started < ANSWER_SECONDS, f"{key} not answered within {ANSWER_SECONDS} s"
        await pilot.pause(0.01)
    return time.monotonic() - started


def test_screens_stay_usable_while_their_loads_are_slow(console: Console, monkeypatch: pytest.MonkeyPatch):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        monkeypatch.setattr(workers, "LOAD_DELAY_SECONDS", DELAY_SECONDS)
        started = time.monotonic()
        await answers(pilot, "f4", lambda: isinstance(app.screen, SCREENS["alerts"]))
        alerts = app.screen
        assert "loading…" in screen_text(app) and "AUTH_FAILED" not in screen_text(app)
        await answers(pilot, "question_mark", lambda: isinstance(app.screen, HelpScreen))
        assert "Keys of Alerts" in screen_text(app)
        await answers(pilot, "escape", lambda: app.screen is alerts)
        await answers(pilot, "2", lambda: "[reverse]2 Errors" in str(alerts.views_line()))  # a view, while loading
        await answers(pilot, "f3", lambda: isinstance(app.screen, SCREENS["profiles"]))
        assert "loading…" in screen_text(app)
        await answers(pilot, "f6", lambda: isinstance(app.screen, SCREENS["settings"]))
        assert "loading…" in screen_text(app)
        await answers(pilot, "f4", lambda: app.screen is alerts)
        assert time.monotonic() - started < DELAY_SECONDS, "the keys above waited for a load"
        assert "loading…" in screen_text(app)  # the Errors view is still on its way
        await settle(app, pilot)
        shown = screen_text(app)
        assert "loading…" not in shown
        assert "AUTH_FAILED" in shown and "TIMEOUT" not in shown, shown  # the Errors view's rows arrived

        await answers(pilot, "f2", lambda: isinstance(app.screen, SCREENS["mailboxes"]))
        await app.push_screen(MailboxDetailScreen(bob))
        await pilot.pause()
        assert "loading…" in screen_text(app)
        await answers(pilot, "escape", lambda: isinstance(app.screen, SCREENS["mailboxes"]))  # left before it came
        await settle(app, pilot)
        assert isinstance(app.screen, SCREENS["mailboxes"])

    bob = mailboxes.show(console.admin, AUTH_FAILED_MAILBOX).id
    console.run(scenario)
