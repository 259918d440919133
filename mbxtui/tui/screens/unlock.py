"""Asks for the master password of the encrypted secrets file, in a masked input of our own."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from mbxtui.core.secrets import SecretStore
from mbxtui.tui.closing import ClosesOnce
from mbxtui.tui.messages import ServiceFailed, Unlocked
from mbxtui.tui.workers import run_service


class UnlockScreen(ClosesOnce, ModalScreen[bool]):
    DEFAULT_CSS = """
    UnlockScreen { align: center middle; }
    UnlockScreen > Vertical { width: 70; max-width: 95%; height: auto; border: thick $primary;
                              background: $surface; padding: 1 2; }
    UnlockScreen .error { color: $error; height: auto; }
    UnlockScreen Input { margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "skip", "Continue without secrets", id="unlock-skip")]

    def __init__(self, store: SecretStore):
        super().__init__()
        self.store = store
        self.first_entry: str | None = None
        self.unlocking = False

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.store.creating_new_file:
                text = (f"No OS keyring is available. Passwords will be kept in {self.store.backend_name}, "
                        "encrypted with a master password you choose now.")
            else:
                text = f"No OS keyring is available. Enter the master password of {self.store.backend_name}."
            yield Static(text, markup=False)
            yield Static("Esc: continue without secrets (tests that need a password will say so).", markup=False)
            yield Input(password=True, placeholder="master password", id="master")
            yield Static("", classes="error", id="error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        error = self.query_one("#error", Static)
        value = event.value
        event.input.value = ""
        if not value:
            error.update("The master password cannot be empty.")
            return
        if self.store.creating_new_file and self.first_entry is None:
            self.first_entry = value
            error.update("Enter the same master password again.")
            return
        if self.store.creating_new_file and value != self.first_entry:
            self.first_entry = None
            error.update("The two entries differ; start again.")
            return
        if self.unlocking:
            return
        self.unlocking = True
        error.update("Unlocking…")  # the key derivation takes about a second: off the UI thread
        run_service(self, lambda: self.store.unlock(value), lambda _none: Unlocked(), group="unlock")

    def on_unlocked(self, _message: Unlocked) -> None:
        if self.store.notice:
            self.app.notify(self.store.notice, title="Keyring", timeout=10, markup=False)
        self.dismiss(True)

    def on_service_failed(self, message: ServiceFailed) -> None:
        message.stop()  # shown here, under the input, not as a notification
        self.unlocking = False
        self.query_one("#error", Static).update(message.problem)

    def action_skip(self) -> None:
        self.dismiss(False)
