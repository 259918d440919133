"""What the console does when something goes wrong (issue 16, findings 3): a database or keyring
error during a save is shown in place and the console keeps running; an unexpected exception stops
it with one short message and no local variables, the full report going to the log file or to a
crash report file. A typed password appears nowhere: screen, log, crash output."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input, Static

from mbxtui import logs
from mbxtui.core import db
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import credentials
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxEditScreen
from tests.core.support import snapshot
from tests.tui.conftest import Console, notifications, screen_text, settle
from tests.tui.test_flows import open_edit_form, stored, type_into

TYPED_PASSWORD = "Crash-typed pässword 7Yq"
SHORT_BUSY_TIMEOUT = 0.5


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """Connections opened from now on wait this long for another session's write lock (the product
    waits 30 s). Request it before ``console``."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_SECONDS", SHORT_BUSY_TIMEOUT)
    return SHORT_BUSY_TIMEOUT


class WriteLock:
    """Another session holding the SQLite write lock (BEGIN IMMEDIATE) until released."""

    def __init__(self, path: Path | str) -> None:
        self.connection = sqlite3.connect(str(path), isolation_level=None, timeout=5)

    def __enter__(self) -> WriteLock:
        self.connection.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


@pytest.mark.sqlite_only("the SQLite write lock held past the busy timeout")
def test_a_locked_database_during_a_save_is_shown_in_place_and_the_console_keeps_running(
        short_busy_timeout: float, console: Console, tmp_path: Path):
    """Finding 3: another session holds the write lock past the busy timeout while the operator saves
    a mailbox with a typed password. The form stays open with what was typed (the password field
    emptied, see FormScreen.save_failed), one line says what happened, and the password is nowhere."""
    shown: list[str] = []

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        form = await open_edit_form(app, pilot, "carla@corp.test")
        await type_into(pilot, form.query_one("#name", Input), "Carla Díaz-Ruiz")
        await type_into(pilot, form.query_one("#password", Input), TYPED_PASSWORD)
        with WriteLock(console.db_path):
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            shown.append(screen_text(app))
            assert app.screen is form, "the form closed on a database error"
            assert form.query_one("#name", Input).value == "Carla Díaz-Ruiz"
            assert form.query_one("#password", Input).value == ""
            problem = str(form.query_one("#save-problem", Static).render())
            assert problem.startswith("Not saved: another session held the database") and "\n" not in problem
            assert problem.endswith("Type the password again to save it.")
            assert "Not saved: another session" in shown[-1]
            assert not form.saving
        # Released: the same form saves.
        await type_into(pilot, form.query_one("#password", Input), TYPED_PASSWORD)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert not isinstance(app.screen, MailboxEditScreen)
        assert "Saved" in notifications(app)
        shown.append(screen_text(app))
        shown.extend(notifications(app))

    app = console.run(scenario)
    assert app.return_code in (None, 0)
    carla = stored("carla@corp.test")
    assert carla.name == "Carla Díaz-Ruiz"
    assert credentials.mailbox_secret(console.store, carla.id).reveal() == TYPED_PASSWORD
    assert all(TYPED_PASSWORD not in text for text in shown)


# --- an unexpected exception ----------------------------------------------------------------------

class ForcedCrash(RuntimeError):
    """A bug, forced where the typed password is a local variable of the frame that raises."""


def crash_on_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """``MailboxEditScreen.action_save`` raises on the UI thread with ``password`` among its locals."""

    def broken_run_save(self: MailboxEditScreen, save: object, then: object) -> None:
        raise ForcedCrash("forced: the save could not start")

    monkeypatch.setattr(MailboxEditScreen, "run_save", broken_run_save)


async def type_password_and_save(app: MbxApp, pilot: Pilot, shown: list[str]) -> None:
    form = await open_edit_form(app, pilot, "carla@corp.test")
    await type_into(pilot, form.query_one("#password", Input), TYPED_PASSWORD)
    shown.append(screen_text(app))
    await pilot.press("ctrl+s")
    await pilot.pause()


def crash_reports(directory: Path) -> list[Path]:
    return sorted(directory.glob("crash-*.txt"))


