"""The real ``mbxtui`` command in a real terminal (tmux) at 80x24: it opens on the mailbox grid, answers
the keys an operator types, and what it approved is in the database after ctrl+q."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from mbxtui.core import db
from mbxtui.core.models import Mailbox
from mbxtui.core.secrets import KEYRING_CHOICE_ENV, MASTER_PASSWORD_ENV
from mbxtui.core.services import operators
from tests.backends import Databases
from tests.tui.conftest import NO_OS_KEYRING, seed_organisation

SCREEN_TIMEOUT = 20.0
MASTER_PASSWORD = "tmux master password"


class Terminal:
    """A detached tmux session of its own server (its own socket), 80 columns by 24 lines."""

    def __init__(self, command: str, env: dict[str, str]):
        self.server = f"mbxtui-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        # "; sleep 5" keeps the pane (and what the program left on it) for a look after it exits.
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "console", f"{command}; sleep 5")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.server, *args], env=self.env, capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "console")

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "console", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "console", "-l", text)

    def running(self) -> str:
        return self.tmux("display-message", "-p", "-t", "console", "#{pane_current_command}").strip()

    def wait_for(self, what: str | Callable[[str], bool], timeout: float = SCREEN_TIMEOUT) -> str:
        """The screen once it shows ``what`` (a text, or a test of the whole screen)."""
        test = what if callable(what) else (lambda screen: what in screen)
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if test(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminal never showed {what!r} within {timeout} s; it shows:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], env=self.env, capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)


def footer(screen: str) -> str:
    return screen.rstrip("\n").splitlines()[-1].strip()


def mbxtui_command() -> str:
    installed = Path(sys.executable).with_name("mbxtui")
    return str(installed) if installed.exists() else f"{sys.executable} -m mbxtui"


@pytest.fixture
def terminal_db(databases: Databases, tmp_path: Path) -> Iterator[Path | str]:
    """The seeded organisation, whose global admin is the OS login the command will run as."""
    path = databases.new(tmp_path)
    opened = db.open_database(path)
    try:
        seed_organisation(admin_login=operators.os_login())
    finally:
        opened.close()
    yield path
    databases.drop(path)


@pytest.fixture
def terminal(terminal_db: Path, tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/install-test-deps installs it)")
    env = {key: value for key, value in os.environ.items()
           if key not in ("NO_COLOR", "MBXTUI_DB", "MBXTUI_THEME", KEYRING_CHOICE_ENV, "TMUX")}
    env.update({"PYTHON_KEYRING_BACKEND": NO_OS_KEYRING, "MBXTUI_DATA_DIR": str(tmp_path),
                MASTER_PASSWORD_ENV: MASTER_PASSWORD, "PYTHONDONTWRITEBYTECODE": "1"})
    session = Terminal(f"{mbxtui_command()} --db {terminal_db}", env)
    try:
        yield session
    finally:
        session.close()


def test_the_console_in_a_terminal_at_80x24(terminal: Terminal, terminal_db: Path):
    login = operators.os_login()
    screen = terminal.wait_for(lambda screen: "12 in Active · 0 selected" in screen
                               and footer(screen).startswith("space Mark"))
    assert f"mbxtui · Mailboxes · {login} (global_admin)" in screen
    assert "1 Active  2 All  3 My  4 Forward  5 Pending  6 Failed  7 Disabled" in screen
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert "Ann Archer" in screen and footer(screen).endswith("^p palette")

    terminal.send("2")
    terminal.wait_for("13 in All · 0 selected")
    terminal.send("/")
    terminal.type("han")
    # The Footer shows the keys of what has the focus: the filter box's, then the grid's again.
    screen = terminal.wait_for(lambda screen: "2 in All matching 'han' · 0 selected" in screen
                               and footer(screen).startswith("^q Quit"))
    assert "Farah Khan" in screen and "Hana Sato" in screen and "Ann Archer" not in screen

    terminal.send("Escape")
    # A key sent right after escape would arrive as alt+key: wait until the grid has the focus.
    terminal.wait_for(lambda screen: footer(screen).startswith("space Mark"))
    terminal.send("Space")
    terminal.wait_for("2 in All matching 'han' · 1 selected")
    terminal.send("A")
    screen = terminal.wait_for("Approve the email address of 1 mailbox?")
    assert "Yes (y)" in screen and "Cancel (n)" in screen
    terminal.send("y")
    terminal.wait_for("1 of 1 changed")

    terminal.send("C-q")
    terminal.wait_for(lambda _: terminal.running() == "sleep")
    after = terminal.screen()  # the terminal is given back as it was, with no traceback on it
    assert "mbxtui · Mailboxes" not in after and "Traceback" not in after, after

    opened = db.open_database(terminal_db)
    try:
        farah = Mailbox.get(Mailbox.email == "farah@corp.test")
        assert (farah.approval, farah.approved_by) == ("approved", login)
        assert Mailbox.get(Mailbox.email == "jade@corp.test").approval == "pending"
    finally:
        opened.close()
