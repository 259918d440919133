"""The console as ``mbxtui console`` starts it paints before the database answers: its first frame
(placeholders) and its keys (help, esc, the F-keys, ctrl+q) while opening the database is held by a
real lock, then the mailbox grid once it opens; and what opening refuses still ends the console with
one clear sentence and exit status 1, on the terminal once the console has closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from mbxtui.cli import launch, program
from mbxtui.cli.context import Context
from mbxtui.core import db
from mbxtui.core.errors import problem_sentence
from mbxtui.core.models import database
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV
from mbxtui.core.services import operators
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.help import HelpScreen
from mbxtui.tui.screens.mailboxes import MailboxesScreen
from tests.backends import ON_POSTGRES, Databases
from tests.tui.conftest import NO_OS_KEYRING, notifications, screen_text
from tests.tui.test_tmux import Terminal, mbxtui_command

WAIT_SECONDS = 20.0  # every wait below is bounded by this
NO_OPERATORS = "this database has no operators yet: run `mbxtui init` first"


@contextlib.contextmanager
def held(location: Path | str) -> Iterator[Callable[[], None]]:
    """Hold a lock on the database that opening it waits for (a SQLite file locked exclusively by
    another connection; on PostgreSQL the schema version table locked by another session); yields
    what releases it early. Released at the end whatever happens."""
    if ON_POSTGRES:
        import psycopg2

        locker = psycopg2.connect(str(location))
        locker.cursor().execute("LOCK TABLE schema_version IN ACCESS EXCLUSIVE MODE")
        release = locker.rollback
    else:
        locker = sqlite3.connect(location, isolation_level=None)
        locker.execute("PRAGMA locking_mode = EXCLUSIVE")  # its locks are kept until it closes
        locker.execute("BEGIN EXCLUSIVE")
        release = locker.close
    try:
        yield release
    finally:
        release()
        locker.close()


async def until(test: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_SECONDS} s")
        await asyncio.sleep(0.02)


def console_app(location: Path | str) -> MbxApp:
    """The console exactly as ``mbxtui --db LOCATION console`` makes it."""
    args = program.build_parser().parse_args(["--db", str(location), "console", "--no-tests"])
    return launch.console_app(Context(args), args)


@pytest.fixture
def initialised(databases: Databases, console_env: Path) -> Iterator[Path | str]:
    """A database whose only operator is this process's login (as after ``mbxtui init``), closed."""
    location = databases.new(console_env / "db")
    opened = db.open_database(location)
    operators.initialise()
    opened.close()
    yield location
    database.close()
    databases.drop(location)


def test_the_console_paints_and_answers_its_keys_while_the_database_is_held(initialised: Path | str):
    app = console_app(initialised)

    async def scenario() -> None:
        with held(initialised) as release:
            async with app.run_test(size=(80, 24)) as pilot:
                await until(lambda: "Opening the database…" in screen_text(app), "the first frame")
                assert app.actor is None and len(app.screen_stack) == 1
                await pilot.press("question_mark")
                await until(lambda: isinstance(app.screen, HelpScreen), "help")
                assert "Quit" in screen_text(app)
                await pilot.press("escape")
                await until(lambda: len(app.screen_stack) == 1, "help closed")
                await pilot.press("f2")
                await until(lambda: any("opens once the database is open" in text for text in notifications(app)),
                            "the F-key's answer")
                await pilot.press("question_mark")  # help stays open over the placeholder as the database opens
                await until(lambda: isinstance(app.screen, HelpScreen), "help again")
                release()
                await until(lambda: app.actor is not None, "the database opened")
                await pilot.pause(0.1)
                assert isinstance(app.screen, HelpScreen)
                await pilot.press("escape")
                await until(lambda: any(isinstance(s, MailboxesScreen) for s in app.screen_stack), "the mailboxes")
                assert app.actor.login == operators.os_login() and app.opening_failure is None

    asyncio.run(scenario())


def test_a_database_without_operators_ends_the_console_with_the_sentence_of_the_command_line(
        databases: Databases, console_env: Path):
    location = databases.new(console_env / "db")
    app = console_app(location)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)):
            await until(lambda: not app.is_running, "the console closed")

    try:
        asyncio.run(scenario())
        assert app.return_code == 1
        assert problem_sentence(app.opening_failure) == NO_OPERATORS
    finally:
        database.close()
        databases.drop(location)


def terminal_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("NO_COLOR", "MBXTUI_DB", "MBXTUI_THEME", KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV, "TMUX")}
    env.update({"PYTHON_KEYRING_BACKEND": NO_OS_KEYRING, "MBXTUI_DATA_DIR": str(tmp_path),
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def ended_with(screen: str) -> list[str]:
    """The last two lines the terminal shows: what the command left, then its exit status."""
    return [line for line in screen.splitlines() if line.strip()][-2:]


in_a_terminal = pytest.mark.skipif(ON_POSTGRES or shutil.which("tmux") is None,
                                   reason="the terminal's side is the same on both backends (and needs tmux)")


@in_a_terminal
def test_in_a_terminal_the_refusal_is_one_line_after_the_console_with_exit_status_1(
        databases: Databases, tmp_path: Path):
    location = databases.new(tmp_path / "db")
    terminal = Terminal(f"{mbxtui_command()} --db {location}; echo exit status $?", terminal_env(tmp_path))
    try:
        screen = terminal.wait_for("exit status")
    finally:
        terminal.close()
    assert ended_with(screen) == [f"mbxtui: {NO_OPERATORS}", "exit status 1"], screen
    assert "Traceback" not in screen and sys.executable not in screen


@in_a_terminal
def test_in_a_terminal_ctrl_q_leaves_at_once_while_the_database_is_held(initialised: Path, tmp_path: Path):
    with held(initialised):
        terminal = Terminal(f"{mbxtui_command()} --db {initialised}; echo exit status $?", terminal_env(tmp_path))
        try:
            terminal.wait_for("Opening the database…")
            terminal.send("C-q")
            # Well within the 30 s a blocked open waits for the lock before it gives up.
            screen = terminal.wait_for("exit status", timeout=10)
        finally:
            terminal.close()
    assert ended_with(screen)[-1] == "exit status 0", screen