def test_textual_alone_would_print_the_typed_password_among_the_locals(
        console: Console, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Why MbxApp replaces Textual's crash handler: Textual 8's report (Traceback with
    show_locals=True) prints every frame's local variables, the typed password among them."""
    crash_on_save(monkeypatch)
    monkeypatch.setattr(MbxApp, "_handle_exception", App._handle_exception)
    with pytest.raises(ForcedCrash):
        console.run(lambda app, pilot: type_password_and_save(app, pilot, []))
    assert TYPED_PASSWORD in capsys.readouterr().err


def test_an_unexpected_exception_prints_one_line_and_writes_a_report_without_locals(
        console: Console, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """No log file: the report goes to a crash report file, owner-only, in the data directory; the
    terminal shows one line naming it; neither holds the password, nor does the screen."""
    crash_on_save(monkeypatch)
    shown: list[str] = []
    with pytest.raises(ForcedCrash):
        console.run(lambda app, pilot: type_password_and_save(app, pilot, shown))
    err = capsys.readouterr().err
    [report] = crash_reports(console.data_dir)
    assert err.strip() == (f"mbxtui stopped on an unexpected error (ForcedCrash). The report is in {report}: "
                           "send it to whoever maintains mbxtui.")
    assert report.stat().st_mode & 0o777 == 0o600
    text = report.read_text()
    assert "ForcedCrash: forced: the save could not start" in text and "in action_save" in text
    assert "locals" not in text
    assert all(TYPED_PASSWORD not in where for where in (err, text, *shown))


def test_with_a_log_file_the_crash_report_goes_there(
        console: Console, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    crash_on_save(monkeypatch)
    log_path = tmp_path / "logs" / "mbxtui.log"
    log_path.parent.mkdir()
    with logs.log_file(log_path), pytest.raises(ForcedCrash):
        console.run(lambda app, pilot: type_password_and_save(app, pilot, []))
    err = capsys.readouterr().err
    assert f"The report is in {log_path}:" in err and "\n" not in err.strip()
    text = log_path.read_text()
    assert "CRITICAL mbxtui.logs" in text and "console stopped on an unexpected error" in text
    assert "ForcedCrash: forced: the save could not start" in text
    assert not crash_reports(console.data_dir)
    assert TYPED_PASSWORD not in err + text


def test_a_secret_in_the_exception_text_is_hidden_from_the_report(
        console: Console, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Defence in depth: a bug that puts the typed password in its exception's text (here, a
    conversion error quoting it) still leaves it out of the report: what masked inputs hold is hidden."""

    def broken_run_save(self: MailboxEditScreen, save: object, then: object) -> None:
        int(self.query_one("#password", Input).value)

    monkeypatch.setattr(MailboxEditScreen, "run_save", broken_run_save)
    with pytest.raises(ValueError):
        console.run(lambda app, pilot: type_password_and_save(app, pilot, []))
    err = capsys.readouterr().err
    [report] = crash_reports(console.data_dir)
    text = report.read_text()
    assert "invalid literal for int() with base 10: '[hidden]'" in text
    assert TYPED_PASSWORD not in err + text


# --- keyring errors during a save -----------------------------------------------------------------

def test_a_locked_secrets_store_refuses_the_save_before_anything_is_written(console: Console):
    """The store is checked before the mailbox is: nothing half-saved, the form stays as typed."""
    locked = SecretStore.open(console.data_dir / "never-unlocked")
    assert locked.needs_master_password
    shown: list[str] = []

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("escape")  # the master password screen: go on without secrets
        await settle(app, pilot)
        form = await open_edit_form(app, pilot, "carla@corp.test")
        await type_into(pilot, form.query_one("#name", Input), "Carla Díaz-Ruiz")
        await type_into(pilot, form.query_one("#password", Input), TYPED_PASSWORD)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.screen is form and form.query_one("#name", Input).value == "Carla Díaz-Ruiz"
        problem = str(form.query_one("#save-problem", Static).render())
        assert problem == ("Not saved: the secrets store is locked: restart the console and enter the master "
                           "password. Type the password again to save it.")
        shown.append(screen_text(app))

    before = snapshot()
    console.run(scenario, store=locked)
    assert snapshot() == before
    assert TYPED_PASSWORD not in shown[0]


class RefusingKeyring(KeyringBackend):
    """An OS keyring that refuses every call, as a Secret Service whose unlock prompt was dismissed."""

    priority = -1

    def get_password(self, service: str, username: str, *_password: str) -> str | None:
        raise keyring.errors.KeyringLocked("Failed to unlock the collection!")

    set_password = delete_password = get_password


def test_a_keyring_failing_after_the_mailbox_was_saved_says_so_and_saves_the_rest_next_time(
        console: Console):
    """The mailbox's fields are written, then the keyring refuses the password: the form says what
    was saved and what was not, and saving again sends only the password (no 'changed since')."""
    refusing = SecretStore(RefusingKeyring(), "Secret Service (refusing)")

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        form = await open_edit_form(app, pilot, "carla@corp.test")
        await type_into(pilot, form.query_one("#name", Input), "Carla Díaz-Ruiz")
        await type_into(pilot, form.query_one("#password", Input), TYPED_PASSWORD)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.screen is form
        problem = str(form.query_one("#save-problem", Static).render())
        assert problem.startswith("Partly saved: the mailbox's other changes were saved, but could not store ")
        assert problem.endswith("in Secret Service (refusing): KeyringLocked: Failed to unlock the collection! "
                                "Type the password again to save it.")
        assert stored("carla@corp.test").name == "Carla Díaz-Ruiz"
        assert form.changed() == {}
        await type_into(pilot, form.query_one("#password", Input), TYPED_PASSWORD)
        assert form.changed() == {"password": TYPED_PASSWORD}
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        problem = str(form.query_one("#save-problem", Static).render())
        assert problem.startswith("Not saved: Could not store "), problem

    console.run(scenario, store=refusing)
