"""Closing a screen once. Keys arrive faster than a screen closes: a second `esc` or `y` pressed
before the first close has finished would run the result callback again (a confirmed action twice)
and pop the screen underneath, or raise ScreenStackError when none is left. Found by the random keys
of tests/hardening/test_console_fuzz.py."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.await_complete import AwaitComplete
from textual.command import CommandPalette
from textual.widgets import Button, Input, OptionList


class ClosesOnce:
    """A mixin for screens, before Screen or ModalScreen in the bases."""

    def dismiss(self, result: Any = None) -> AwaitComplete | None:
        if self.app.screen is not self:  # type: ignore[attr-defined]
            return None
        return super().dismiss(result)  # type: ignore[misc]

    def leave(self) -> None:
        """Pop this screen if it is still the one on top."""
        if self.app.screen is self:  # type: ignore[attr-defined]
            self.app.pop_screen()  # type: ignore[attr-defined]


class CommandPaletteClosesOnce(ClosesOnce, CommandPalette):
    """Textual's command palette, closed once. Choosing a command pops whatever screen is on top and
    runs the command: an `enter` queued before the first close had finished (as a submit or as an
    option chosen in the list) ran the command again and popped the screen underneath (NoMatches
    from that screen's command, or ScreenStackError when no screen was left)."""

    @on(Input.Submitted)
    @on(Button.Pressed)
    @on(OptionList.OptionSelected)
    def _ignore_once_closed(self, event: Input.Submitted | Button.Pressed | OptionList.OptionSelected) -> None:
        # Runs before CommandPalette's own handlers of the same messages, which prevent_default skips.
        if self.app.screen is not self:
            event.stop()
            event.prevent_default()
