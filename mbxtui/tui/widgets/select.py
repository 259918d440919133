"""The console's Select: Textual's, safe to close while it mounts. A form's fields are composed when
its data arrives; closing the screen at that moment (`esc`, or an F-key to another screen) removes
a Select's own parts before its mount is handled, and Textual's mount handler then looks them up
and stops the console with NoMatches (found by tests/hardening/test_console_fuzz.py). Every screen
imports ``Select`` from here."""

from __future__ import annotations

from textual import events
from textual.widgets import Select as TextualSelect


class Select(TextualSelect):
    def _on_mount(self, event: events.Mount) -> None:
        # Textual marks every node of a removed subtree as pruning at once, then removes the
        # deepest first: the Select's parts may be gone already. (A private flag of the pinned
        # Textual; tests/tui/test_closing.py fails if it stops meaning this.)
        if self._pruning or self._closing:
            event.prevent_default()  # Textual's own handler, which would look its parts up, is skipped
