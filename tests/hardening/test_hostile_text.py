"""Hostile text cannot break or steer the terminal: markup typed or stored is shown as text (never
parsed), text holding braces or percent signs is never a format template, and every output path
(console, command line, worker, migrate) shows control characters as visible escapes. The demo
without its extra says what to install instead of ending in a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from mbxtui.core import db
from mbxtui.core.display import INVISIBLE
from mbxtui.core.models import database
from mbxtui.core.services import mailboxes, profiles
from mbxtui.tui.app import MbxApp
from mbxtui.tui.screens.mailbox_detail import MailboxDetailScreen, MailboxEditScreen
from mbxtui.tui.screens.mailboxes import BulkEditScreen, MailboxesScreen
from mbxtui.tui.widgets.confirm import ConfirmScreen
from mbxtui.tui.widgets.grid import MailboxGrid
from tests.cli.conftest import REPO, Cli, cli, cli_template  # noqa: F401  (fixtures)
from tests.tui.conftest import (  # noqa: F401  (fixtures)
    BRANCH, HEAD_OFFICE, Console, console, console_env, notifications, screen_text, settle, unlocked_store,
)

UNSAFE = frozenset(INVISIBLE) - {ord("\n")}
MARKUP = "[/]"
BRACED_PROFILE = "Sales {north} 100%s {0}"
MARKUP_PROFILE = "[b]Bold[/b] [@click=app.quit]quit[/] [/]"


def raw_controls(text: str) -> set[int]:
    return UNSAFE.intersection(map(ord, text))


def status_text(app: MbxApp) -> str:
    return str(app.screen.query_one("#status", Static).render())


# --- markup typed into the console -----------------------------------------------------------------

@pytest.mark.parametrize("key", ["f2", "f4", "f5", "f7"])
def test_markup_typed_into_a_filter_is_text(console: Console, key: str):
    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press(key)
        await settle(app, pilot)
        await pilot.press("slash", *MARKUP, "[", "b", "]")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.is_running
        assert app.screen.query_one("#filter", Input).value == MARKUP + "[b]"
        assert "'[/][b]'" in status_text(app), status_text(app)

    console.run(scenario, size=(120, 30))


# --- data holding markup, braces and control characters ------------------------------------------

def put_hostile_profiles(console: Console) -> None:
    """Two profiles with names the services accept, one of them given the first mailboxes."""
    for name in (BRACED_PROFILE, MARKUP_PROFILE):
        profiles.create(console.admin, name=name, type="imap_smtp", incoming_host="imap.corp.test",
                        incoming_port=993, incoming_tls="implicit", incoming_auth="mailbox",
                        outgoing_host="smtp.corp.test", outgoing_port=587, outgoing_tls="starttls",
                        outgoing_auth="mailbox")
    mailboxes.edit(console.admin, "carla@corp.test", profile=MARKUP_PROFILE)


async def choose_profile(app: MbxApp, pilot: Pilot, select: Select, name: str) -> None:
    select.focus()
    await pilot.press("enter")
    for _ in range(10):
        if select.query_one("SelectOverlay").highlighted_option.prompt.plain == name:
            break
        await pilot.press("down")
    await pilot.press("enter")
    assert select.value == name


def test_a_bulk_edit_to_a_profile_named_with_braces_asks_and_applies(console: Console):
    put_hostile_profiles(console)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("e")  # the mailbox under the cursor
        await settle(app, pilot)
        assert isinstance(app.screen, BulkEditScreen)
        await choose_profile(app, pilot, app.screen.query_one("#profile", Select), BRACED_PROFILE)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen), type(app.screen).__name__
        assert f"Set profile = {BRACED_PROFILE} on 1 mailbox?" in app.screen.detail
        await pilot.press("y")
        await settle(app, pilot)
        assert any("1 of 1 changed" in text for text in notifications(app)), notifications(app)

    console.run(scenario, size=(120, 36))
    changed = database.execute_sql("SELECT count(*) FROM mailbox m JOIN profile p ON p.id = m.profile_id "
                                   "WHERE p.name = ?", [BRACED_PROFILE]).fetchone()[0]
    assert changed == 1


def test_profile_names_holding_markup_are_shown_as_text_in_lists_choices_and_forms(console: Console):
    put_hostile_profiles(console)

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("e")
        await settle(app, pilot)
        select = app.screen.query_one("#profile", Select)
        await choose_profile(app, pilot, select, MARKUP_PROFILE)
        assert MARKUP_PROFILE in screen_text(app), screen_text(app)
        await pilot.press("escape")
        await pilot.press("N")  # new forward mailbox: the active profiles to choose from
        await settle(app, pilot)
        await choose_profile(app, pilot, app.screen.query_one("#profile", Select), MARKUP_PROFILE)
        assert MARKUP_PROFILE in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        if isinstance(app.screen, ConfirmScreen):
            await pilot.press("y")
        await pilot.press("f6")  # settings: the default profile's choices
        await settle(app, pilot)
        await choose_profile(app, pilot, app.screen.query_one("#default_profile", Select), MARKUP_PROFILE)
        await pilot.press("f3")
        await settle(app, pilot)
        if isinstance(app.screen, ConfirmScreen):
            await pilot.press("y")
            await settle(app, pilot)
        assert "[b]Bold[/b]" in screen_text(app), screen_text(app)
        assert app.is_running

    console.run(scenario, size=(160, 40))


def test_a_mailbox_on_a_profile_named_with_markup_opens_and_edits(console: Console):
    put_hostile_profiles(console)
    carla = mailboxes.show(console.admin, "carla@corp.test").id

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.push_screen(MailboxDetailScreen(carla))
        await settle(app, pilot)
        assert MARKUP_PROFILE in screen_text(app)
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, MailboxEditScreen)
        assert "[b]Bold[/b]" in screen_text(app), screen_text(app)
        assert app.is_running

    console.run(scenario, size=(160, 40))


def test_logins_and_markup_in_the_history_are_shown_as_text(console: Console):
    ann = mailboxes.show(console.admin, "ann@corp.test").id
    with db.write_transaction():
        database.execute_sql(
            "INSERT INTO audit_entry (at, login, by_login, action, record_kind, record_count, summary) VALUES "
            "('2024-05-07 09:00:00', ?, ?, 'mailbox.edit', 'mailbox', 1, ?)",
            ["eve\x1b[2J\x1b]0;pwned\x07", "mal[/]\x9b31m", "renamed [b]x[/b] {0}"])
        entry = database.execute_sql("SELECT max(id) FROM audit_entry").fetchone()[0]
        database.execute_sql("INSERT INTO audit_record (entry_id, record_kind, record_id) VALUES (?, 'mailbox', ?)",
                             [entry, ann])

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        app.push_screen(MailboxDetailScreen(ann))
        await settle(app, pilot)
        history = str(app.screen.query_one("#history", Static).render())
        assert not raw_controls(history), repr(history)
        assert "eve\\x1b[2J\\x1b]0;pwned\\x07 (as by mal[/]\\x9b31m): renamed [b]x[/b] {0}" in history, history

    console.run(scenario, size=(160, 40))


def test_a_confirmation_and_a_notification_quoting_a_stored_name_show_its_escapes(console: Console):
    with db.write_transaction():
        database.execute_sql("UPDATE profile SET name = ? WHERE name = ?", [BRANCH + "\x1b[2J\u202e", BRANCH])

    async def scenario(app: MbxApp, pilot: Pilot) -> None:
        await pilot.press("f3")
        await settle(app, pilot)
        assert app.screen.current_key().startswith(BRANCH)  # sorted by name: first
        await pilot.press("t")  # Test & Enable Mailboxes of the profile, asked first
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        app.notify(f"Profile {app.screen.detail}", markup=False)
        await pilot.pause()
        shown = screen_text(app)
        assert not raw_controls(shown) and "Branch POP3\\x1b[2J\\u202e" in shown, shown

    console.run(scenario, size=(120, 36))


# --- the command line, the worker, migrate ------------------------------------------------------

def test_the_worker_shows_each_tested_mailbox_on_one_line_with_control_characters_escaped(cli: Cli):
    cli.ok("test-enable", "ann@corp.test", "bob@corp.test")  # not approved: refused before any connection
    cli.execute("UPDATE mailbox SET email = ? WHERE email = 'ann@corp.test'",
                ("ann@corp.test\nbob@corp.test: passed\x1b[2J",))

    done = cli.ok("worker", "--once", "--threads", "2")

    assert not raw_controls(done.stdout) and not raw_controls(done.stderr), repr(done.stdout + done.stderr)
    lines = done.stdout.splitlines()
    assert len(lines) == 2, lines
    assert "ann@corp.test\\x0abob@corp.test: passed\\x1b[2J: failed (" in done.stdout, done.stdout


def test_migrate_shows_the_install_id_with_control_characters_escaped(cli: Cli, tmp_path: Path):
    cli.execute("UPDATE meta SET value = ? WHERE key = 'install_id'", ("id\x1b]0;pwned\x07\nx",))
    target = tmp_path / "copy" / "mbxtui.db"
    target.parent.mkdir(mode=0o700)

    done = cli.ok("migrate", "--from", str(cli.db_path), "--to", str(target), with_db=False)

    assert not raw_controls(done.stdout), repr(done.stdout)
    assert "install id id\\x1b]0;pwned\\x07\\x0ax)" in done.stdout
    assert "'id\\x1b]0;pwned\\x07\\x0ax/'" in done.stdout


def test_logins_in_a_mailbox_history_are_escaped_by_the_command_line(cli: Cli):
    cli.execute("INSERT INTO audit_entry (at, login, by_login, action, record_kind, record_count, summary) VALUES "
                "('2024-05-07 09:00:00', ?, ?, 'mailbox.edit', 'mailbox', 1, 'x')",
                ("eve\x1b[2J", "mal\x9b31m"))
    cli.execute("INSERT INTO audit_record (entry_id, record_kind, record_id) VALUES ((SELECT max(id) FROM "
                "audit_entry), 'mailbox', (SELECT id FROM mailbox WHERE email = 'ann@corp.test'))")

    shown = cli.ok("audit", "list", "--mailbox", "ann@corp.test").stdout

    assert not raw_controls(shown) and "eve\\x1b[2J" in shown and "mal\\x9b31m" in shown, shown


def test_unrecognised_arguments_are_echoed_with_control_characters_escaped(cli: Cli):
    done = cli.run("whoami", "\x1b[2J\x1b]0;pwned\x07")
    assert done.returncode == 2
    assert not raw_controls(done.stderr) and "\\x1b[2J" in done.stderr, repr(done.stderr)


# --- the demo without its extra --------------------------------------------------------------------

BLOCK_DEMO_EXTRA = """
import importlib.abc, sys

class WithoutDemoExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("trustme", "aiosmtpd"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, WithoutDemoExtra())
from mbxtui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_demo_without_its_extra_says_to_install_it(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("MBXTUI_")}
    env.update({"MBXTUI_DATA_DIR": str(tmp_path / "data"), "MBXTUI_DEMO_DIR": str(tmp_path / "demo"),
                "PYTHONPATH": str(REPO), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    done = subprocess.run([sys.executable, "-c", BLOCK_DEMO_EXTRA, "demo"], capture_output=True, text=True,
                          env=env, timeout=60, cwd=tmp_path)

    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "pip install 'mbxtui[demo]'" in done.stderr, done.stderr
    assert not (tmp_path / "demo").exists()
