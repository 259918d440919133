"""Closing a screen once. Keys arrive faster than a screen closes: a second `esc` or `y` pressed
before the first close has finished would run the result callback again (a confirmed action twice)
and pop the screen underneath, or raise ScreenStackError when none is left. Found by the random keys
of tests/hardening/test_console_fuzz.py."""

from __future__ import annotations

from typing import Any

from textual.await_complete import AwaitComplete


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
