"""Authorize a mailbox's own OAuth2 access from its detail (``mbxtui mailbox authorize``): the
device-code flow runs in a thread worker, bounded by the code's expiry; the dialog shows where to
go and the code to type there, and ``esc`` stops it with nothing stored. The refresh token goes to
the keyring only, in the service; nothing of a token reaches the screen."""

from __future__ import annotations

import threading

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from mbxtui.core.display import safe
from mbxtui.core.enums import OAuthProvider
from mbxtui.core.oauth.delegated import DeviceCode
from mbxtui.core.services import authorizations
from mbxtui.core.services.authorizations import Authorized
from mbxtui.core.services.profiles import ProfileRecord
from mbxtui.tui.closing import ClosesOnce
from mbxtui.tui.messages import Done, ServiceFailed
from mbxtui.tui.workers import run_then

GROUP = "authorize"
DELEGATED_PROVIDERS = (OAuthProvider.MICROSOFT365, OAuthProvider.GENERIC)  # Google's acts through its service account


def authorization_applies(profile: ProfileRecord | None) -> bool:
    """Whether the mailbox's profile takes its tokens from a provider a mailbox can authorize itself at."""
    if profile is None or not profile.oauth or profile.oauth.get("provider") not in DELEGATED_PROVIDERS:
        return False
    return "oauth2" in (profile.incoming.auth, profile.outgoing.auth)


class AuthorizeScreen(ClosesOnce, ModalScreen[bool]):
    """Dismisses with True once the mailbox was authorized, else False (stopped, refused)."""

    DEFAULT_CSS = """
    AuthorizeScreen { align: center middle; }
    AuthorizeScreen > Vertical {
        width: 72; max-width: 95%; height: auto; border: thick $accent; background: $surface; padding: 1 2;
    }
    AuthorizeScreen .title { text-style: bold; }
    AuthorizeScreen #authorize-code { margin: 1 0; }
    AuthorizeScreen Horizontal { height: auto; align-horizontal: right; }
    AuthorizeScreen Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="authorize-stop"),
        Binding("c", "copy", "Copy code", id="authorize-copy"),
    ]

    def __init__(self, email: str) -> None:
        super().__init__()
        self.email = email
        self.stop = threading.Event()
        self.code: DeviceCode | None = None
        self.finished = False
        self.succeeded = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Authorize mailbox {safe(self.email)}", classes="title", markup=False)
            yield Static("Asking the OAuth provider for a code…", id="authorize-code", markup=False)
            yield Static("", id="authorize-outcome", markup=False)
            with Horizontal():
                yield Button("Copy code (c)", id="copy", compact=True, disabled=True)
                yield Button("Stop (esc)", id="stop", compact=True)

    def on_mount(self) -> None:
        store = self.app.store
        if store is None or store.needs_master_password:
            self.end("Not authorized: the secrets store is locked: restart the console and enter the master "
                     "password, then authorize again.")
            return
        actor, email, stop, app = self.app.actor, self.email, self.stop, self.app

        def on_code(code: DeviceCode) -> None:  # in the worker thread
            app.call_from_thread(self.show_code, code)

        run_then(self, lambda: authorizations.authorize(actor, email, store, on_code, stop), self.authorized,
                 group=GROUP, title="Not authorized")

    def show_code(self, code: DeviceCode) -> None:
        if not self.is_mounted:
            return
        self.code = code
        minutes = max(1, round(code.expires_in / 60))
        self.query_one("#authorize-code", Static).update(
            f"Open {safe(code.verification_uri)} in any browser and enter the code\n\n    {safe(code.user_code)}\n\n"
            f"It is valid for {minutes} minute(s). Waiting for the approval; esc stops without storing anything.")
        self.query_one("#copy", Button).disabled = False

    def authorized(self, done: Authorized) -> None:
        until = (f"; its refresh token can expire on {done.refresh_expires_on:%Y-%m-%d}"
                 if done.refresh_expires_on else "")
        self.end(f"Mailbox {safe(done.email)} authorized{until}. Next: Test & Enable it (t).", ok=True)

    def on_service_failed(self, message: ServiceFailed) -> None:
        if message.group == GROUP:
            message.stop()
            self.end(f"Not authorized: {message.problem}")

    def on_done(self, message: Done) -> None:
        message.stop()
        message.then(message.result)

    def end(self, text: str, *, ok: bool = False) -> None:
        self.finished, self.succeeded = True, ok
        if not self.is_mounted:
            return
        self.query_one("#authorize-outcome", Static).update(text)
        self.query_one("#stop", Button).label = "Close (esc)"
        if not ok:
            self.app.bell()

    def action_stop(self) -> None:
        self.stop.set()  # the flow stops polling at once; nothing is stored
        self.dismiss(self.succeeded)

    def action_copy(self) -> None:
        if self.code is not None:
            self.app.copy_to_clipboard(self.code.user_code)
            self.notify(f"Code {safe(self.code.user_code)} copied", markup=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.action_copy()
        else:
            self.action_stop()
