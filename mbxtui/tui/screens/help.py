"""Help: every key of the screen it was opened from, and the app's own keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from mbxtui.tui.closing import ClosesOnce


class HelpScreen(ClosesOnce, ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 72; max-width: 95%; height: 90%; border: thick $primary;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close", id="close-help")]

    def __init__(self, screen: Screen):
        super().__init__()
        self.for_screen = screen

    def compose(self) -> ComposeResult:
        # The screen's own actions first: the focused widget's keys (moving a cursor) would otherwise
        # fill the first screenful.
        groups: dict[str, list[str]] = {
            f"Keys of {getattr(self.for_screen, 'TITLE_TEXT', type(self.for_screen).__name__)}": [],
            "Where the cursor is": [],
            "Everywhere": [],
        }
        screen_keys, widget_keys, app_keys = groups.values()
        seen = set()
        for key, active in self.for_screen.active_bindings.items():
            binding = active.binding
            if not binding.description or (key, binding.action) in seen:
                continue
            seen.add((key, binding.action))
            state = "" if active.enabled else "  (not allowed for your role)"
            line = f"  {self.app.get_key_display(binding):<14} {binding.description}{state}"
            if active.node is self.app or binding.action.startswith(("app.", "screen.")):
                app_keys.append(line)  # namespaced actions are Textual's own (focus, copy) on every screen
            elif active.node is self.for_screen:
                screen_keys.append(line)
            else:
                widget_keys.append(line)
        lines = []
        for heading, group in groups.items():
            if group:
                lines += [heading, *group, ""]
        lines.append("Ctrl+P opens the command palette with the same actions.")
        with VerticalScroll():
            yield Static("\n".join(lines), markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
