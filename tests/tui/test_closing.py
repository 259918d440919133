"""A screen closes once: a second key pressed before the first close has finished neither runs the
result callback again nor pops the screen underneath (found by tests/hardening/test_console_fuzz.py:
two `esc` on the help screen ended the console with ScreenStackError)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from textual import events
from textual.containers import Container
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot

import mbxtui.tui
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.select import Select
from tests.tui.conftest import Console, settle

KEY_CHARACTERS = {"enter": "\r"}


def queue_keys(app: MbxApp, *keys: str) -> None:
    """Keys as a terminal sends them in one burst: all queued before the console handles the first."""
    for key in keys:
        event = events.Key(key, KEY_CHARACTERS[key])
        event.set_sender(app)
        app._driver.send_message(event)


async def open_the_command_palette(app: MbxApp, pilot: Pilot) -> None:
    await settle(app, pilot)
    await pilot.press("ctrl+p")
    for _ in range(50):  # its commands are gathered in a task of its own
        await pilot.pause(0.02)
        if isinstance(app.screen, CommandPalette) and app.screen.query_one(CommandList).option_count:
            return
    raise AssertionError("the command palette listed no command")


def test_closing_the_help_twice_before_it_has_gone_keeps_the_screen_underneath(console: Console):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        underneath = list(app.screen_stack)
        help_screen = HelpScreen(app.screen)
        await app.push_screen(help_screen)
        await pilot.pause()
        help_screen.action_close()
        help_screen.action_close()
        await pilot.pause()
        assert app.screen_stack == underneath

    console.run(scenario)


def test_answering_a_confirmation_twice_runs_its_action_once(console: Console):
    answers: list[bool] = []

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        underneath = list(app.screen_stack)
        confirm = ConfirmScreen("Approve 3 mailboxes?", "They can then be tested.")
        app.push_screen(confirm, answers.append)
        await pilot.pause()
        confirm.action_answer(True)
        confirm.action_answer(True)
        await pilot.pause()
        assert app.screen_stack == underneath

    console.run(scenario)
    assert answers == [True]


@pytest.mark.parametrize("enters", [2, 3])
def test_choosing_in_the_command_palette_twice_keeps_the_screen_underneath(console: Console, enters: int):
    """Its first command (the Active view) chosen with `enter` several times in one burst: before, the
    second ran the command again on the mailbox screen it had popped (NoMatches stopped the console),
    or chose it in the list again and found no screen left to pop (ScreenStackError)."""
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("2")  # the All view, so that choosing Active shows
        await open_the_command_palette(app, pilot)
        underneath = list(app.screen_stack[:-1])
        queue_keys(app, *["enter"] * enters)
        await settle(app, pilot)
        assert app._exception is None, repr(app._exception)
        assert app.screen_stack == underneath
        assert app.screen.view.value == "active"

    console.run(scenario)




def test_a_command_chosen_twice_in_the_palette_list_runs_once(console: Console):
    """The list's own `enter` posts its choice as a message: a second one queued before the first was
    handled ran the command again (two confirmations of one approval, here) or popped the screen
    underneath."""
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await open_the_command_palette(app, pilot)
        underneath = list(app.screen_stack[:-1])
        await pilot.press(*"Approve")
        await pilot.pause(0.3)
        commands = app.screen.query_one(CommandList)
        commands.highlighted = 0
        assert str(commands.get_option_at_index(0).prompt).startswith("Approve")
        commands.action_select()
        commands.action_select()
        await settle(app, pilot)
        assert app._exception is None, repr(app._exception)
        assert app.screen_stack[:-1] == underneath
        assert isinstance(app.screen, ConfirmScreen)

    console.run(scenario)


def test_a_select_removed_before_its_mount_is_handled_leaves_the_console_running(console: Console):
    """A form composes its fields when its data arrives; the screen closed at that moment removed a
    Select's parts before its mount was handled, and Textual's Select looked them up (NoMatches,
    found by the fuzz test). Tried at each point of the mount."""
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        for turns in range(12):
            holder = Container()
            await app.screen.mount(holder)
            holder.mount(Select([("a", 1), ("b", 2)], value=1))
            for _ in range(turns):
                await asyncio.sleep(0)
            holder.remove()
            await pilot.pause()
            assert app._exception is None, f"removed after {turns} turns: {app._exception!r}"

    console.run(scenario)


def test_every_screen_uses_the_select_that_survives_its_removal():
    tui = Path(mbxtui.tui.__file__).parent
    direct = [str(path.relative_to(tui)) for path in tui.rglob("*.py") if path.name != "select.py"
              and re.search(r"^from textual\.widgets import .*\bSelect\b", path.read_text(), re.M)]
    assert direct == []
