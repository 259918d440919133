"""The console: a Textual app over the same services as the command line."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from mbxtui.core.changes import DATABASE_ERRORS, ChangeWatcher
from mbxtui.core.db import BackgroundCheckpoints
from mbxtui.core.jobs import queue as jobs
from mbxtui.core.jobs.runner import EnablementRunner
from mbxtui.core.models import database
from mbxtui.core.permissions import Actor, Permission, allowed
from mbxtui.core.secrets import SecretStore, SecretsError
from mbxtui.tui.messages import ChangesUnavailable, DataChanged, MailboxesTested, RunnerStopped

SIXTEEN_COLOUR_TERMS = ("linux", "xterm", "vt100", "vt220", "screen", "tmux", "ansi")


def default_theme() -> str:
    """ANSI colours where the terminal has only 16 of them, or when the user asks."""
    chosen = os.environ.get("MBXTUI_THEME")
    if chosen:
        return chosen
    term = os.environ.get("TERM", "")
    if os.environ.get("COLORTERM") not in ("truecolor", "24bit") and term in SIXTEEN_COLOUR_TERMS:
        return "ansi-dark"
    return "textual-dark"


class MbxApp(App):
    TITLE = "mbxtui"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", id="help"),
        Binding("f2", "go('mailboxes')", "Mailboxes", id="go-mailboxes"),
        Binding("f3", "go('profiles')", "Profiles", id="go-profiles"),
        Binding("f4", "go('alerts')", "Alerts", id="go-alerts"),
        Binding("f5", "go('failed')", "Failed", id="go-failed"),
        Binding("f6", "go('settings')", "Settings", id="go-settings"),
        Binding("f7", "go('people')", "Users/queues", id="go-people"),
        Binding("f8", "go('operators')", "Operators", id="go-operators"),
        Binding("ctrl+q", "quit", "Quit", id="quit"),
    ]

    progress_text: reactive[str] = reactive("")

    def __init__(self, actor: Actor, *, db_path: Path | str, data_dir: Path, run_tests: bool = True,
                 threads: int = 32, store: SecretStore | None = None):
        super().__init__()
        self.actor = actor
        self.db_path = db_path if isinstance(db_path, str) and "://" in db_path else Path(db_path)
        self.data_dir = data_dir
        self.store = store
        self.run_tests = run_tests
        self.threads = threads
        self.watched_batches: set[int] = set()
        self._stop_runner = threading.Event()
        self._runner: EnablementRunner | None = None
        self._checkpoints: BackgroundCheckpoints | None = None
        self._changes: ChangeWatcher | None = None
        self.theme = default_theme()

    # -- start-up: the secret store, then the Test & Enable runner --

    def on_mount(self) -> None:
        from mbxtui.tui.screens.mailboxes import MailboxesScreen

        self._checkpoints = BackgroundCheckpoints()
        self.push_screen(MailboxesScreen())
        self._watch_changes()
        if self.store is None:
            try:
                self.store = SecretStore.open(self.data_dir)
            except SecretsError as exc:
                self.notify(str(exc), severity="error", title="Keyring")
        if self.store is not None and self.store.warning:
            self.notify(self.store.warning, severity="warning", title="Keyring", timeout=10)
        if self.store is not None and self.store.needs_master_password:
            from mbxtui.tui.screens.unlock import UnlockScreen

            self.push_screen(UnlockScreen(self.store), lambda _unlocked: self.start_runner())
        else:
            self.start_runner()

    def _watch_changes(self) -> None:
        """Show what other consoles, workers and commands change (see ``core/changes.py``)."""
        try:
            self._changes = ChangeWatcher(
                database.obj, lambda: self.post_message(DataChanged()),
                on_error=lambda exc: self.post_message(ChangesUnavailable(" ".join(str(exc).split())))).start()
        except DATABASE_ERRORS as exc:  # the console works without it; Ctrl+R still reloads
            self.on_changes_unavailable(ChangesUnavailable(" ".join(str(exc).split())))

    def on_data_changed(self, message: DataChanged) -> None:
        for screen in self.screen_stack:
            handler = getattr(screen, "data_changed", None)
            if handler is not None:
                handler()

    def on_changes_unavailable(self, message: ChangesUnavailable) -> None:
        self.notify(f"Changes made elsewhere are not shown until the database answers again (Ctrl+R reloads): "
                    f"{message.error}", severity="warning", timeout=10)

    def start_runner(self) -> None:
        if not self.run_tests or not allowed(self.actor, Permission.TEST) or self._runner is not None:
            return
        usable = self.store is not None and not self.store.needs_master_password
        self._runner = EnablementRunner(self.store if usable else None, threads=self.threads,
                                       on_tested=lambda events: self.post_message(MailboxesTested(events)))
        self.run_worker(self._run_tests, thread=True, group="test-runner", exit_on_error=False, name="Test & Enable")

    def _run_tests(self) -> None:
        try:
            self._runner.run(stop=self._stop_runner, until_idle=False, poll_seconds=2.0)
        except Exception as exc:  # shown to the operator; the console keeps working
            self.post_message(RunnerStopped(f"{exc.__class__.__name__}: {exc}"))

    def wake_runner(self) -> None:
        if self._runner is not None:
            self._runner.wake()

    def watch_batch(self, batch_id: int) -> None:
        self.watched_batches.add(batch_id)
        self._update_progress()
        self.wake_runner()

    def on_mailboxes_tested(self, message: MailboxesTested) -> None:
        self._update_progress()
        for screen in self.screen_stack:
            handler = getattr(screen, "mailboxes_tested", None)
            if handler is not None:
                handler(message.events)

    def on_runner_stopped(self, message: RunnerStopped) -> None:
        if message.error:
            self.notify(f"Test & Enable stopped: {message.error}", severity="error", timeout=15)

    def _update_progress(self) -> None:
        parts = []
        for batch_id in sorted(self.watched_batches):
            p = jobs.batch_progress(batch_id)
            if p.remaining == 0:
                self.watched_batches.discard(batch_id)
                self.notify(f"{p.passed} passed, {p.failed} failed, {p.postponed} postponed for retry",
                            title="Test & Enable finished", severity="information" if not p.failed else "warning")
                continue
            parts.append(f"Test & Enable: {p.done}/{p.total} done · {p.passed} passed · {p.failed} failed · "
                         f"{p.remaining} remaining")
        self.progress_text = "  ".join(parts)

    def on_unmount(self) -> None:
        self._stop_runner.set()
        self.wake_runner()
        if self._changes is not None:
            self._changes.stop()
        if self._checkpoints is not None:
            self._checkpoints.stop()

    # -- navigation --

    def action_go(self, name: str) -> None:
        from mbxtui.tui import screens

        screen_class = screens.SCREENS.get(name)
        if screen_class is None:
            return
        permission = getattr(screen_class, "REQUIRES", None)
        if permission is not None and not allowed(self.actor, permission):
            self.notify(f"{screen_class.TITLE_TEXT} needs the role global_admin", severity="warning")
            return
        if isinstance(self.screen, screen_class):
            return
        for index, screen in enumerate(self.screen_stack):
            if isinstance(screen, screen_class):
                while len(self.screen_stack) > index + 1:
                    self.pop_screen()
                return
        self.push_screen(screen_class())

    def action_help(self) -> None:
        from mbxtui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers the same actions as the keys of the current screen and the app."""
        seen = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen or not active.enabled:
                continue
            seen.add(binding.action)
            yield SystemCommand(binding.description, f"key: {binding.key_display or key}",
                                lambda node=active.node, action=binding.action: self.run_action(action, node))
        yield SystemCommand("Quit", "Leave the console", self.exit)
