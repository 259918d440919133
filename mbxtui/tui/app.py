"""The console: a Textual app over the same services as the command line."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from textual.app import App, ComposeResult, SystemCommand
from textual.notifications import SeverityLevel
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal
from textual.widgets import Footer, Input, Static

from mbxtui import logs
from mbxtui.core.display import shown
from mbxtui.core.errors import problem_sentence
from mbxtui.core.paths import storage_warnings
from mbxtui.core.permissions import Actor, Permission, allowed, roles_for
from mbxtui.tui import navigation
from mbxtui.tui.closing import CommandPaletteClosesOnce
from mbxtui.tui.keymap import read_keymap
from mbxtui.tui.machine_notices import MachineNotice, MachineNotices
from mbxtui.tui.messages import (BatchProgressLoaded, ChangesUnavailable, ConsoleNotOpened, ConsoleOpened,
                                 ConsoleReady, DataChanged, MailboxesProcessed, MailboxesTested, RunnerStopped,
                                 ServiceFailed)
from mbxtui.tui.workers import run_service

if TYPE_CHECKING:
    # Imported where first used, after the first frame: with them, importing this module took
    # 1.40 s instead of 0.77 s (median of 5, load average 6.5), all before the console painted.
    from mbxtui.core.jobs.runner import EnablementRunner, MailboxTested
    from mbxtui.core.secrets import SecretStore
    from mbxtui.core.sync.loop import ProcessingLoop
    from mbxtui.core.sync.runner import SyncSummary

SIXTEEN_COLOUR_TERMS = ("linux", "xterm", "vt100", "vt220", "screen", "tmux", "ansi")
log = logging.getLogger(__name__)
# What a runner that gave up needs: it is not started again while the console runs.
RESTART = "restart the console to start it again"


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
        *navigation.go_bindings(),
        Binding("ctrl+q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, actor: Actor | None, *, db_path: Path | str, data_dir: Path, run_tests: bool = True,
                 threads: int = 32, store: SecretStore | None = None, process: bool = False,
                 reach_ports: Mapping[int, int] | None = None, opening: Callable[[], Actor] | None = None):
        """``actor``: the operator of a database already open; or None with ``opening``, which opens
        the database and returns the operator (``mbxtui console``): it runs in a thread of its own
        while the console paints and answers its keys, and what it raises is kept in ``opening_failure``
        as the console closes with exit status 1. ``process``: also process the enabled mailboxes
        (``console --process``, the demo); a console opened without it never reads a mailbox.
        ``reach_ports``: for tests only, where settings detection reaches the standard ports
        (``detect_settings``); the product never sets it."""
        if actor is None and opening is None:
            raise ValueError("the console needs an operator, or how to open the database and find it")
        super().__init__()
        self.reach_ports = reach_ports
        self.actor = actor
        self.opening = opening
        self.opening_failure: BaseException | None = None
        self.db_path = db_path if isinstance(db_path, str) and "://" in db_path else Path(db_path)
        self.data_dir = data_dir
        self.store = store
        self.run_tests = run_tests
        self.threads = threads
        self.watched_batches: set[int] = set()
        self.progress_text = ""
        # App-wide events; screens subscribe to what they show (BaseScreen does it for them).
        self.changed_elsewhere: Signal[None] = Signal(self, "changed-elsewhere")
        self.mailboxes_tested: Signal[list[MailboxTested]] = Signal(self, "mailboxes-tested")
        self.progress_changed: Signal[str] = Signal(self, "progress-changed")
        self.runner_stopped: Signal[str] = Signal(self, "runner-stopped")
        self.mailboxes_processed: Signal[SyncSummary] = Signal(self, "mailboxes-processed")
        self.process = process
        self._stop_runner = threading.Event()
        self._runner: EnablementRunner | None = None
        self._processing: ProcessingLoop | None = None
        self._checkpoints = None
        self._changes = None
        self._changes_lost = False
        self._machine_notices: MachineNotices | None = None
        self._screens_shown = False  # the screens are up
        self._rest_ready = False  # what _get_ready starts is started
        self._said_at_start: list[tuple[str, str, SeverityLevel, float | None]] = []  # text, title, severity, timeout
        self.crash_report: Path | None = None
        self._crash_lines: list[str] = []
        self.theme = default_theme()
        self.keymap = read_keymap()
        self.set_keymap(self.keymap.keys)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification of the console: what it quotes (a name, an address, a server's words)
        is shown with its control characters escaped."""
        super().notify(shown(message), title=shown(title), severity=severity, timeout=timeout, markup=markup)

    # -- start-up: the database and the operator, the secret store, then the Test & Enable runner --

    def compose(self) -> ComposeResult:
        """What the console shows while the database opens (the base of the screen stack)."""
        yield Static("mbxtui", id="title", markup=False)
        yield Static("Opening the database…", id="opening", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        for problem in self.keymap.problems:
            log.error("keymap refused: %s", problem)
            self.notify(f"{problem}. The default keys are in force.", title="Keymap not used", severity="error",
                        timeout=20, markup=False)
        self.runner_stopped.subscribe(self, self.show_runner_stopped)
        self._machine_notices = MachineNotices(self)  # before the runners start: they say why they are slower
        if self.actor is not None:
            self._get_ready()
            self._rest_ready = True
            self._show_screens()
        else:
            # A daemon thread, not a thread worker: a worker's thread is joined as the app's event
            # loop ends, so ctrl+q would wait for an open stuck on a lock (up to 30 s) or a server.
            # Started once the first frame is painted: its imports would take the GIL from it.
            opening = threading.Thread(target=self._open, name="mbxtui-opening", daemon=True)
            self.call_after_refresh(opening.start)

    def _open(self) -> None:
        """In a thread: open the database and find the operator (round trips that took 0.3 s of
        the 0.75 s to the first frame behind 20 ms of latency) and import the first screen, then,
        while the screens load, get the rest ready (``_get_ready``): none of it holds the keys."""
        try:
            actor = self.opening()
            import mbxtui.tui.screens.mailboxes  # noqa: F401  (the imports of the first screen)
        except BaseException as exc:  # said as the console closes, as the command line says it
            self.post_message(ConsoleNotOpened(exc))
            return
        self._start_checkpoints()  # before the screens' workers open their connections
        if not self.is_running or not self.post_message(ConsoleOpened(actor)):  # ctrl+q came first
            self._stop_watching()
            return
        self._get_ready()
        if not self.post_message(ConsoleReady()):  # it closed meanwhile: on_unmount stopped nothing
            self._stop_watching()

    def _get_ready(self) -> None:
        """Once the database is open: the watcher of changes made elsewhere (its own connection:
        round trips), the secret store (the keyring may be slow to answer), and what the console
        says of them (``_say_and_run``). 0.2 s behind 20 ms of latency."""
        from mbxtui.core.secrets import SecretsError, SecretStore

        self._start_checkpoints()
        self._watch_changes()
        if self.store is None:
            try:
                self.store = SecretStore.open(self.data_dir)
            except SecretsError as exc:
                self._said_at_start.append((str(exc), "Keyring", "error", None))
        if self.store is not None and self.store.warning:
            self._said_at_start.append((self.store.warning, "Keyring", "warning", 10))
        for warning in storage_warnings(self.db_path, self.data_dir):
            self._said_at_start.append((warning, "Files", "warning", 20))

    def _start_checkpoints(self) -> None:
        """SQLite: the connections opened from now on leave WAL checkpoints to a thread of their own
        (``db.BackgroundCheckpoints``), so a bulk change's commit does not copy the WAL back."""
        from mbxtui.core.session import start_checkpoints

        if self._checkpoints is None:
            self._checkpoints = start_checkpoints()

    def on_console_not_opened(self, message: ConsoleNotOpened) -> None:
        self.opening_failure = message.error
        self.exit(return_code=1)

    def on_console_opened(self, message: ConsoleOpened) -> None:
        self.actor = message.actor
        if len(self.screen_stack) == 1:
            self._show_screens()
        else:  # help or the palette is open over the placeholder: the screens come once it is closed
            self.screen_change_signal.subscribe(self, self._show_screens_when_uncovered)

    def _show_screens_when_uncovered(self, _screen: Screen) -> None:
        if len(self.screen_stack) == 1 and not self._screens_shown:
            self.screen_change_signal.unsubscribe(self)
            self._show_screens()

    def _show_screens(self) -> None:
        from mbxtui.tui.screens.mailboxes import MailboxesScreen

        self._screens_shown = True
        self.query_one("#opening", Static).update("")
        self.push_screen(MailboxesScreen())
        if self._rest_ready:
            self._say_and_run()

    def on_console_ready(self, _message: ConsoleReady) -> None:
        self._rest_ready = True
        if self._screens_shown:
            self._say_and_run()

    def _say_and_run(self) -> None:
        """Once the screens are up and the rest ready: what ``_get_ready`` found to say, then the
        master password if the secrets file needs it, then the runners."""
        for text, title, severity, timeout in self._said_at_start:
            self.notify(text, title=title, severity=severity, timeout=timeout, markup=False)
        if self.store is not None and self.store.needs_master_password:
            from mbxtui.tui.screens.unlock import UnlockScreen

            self.push_screen(UnlockScreen(self.store), lambda _unlocked: self.start_runner())
        else:
            self.start_runner()

    def _watch_changes(self) -> None:
        """Show what other consoles, workers and commands change (see ``core/changes.py``)."""
        from mbxtui.core.session import ChangeSignalUnavailable, watch_changes

        try:
            self._changes = watch_changes(lambda: self.post_message(DataChanged()),
                                          on_error=lambda exc: self.post_message(ChangesUnavailable(problem_sentence(exc))))
        except ChangeSignalUnavailable as exc:  # the console works without it; Ctrl+R still reloads
            self.post_message(ChangesUnavailable(str(exc)))

    def on_data_changed(self, message: DataChanged) -> None:
        if self._changes_lost:  # the watcher opened its signal again (it says so with a change)
            self._changes_lost = False
            self.notify("Changes made elsewhere are shown again: the database answers again", timeout=10,
                        markup=False)
        self.changed_elsewhere.publish(None)

    def on_changes_unavailable(self, message: ChangesUnavailable) -> None:
        self._changes_lost = True
        self.notify(f"Changes made elsewhere are not shown until the database answers again (Ctrl+R reloads): "
                    f"{message.error}", severity="warning", timeout=10, markup=False)

    def on_machine_notice(self, message: MachineNotice) -> None:
        self.notify(message.text, title="This machine", severity="warning" if message.warning else "information",
                    timeout=20 if message.warning else 10, markup=False)

    def on_service_failed(self, message: ServiceFailed) -> None:
        """The one place a worker's refused or failed service call is shown."""
        self.notify(message.problem, title=message.title, severity="error", timeout=10, markup=False)

    def start_runner(self) -> None:
        self.start_processing()
        if not self.run_tests or not allowed(self.actor, Permission.TEST) or self._runner is not None:
            return
        from mbxtui.core.jobs.runner import EnablementRunner

        usable = self.store is not None and not self.store.needs_master_password
        self._runner = EnablementRunner(self.store if usable else None, threads=self.threads,
                                       on_tested=lambda events: self.post_message(MailboxesTested(events)))
        self.run_worker(self._run_tests, thread=True, group="test-runner", exit_on_error=False, name="Test & Enable")

    def start_processing(self) -> None:
        """With ``process``: sync passes and R33 re-tests on a thread worker of their own (see
        core/sync/loop.py), stopped with the Test & Enable runner as the console closes."""
        if not self.process or not allowed(self.actor, Permission.TEST) or self._processing is not None:
            return
        from mbxtui.core.sync.loop import ProcessingLoop

        usable = self.store is not None and not self.store.needs_master_password
        self._processing = ProcessingLoop(
            self.store if usable else None, requested_by=self.actor.login, stop=self._stop_runner,
            pause_seconds=2.0, on_pass=lambda summary: self.post_message(MailboxesProcessed(summary)),
            on_retests=lambda _count: self.wake_runner())
        self.run_worker(self._run_processing, thread=True, group="processing", exit_on_error=False, name="Processing")

    def _run_processing(self) -> None:
        try:
            self._processing.run()
        except Exception as exc:  # shown to the operator; the console keeps working
            log.exception("processing stopped")
            self.call_from_thread(self.notify, f"Processing stopped: {problem_sentence(exc)} ({RESTART})",
                                  severity="error", timeout=15, markup=False)

    def on_mailboxes_processed(self, message: MailboxesProcessed) -> None:
        self.mailboxes_processed.publish(message.summary)

    def _run_tests(self) -> None:
        try:
            self._runner.run(stop=self._stop_runner, until_idle=False, poll_seconds=2.0)
        except Exception as exc:  # shown to the operator; the console keeps working
            log.exception("Test & Enable stopped")
            self.post_message(RunnerStopped(problem_sentence(exc)))

    def wake_runner(self) -> None:
        if self._runner is not None:
            self._runner.wake()

    def watch_batch(self, batch_id: int) -> None:
        self.watched_batches.add(batch_id)
        self._update_progress()
        self.wake_runner()

    def on_mailboxes_tested(self, message: MailboxesTested) -> None:
        self._update_progress()
        self.mailboxes_tested.publish(message.events)

    def on_runner_stopped(self, message: RunnerStopped) -> None:
        if message.error:
            self.runner_stopped.publish(message.error)

    def show_runner_stopped(self, error: str) -> None:
        self.notify(f"Test & Enable stopped: {error} ({RESTART})", severity="error", timeout=15, markup=False)

    def _update_progress(self) -> None:
        from mbxtui.core.jobs import queue as jobs

        batches = sorted(self.watched_batches)
        if batches:
            run_service(self, lambda: [jobs.batch_progress(batch) for batch in batches], BatchProgressLoaded,
                        group="batch-progress", title="Test & Enable progress")

    def on_batch_progress_loaded(self, message: BatchProgressLoaded) -> None:
        parts = []
        for p in message.progress:
            if p.batch not in self.watched_batches:
                continue
            if p.remaining == 0:
                self.watched_batches.discard(p.batch)
                self.notify(f"{p.passed} passed, {p.failed} failed, {p.postponed} postponed for retry",
                            title="Test & Enable finished", severity="information" if not p.failed else "warning")
                continue
            parts.append(f"Test & Enable: {p.done}/{p.total} done · {p.passed} passed · {p.failed} failed · "
                         f"{p.remaining} remaining")
        self.progress_text = "  ".join(parts)
        self.progress_changed.publish(self.progress_text)

    def on_unmount(self) -> None:
        if self._machine_notices is not None:
            self._machine_notices.close()
        self._stop_runner.set()
        self.wake_runner()
        self._stop_watching()

    def _stop_watching(self) -> None:
        if self._changes is not None:
            self._changes.stop()
        if self._checkpoints is not None:
            self._checkpoints.stop()

    # -- an unexpected exception --

    def _handle_exception(self, error: Exception) -> None:
        """Replaces Textual's handler of an unexpected exception, whose report shows the local
        variables of every frame (a typed password among them) on the terminal: here the traceback
        alone goes to the log file or a crash report file (``logs.report_crash``), the terminal gets
        one line once the console has closed, and the app stops with exit status 1 (Pilot still
        re-raises ``error`` in tests). tests/tui/test_crashes.py pins Textual's side of this.

        Once the console is closing (ctrl+q, or SIGTERM in the demo), an error of a screen being
        taken down is logged, not reported as a crash: SIGTERM as the first screen mounted left it
        without its grid, and its ``on_mount`` failed to find it (once in the demo's tests)."""
        if self._exit:
            log.warning("while the console closed: %s", problem_sentence(error), exc_info=error)
            return
        line, self.crash_report = logs.report_crash(error, what="console", data_dir=self.data_dir,
                                                    hide=self.typed_secrets(), into=self.crash_report)
        self._crash_lines.append(line)
        self._return_code = 1
        if self._exception is None:
            self._exception = error
            self._exception_event.set()
        self._close_messages_no_wait()

    def _print_error_renderables(self) -> None:
        for line in self._crash_lines:  # unwrapped and uncropped: the report's path stays whole, to copy
            self.error_console.print(line, soft_wrap=True, markup=False, highlight=False)
        self._crash_lines.clear()
        super()._print_error_renderables()

    def typed_secrets(self) -> list[str]:
        """What is typed in the masked inputs of every screen open now (kept out of crash reports)."""
        typed: list[str] = []
        try:
            for screen in self.screen_stack:
                typed += [box.value for box in screen.query(Input) if box.password and box.value]
        except Exception:  # the app may be half torn down; the traceback has no values anyway
            log.debug("masked inputs not readable while reporting a crash", exc_info=True)
        return typed

    # -- navigation --

    def action_go(self, name: str) -> None:
        destination = navigation.BY_NAME.get(name)
        if destination is None:
            return
        if self.actor is None:
            self.notify(f"{destination.title} opens once the database is open", severity="warning", markup=False)
            return
        if destination.requires is not None and not allowed(self.actor, destination.requires):
            self.notify(f"{destination.title} needs the role {roles_for(destination.requires)}", severity="warning")
            return
        screen_class = navigation.screens()[name]
        if isinstance(self.screen, screen_class):
            return
        for index, screen in enumerate(self.screen_stack):
            if isinstance(screen, screen_class):
                while len(self.screen_stack) > index + 1:
                    self.pop_screen()
                return
        self.push_screen(screen_class())

    def action_command_palette(self) -> None:
        if self.use_command_palette and not CommandPaletteClosesOnce.is_open(self):
            self.push_screen(CommandPaletteClosesOnce(id="--command-palette"))

    def action_help(self) -> None:
        from mbxtui.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers the same actions as the keys of the current screen and the app."""
        seen = set()
        palette = {d.binding_id: d.palette for d in navigation.NAVIGATION}
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen or not active.enabled:
                continue
            seen.add(binding.action)
            help_text = f"key: {binding.key_display or key}"
            if binding.id in palette:
                help_text = f"{palette[binding.id]} ({help_text})"
            yield SystemCommand(binding.description, help_text,
                                lambda node=active.node, action=binding.action: self.run_action(action, node))
        yield SystemCommand("Quit", "Leave the console", self.exit)
