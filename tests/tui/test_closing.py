"""A screen closes once: a second key pressed before the first close has finished neither runs the
result callback again nor pops the screen underneath (found by tests/hardening/test_console_fuzz.py:
two `esc` on the help screen ended the console with ScreenStackError)."""

from __future__ import annotations

from textual.pilot import Pilot

from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from tests.tui.conftest import Console


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
